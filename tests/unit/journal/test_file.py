"""The journal files and the record's JSON form: writes in the file at once, synced in groups, segments sealed and
released, leftovers claimed, torn lines rejected, not lost."""

from __future__ import annotations

import fcntl
import os
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ferrogate.journal.file import REJECTED, Journal, parse_lines
from ferrogate.journal.syncer import Syncer
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


def test_write_seal_release_keeps_what_came_after(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    assert journal.size() == 0 and journal.sealed() == [] and journal.seal() is None
    journal.write(rec(1))
    journal.write(rec(2))
    segment = journal.seal()  # a write round takes rec 1 and 2
    assert segment is not None and segment.path.name.startswith(f"usage-{os.getpid()}-")
    assert journal.read(segment) == [rec(1), rec(2)] and journal.backlog() == segment.size > 0
    journal.write(rec(3))  # arrives while the first two are being inserted
    journal.release(segment)
    assert not segment.path.exists() and journal.backlog() == 0 and journal.size() > 0
    later = journal.seal()
    assert later is not None and journal.read(later) == [rec(3)] and journal.sealed() == [later]
    journal.release(later)
    assert journal.size() == 0
    journal.close()
    assert list((tmp_path / "journal").iterdir()) == []  # an empty journal leaves no file


def test_written_lines_are_in_the_file_at_once_and_synced_by_the_thread(tmp_path: Path) -> None:
    journal = Journal(tmp_path, fsync_interval_s=0.01)
    journal.write(rec(1))
    (path,) = tmp_path.glob("usage-*.jsonl")
    assert path.read_bytes().rstrip(b"\0") == rec(1).to_json() + b"\n"  # the page cache: a kill keeps it
    syncer = Syncer.shared(0.01)
    before = syncer.passes
    deadline = time.monotonic() + 5
    while syncer.passes < before + 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert syncer.passes >= before + 2
    assert journal.unsynced() == []  # the thread took (and fsync'd) what was written
    journal.close()


def test_close_leaves_a_nonempty_file_unlocked(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.write(rec(1))
    (path,) = tmp_path.glob("usage-*.jsonl")
    other = Journal(tmp_path)
    assert other.leftovers() == [path] and journal.leftovers() == []
    with other.claim(path) as claimed:
        assert claimed is None  # its owner is alive
    journal.close()
    with other.claim(path) as claimed:
        assert claimed is not None and claimed[0] == [rec(1)]
        other.finish(path, claimed[1])
    assert not path.exists()


def test_sealed_segments_stay_locked_until_released(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.write(rec(1))
    segment = journal.seal()
    journal.write(rec(2))
    assert segment is not None
    other = Journal(tmp_path)
    for path in other.leftovers():
        with other.claim(path) as claimed:
            assert claimed is None  # both the sealed and the current segment belong to a live process
    journal.release(segment)
    journal.close()
    (left,) = tmp_path.glob("usage-*.jsonl")
    with other.claim(left) as claimed:
        assert claimed is not None and claimed[0] == [rec(2)]


def test_claim_rejects_torn_lines_and_skips_locked_files(tmp_path: Path) -> None:
    dead = tmp_path / "usage-1-dead.jsonl"
    dead.write_bytes(rec(1).to_json() + b"\n" + b'{"torn')
    live = tmp_path / "usage-2-live.jsonl"
    live.write_bytes(rec(2).to_json() + b"\n")
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        spool = Journal(tmp_path)
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


def test_a_segment_grows_past_its_first_mapping_and_a_kill_leaves_only_zeros_after_the_data(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    records = [rec(n) for n in range(8000)]  # ~2 MB: the 1 MiB mapping doubles, twice
    for r in records:
        journal.write(r)
    (path,) = tmp_path.glob("usage-*.jsonl")
    assert path.stat().st_size > journal.size()  # the mapping's unwritten tail, as a killed process leaves it
    other = Journal(tmp_path)
    with other.claim(path) as claimed:
        assert claimed is None
    segment = journal.seal()
    assert segment is not None and journal.read(segment) == records
    journal.close()  # a clean stop cuts the file to its data
    assert path.stat().st_size == len(b"".join(r.to_json() + b"\n" for r in records))
    with other.claim(path) as claimed:
        assert claimed is not None and claimed[0] == records
