"""The stall watch (streams.stalls): which input partitions to seek again, and when."""

from __future__ import annotations

from streams.stalls import MAX_PATIENCE, PATIENCE, Probe, StallWatch

TP = ("login", 0)


def test_a_partition_behind_that_does_not_move_is_sought_after_patience_idle_checks() -> None:
    watch = StallWatch()
    probe = Probe(expected=7, position=9, highwater=9)
    assert watch.check({TP: probe}, idle=True) == {}  # first sight: counting starts
    for _ in range(PATIENCE - 1):
        assert watch.check({TP: probe}, idle=True) == {}
    assert watch.check({TP: probe}, idle=True) == {TP: 7}
    assert watch.seeks(TP) == 1


def test_busy_checks_do_not_count() -> None:
    watch = StallWatch()
    probe = Probe(expected=7, position=9, highwater=9)
    watch.check({TP: probe}, idle=True)
    for _ in range(10):
        assert watch.check({TP: probe}, idle=False) == {}  # records may be on their way
    assert watch.check({TP: probe}, idle=True) == {}
    assert watch.check({TP: probe}, idle=True) == {TP: 7}


def test_progress_or_catching_up_resets_the_count() -> None:
    watch = StallWatch()
    watch.check({TP: Probe(7, 9, 9)}, idle=True)
    watch.check({TP: Probe(7, 9, 9)}, idle=True)
    assert watch.check({TP: Probe(8, 9, 9)}, idle=True) == {}  # moved: afresh
    assert watch.check({TP: Probe(8, 9, 9)}, idle=True) == {}
    assert watch.check({TP: Probe(9, 9, 9)}, idle=True) == {}  # caught up
    for _ in range(5):
        assert watch.check({TP: Probe(9, 9, 9)}, idle=True) == {}


def test_the_high_watermark_alone_reveals_records_never_fetched() -> None:
    # aiokafka's position can stand at the expected offset while fetched records are never handed over
    watch = StallWatch()
    probe = Probe(expected=4, position=4, highwater=6)
    results = [watch.check({TP: probe}, idle=True) for _ in range(PATIENCE + 1)]
    assert results[-1] == {TP: 4}
    no_position = Probe(expected=0, position=None, highwater=None)
    assert all(watch.check({("x", 1): no_position}, idle=True) == {} for _ in range(5))


def test_a_partition_that_stays_stalled_is_sought_again_with_doubling_patience() -> None:
    watch = StallWatch()
    probe = Probe(expected=3, position=5, highwater=5)
    fired = [i for i in range(1, 200) if watch.check({TP: probe}, idle=True)]
    # counting starts at check 1; seeks after 2, then 4, 8, 16, 32, 32, ... further idle checks
    gaps = [b - a for a, b in zip([1, *fired], fired, strict=False)]
    assert gaps[:6] == [2, 4, 8, 16, 32, 32]
    assert max(gaps) == MAX_PATIENCE
    assert watch.seeks(TP) == len(fired)


def test_revoked_partitions_are_forgotten() -> None:
    watch = StallWatch()
    probe = Probe(expected=3, position=5, highwater=5)
    watch.check({TP: probe}, idle=True)
    watch.check({TP: probe}, idle=True)
    assert watch.check({}, idle=True) == {}
    assert watch.seeks(TP) == 0
    # back again: counted afresh, not sought at once
    assert watch.check({TP: probe}, idle=True) == {}
    assert watch.check({TP: probe}, idle=True) == {}
    assert watch.check({TP: probe}, idle=True) == {TP: 3}
