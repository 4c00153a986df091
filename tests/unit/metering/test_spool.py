"""The spool file and the record's JSON form: durable appends, tails kept, torn lines rejected, not lost."""

from __future__ import annotations

import fcntl
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ferrogate.metering.spool import REJECTED, Spool, parse_lines
from ferrogate.store import InvalidValue
from ferrogate.store.usage import UsageRecord

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def rec(n: int, **kw: object) -> UsageRecord:
    values: dict[str, object] = {"request_id": f"r{n}", "created_at": T0, "model": "m", "status": 200}
    return UsageRecord(**{**values, "prompt_tokens": n, **kw})  # type: ignore[arg-type]


def test_record_json_round_trip() -> None:
    at = datetime(2025, 3, 1, 1, 2, 3, 456789, tzinfo=timezone(timedelta(hours=2)))
    full = rec(5, created_at=at, stream=True, counted=True, cost_usd=None, key_id="k", latency_ms=1.5)
    assert UsageRecord.from_json(full.to_json()) == full
    assert b"\n" not in full.to_json()


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[]",
        b'{"request_id": "r"}',
        b'{"request_id": "r", "created_at": "2025-01-01T00:00:00", "model": "m", "status": 200}',  # naive
        b'{"request_id": "r", "created_at": "yesterday", "model": "m", "status": 200}',
        b'{"request_id": "r", "created_at": "2025-01-01T00:00:00Z", "model": "m", "status": 200, "extra": 1}',
        b'{"request_id": "r", "created_at": "2025-01-01T00:00:00Z", "model": "m", "status": "200"}',
    ],
)
def test_from_json_refuses_what_it_cannot_store(line: bytes) -> None:
    with pytest.raises(InvalidValue):
        UsageRecord.from_json(line)


def test_parse_lines_keeps_an_unterminated_tail() -> None:
    good = rec(1).to_json()
    records, bad, end = parse_lines(good + b"\n\nbroken\n" + good[:10])
    assert (records, bad, end) == ([rec(1)], [b"broken"], len(good) + 9)


def test_append_read_consume_keeps_what_came_after(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    assert spool.size() == 0 and spool.read() == ([], 0)
    assert spool.append([rec(1), rec(2)]) == 2
    assert spool.path is not None and spool.path.name.startswith(f"usage-{os.getpid()}-")
    records, offset = spool.read()
    assert records == [rec(1), rec(2)]
    spool.append([rec(3)])  # arrives while the first two are being inserted
    spool.consume(offset)
    assert spool.read()[0] == [rec(3)]
    spool.consume(spool.read()[1])
    assert spool.size() == 0
    path = spool.path
    spool.close()
    assert not path.exists()  # an empty spool leaves no file


def test_close_leaves_a_nonempty_file_unlocked(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([rec(1)])
    path = spool.path
    assert path is not None
    other = Spool(tmp_path)
    with other.claim(path) as claimed:
        assert claimed is None  # its owner is alive
    spool.close()
    with other.claim(path) as claimed:
        assert claimed is not None and claimed[0] == [rec(1)]
        other.finish(path, claimed[1])
    assert not path.exists()


def test_claim_rejects_torn_lines_and_skips_locked_files(tmp_path: Path) -> None:
    dead = tmp_path / "usage-1-dead.jsonl"
    dead.write_bytes(rec(1).to_json() + b"\n" + b'{"torn')
    live = tmp_path / "usage-2-live.jsonl"
    live.write_bytes(rec(2).to_json() + b"\n")
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        spool = Spool(tmp_path)
        assert spool.leftovers() == [dead, live]
        with spool.claim(live) as claimed:
            assert claimed is None
        with spool.claim(dead) as claimed:
            assert claimed is not None and claimed[0] == [rec(1)]
        assert (tmp_path / REJECTED).read_bytes() == b'{"torn\n'
        with spool.claim(tmp_path / "usage-3-gone.jsonl") as claimed:
            assert claimed is None
    finally:
        os.close(fd)
