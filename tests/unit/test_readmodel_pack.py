"""tierstream.readmodel.writer.pack_command: byte for byte what redis-py's async connection sends."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from tierstream.readmodel.lua import LEDGER_SHA, UPSERT_SHA
from tierstream.readmodel.writer import pack_command

CASES = [
    ("EVALSHA", UPSERT_SHA, 3, "ts:meta", "ts:tier:c1", "ts:counts:five_tier", "1732420000.123456", 1,
     "five_tier", 7, "gold", b'{"tier":"gold","since":"2026-11-24T00:00:00Z"}'),
    ("EVALSHA", LEDGER_SHA, 2, "ts:lp:c1", "ts:ledger:c1:five_tier", 200, 1, "five_tier", 2,
     1732420000.5, b'{"change_id":"x"}', 0.1, b"\x00\xff binary"),
    ("EVALSHA", UPSERT_SHA, 1, "ts:tier:kund-\u00e4\u00f6\u00fc", -3, 1e20, 2**70, ""),
    ("SET", bytearray(b"k"), memoryview(b"v" * 7000)),  # bytes-like; a value past redis-py's buffer cutoff
]


@pytest.mark.parametrize("args", CASES)
def test_packed_as_redis_py_packs(args: tuple[object, ...]) -> None:
    theirs = b"".join(bytes(chunk) for chunk in Connection().pack_command(*args))
    assert pack_command(*args) == theirs  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [True, None, 1j])
def test_what_redis_py_refuses_is_refused_alike(bad: object) -> None:
    with pytest.raises(DataError):
        Connection().pack_command("SET", "k", bad)
    with pytest.raises(DataError):
        pack_command("SET", "k", bad)  # type: ignore[arg-type]
