"""``ferrogate audit export``: the chain as JSON lines in chain order, on both backends; a full export
verifies offline (``ferrogate audit verify --file``), and an edited line is caught there too."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from ferrogate.store.sql import SqlStore
from tests.integration.audit.conftest import T0, event, run_cli

pytestmark = pytest.mark.anyio


async def test_export_round_trip_and_offline_verify(db_url: str, store: SqlStore, tmp_path: Path) -> None:
    await store.audit.append_many([event(n) for n in range(1, 21)])
    await store.audit.append_many([event(n, kind="request", action="chat.completions") for n in range(21, 26)])
    records = list(await store.audit.scan())
    done = run_cli(db_url, "audit", "export")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [orjson.loads(line) for line in lines] == [r.to_dict() for r in records]
    assert lines[0].startswith('{"seq":1,"event_id":"evt_000001","created_at":"2025-03-01T12:00:01.000000Z"')
    assert orjson.loads(lines[-1])["data"] == event(25).data

    exported = tmp_path / "audit.jsonl"
    exported.write_text(done.stdout)
    done = run_cli(db_url, "audit", "verify", "--file", str(exported))
    assert (done.returncode, done.stdout) == (0, f"ok: 25 records, head {records[-1].hash}\n"), done.stderr

    # an auditor's copy edited after the fact: the file no longer verifies
    edited = [orjson.loads(line) for line in lines]
    edited[9]["data"]["after"]["n"] = 999
    exported.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in edited))
    done = run_cli(db_url, "audit", "verify", "--file", str(exported))
    assert done.returncode == 1
    assert done.stdout.startswith("bad: record seq 10 (event evt_000010): hash mismatch"), done.stdout

    # a time window: created_at from (inclusive) .. to (exclusive), still in chain order
    since, until = T0 + timedelta(seconds=5), T0 + timedelta(seconds=12)
    done = run_cli(db_url, "audit", "export", "--from", since.isoformat(), "--to", "2025-03-01T12:00:12")
    assert done.returncode == 0, done.stderr
    assert [orjson.loads(line)["seq"] for line in done.stdout.splitlines()] == list(range(5, 12))
    assert all(since <= r.created_at < until for r in records[4:11])


async def test_export_refuses_a_bad_time(tmp_path: Path) -> None:
    done = run_cli(f"sqlite:{tmp_path / 'never-opened.db'}", "audit", "export", "--from", "yesterday")
    assert done.returncode == 2 and "not an ISO-8601 time" in done.stderr
    assert not (tmp_path / "never-opened.db").exists()
