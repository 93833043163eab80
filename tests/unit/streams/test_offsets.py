"""streams.offsets.OffsetGuard: every input offset applied once, in order, per consumer generation.

Regression for the scale-out loss (CI run of test_scale_out: after an assignment Faust yielded
ticket/1 121-128, then 138 onwards; 129-137 were never delivered and its gap bookkeeping committed over
them).
"""

from __future__ import annotations

from typing import NamedTuple

import pytest

from streams.offsets import MAX_RESEEKS, STALE_LIMIT, OffsetGapError, OffsetGuard


class TP(NamedTuple):
    topic: str
    partition: int


class Msg(NamedTuple):
    tp: TP
    offset: int


A, B = TP("events.ticket", 1), TP("events.login", 0)


def msgs(tp: TP, *offsets: int) -> list[Msg]:
    return [Msg(tp, o) for o in offsets]


def offsets(admitted: list[Msg]) -> list[tuple[int, int]]:
    return [(m.tp.partition, m.offset) for m in admitted]


def test_contiguous_records_from_the_committed_offset_are_admitted() -> None:
    guard = OffsetGuard()
    got = guard.admit(msgs(A, 121, 122, 123) + msgs(B, 7), generation=2, committed={A: 121}.get)
    assert offsets(got.admitted) == [(1, 121), (1, 122), (1, 123), (0, 7)]  # B: no commit yet, starts at 7
    assert (got.reseek, got.accepted_gaps, got.dropped) == ({}, {}, 0)
    assert offsets(guard.admit(msgs(A, 124), 2, {}.get).admitted) == [(1, 124)]


def test_a_skip_holds_back_the_partition_and_seeks_back_to_the_first_missing_offset() -> None:
    guard = OffsetGuard()
    guard.admit(msgs(A, *range(121, 129)), 2, {A: 121}.get)
    # Faust skipped 129-137: 138 and later records of A are held back, B goes on
    got = guard.admit(msgs(A, 138, 139) + msgs(B, 0) + msgs(A, 140), 2, {}.get)
    assert offsets(got.admitted) == [(0, 0)]
    assert got.reseek == {A: 129} and got.dropped == 3
    # records fetched before the seek arrive first (beyond 138): dropped, no new seek
    got = guard.admit(msgs(A, 141, 142), 2, {}.get)
    assert got.admitted == [] and got.reseek == {} and got.dropped == 2
    # then the re-fetch from 129: applied in order, the earlier ones again after it
    got = guard.admit(msgs(A, *range(129, 141)), 2, {}.get)
    assert offsets(got.admitted) == [(1, o) for o in range(129, 141)] and got.accepted_gaps == {}


def test_a_skip_right_after_the_assignment_is_caught_against_the_committed_offset() -> None:
    got = OffsetGuard().admit(msgs(A, 138, 139), 3, {A: 121}.get)
    assert got.admitted == [] and got.reseek == {A: 121}


def test_a_real_hole_is_accepted_when_the_refetch_starts_above_it() -> None:
    guard = OffsetGuard()
    guard.admit(msgs(A, 10, 11), 1, {A: 10}.get)
    assert guard.admit(msgs(A, 13, 14), 1, {}.get).reseek == {A: 12}
    # the re-fetch from 12 starts at 13 (12 is a transaction marker): at or below the bound 13, so real
    got = guard.admit(msgs(A, 13, 14), 1, {}.get)
    assert offsets(got.admitted) == [(1, 13), (1, 14)] and got.accepted_gaps == {A: (12, 13)}


def test_re_deliveries_below_the_expected_offset_are_dropped() -> None:
    guard = OffsetGuard()
    guard.admit(msgs(A, 5, 6, 7), 1, {A: 5}.get)
    got = guard.admit(msgs(A, 6, 7, 8), 1, {}.get)
    assert offsets(got.admitted) == [(1, 8)] and got.dropped == 2


def test_a_new_generation_starts_from_the_committed_offsets_again() -> None:
    guard = OffsetGuard()
    guard.admit(msgs(A, 5, 6, 7), 1, {A: 5}.get)
    got = guard.admit(msgs(A, 3, 4), 2, {A: 3}.get)  # the partition came back with an older commit
    assert offsets(got.admitted) == [(1, 3), (1, 4)]


def test_a_seek_that_never_brings_the_records_ends_in_an_error_not_a_silent_skip() -> None:
    guard = OffsetGuard()
    guard.admit(msgs(A, 0), 1, {A: 0}.get)
    assert guard.admit(msgs(A, 5), 1, {}.get).reseek == {A: 1}
    seeks = 1
    with pytest.raises(OffsetGapError, match="offsets from 1 were skipped"):
        for _ in range(MAX_RESEEKS * 2):
            got = guard.admit(msgs(A, *range(6, 6 + STALE_LIMIT + 1)), 1, {}.get)
            assert got.admitted == []
            seeks += len(got.reseek)
    assert seeks == MAX_RESEEKS


def test_records_queued_before_an_announced_seek_are_dropped_without_seeking_again() -> None:
    """Session 8: the seek to the commits runs once Faust has resumed flow; records it queued meanwhile
    (from further on) must not look like a hole, or every restart seeks every partition back."""
    guard = OffsetGuard()
    guard.expect(3, {A: 121})
    got = guard.admit(msgs(A, 130, 131) + msgs(A, 121, 122), generation=3, committed={A: 121}.get)
    assert offsets(got.admitted) == [(1, 121), (1, 122)]
    assert (got.reseek, got.accepted_gaps, got.dropped) == ({}, {}, 2)
    # the same records queued before the seek (from the commit) are applied once, then re-deliveries dropped
    guard = OffsetGuard()
    guard.expect(3, {A: 121})
    got = guard.admit(msgs(A, 121, 122, 121, 122, 123), generation=3, committed={A: 121}.get)
    assert offsets(got.admitted) == [(1, 121), (1, 122), (1, 123)]
    assert (got.reseek, got.dropped) == ({}, 2)


def test_an_announced_seek_that_brings_nothing_is_sought_again_after_the_stale_limit() -> None:
    guard = OffsetGuard()
    guard.expect(3, {A: 121})
    got = guard.admit(msgs(A, *range(200, 200 + STALE_LIMIT + 1)), generation=3, committed={A: 121}.get)
    assert got.admitted == [] and got.reseek == {A: 121}


def test_an_announcement_of_an_older_generation_is_forgotten() -> None:
    guard = OffsetGuard()
    guard.expect(3, {A: 121})
    got = guard.admit(msgs(A, 130), generation=4, committed={A: 130}.get)
    assert offsets(got.admitted) == [(1, 130)]


def test_abandoning_an_overtaken_batch_keeps_the_new_generations_announced_seek() -> None:
    """Session 9: a batch decided in steps can be overtaken by a rebalance whose seek to the commits is
    announced (expect) before the batch notices and is abandoned; forgetting it must not drop that."""
    guard = OffsetGuard()
    assert offsets(guard.admit(msgs(A, 100, 101), generation=2, committed={A: 100}.get).admitted) == [
        (1, 100), (1, 101)]
    guard.expect(3, {A: 100})  # the rebalance ended and sought A to its commit meanwhile
    guard.forget(2)  # the generation-2 batch is abandoned
    got = guard.admit(msgs(A, 140) + msgs(A, 100), generation=3, committed={A: 100}.get)
    assert offsets(got.admitted) == [(1, 100)] and (got.reseek, got.dropped) == ({}, 1)  # 140: stale, no seek
    guard.forget(3)  # abandoning a batch of the guard's own generation does forget
    assert guard.generation is None and not guard.expected
