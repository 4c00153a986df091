"""``ferrogate audit verify`` against a tampered database, on both backends: an edited, a deleted and an
inserted row are each detected (exit 1) and the first bad record is named with the reason."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import orjson
import pytest

from ferrogate.store.audit import AuditRecord, canonical, record_hash
from ferrogate.store.sql import SqlStore
from tests.integration.audit.conftest import T0, event, facts, request, run_cli

pytestmark = pytest.mark.anyio

INSERT = (
    "INSERT INTO audit_log (seq, event_id, created_at, kind, actor, action, target, team_id, data, prev_hash, hash) "
)
INSERT += "VALUES (?, ?, ?, 'admin', 'master', 'team.delete', 'team_x', NULL, ?, ?, ?)"


async def execute(store: SqlStore, sql: str, *args: object) -> None:
    async with store.transaction() as tx:
        await tx.execute(sql, *args)


async def edit_data(store: SqlStore, chain: list[AuditRecord]) -> tuple[int, int, str]:
    await execute(store, "UPDATE audit_log SET data = ? WHERE seq = 4", '{"after":{"n":400}}')
    return 4, 3, "hash mismatch: its content was edited"


async def edit_actor(store: SqlStore, chain: list[AuditRecord]) -> tuple[int, int, str]:
    await execute(store, "UPDATE audit_log SET actor = 'someone_else' WHERE seq = 7")
    return 7, 6, "hash mismatch"


async def delete_row(store: SqlStore, chain: list[AuditRecord]) -> tuple[int, int, str]:
    await execute(store, "DELETE FROM audit_log WHERE seq = 4")
    return 5, 3, "seq gap: expected seq 4, so record 4 is missing"


async def delete_first_rows(store: SqlStore, chain: list[AuditRecord]) -> tuple[int, int, str]:
    await execute(store, "DELETE FROM audit_log WHERE seq <= 2")
    return 3, 0, "seq gap: expected seq 1, so records 1..2 are missing"


async def insert_row_at_end(store: SqlStore, chain: list[AuditRecord]) -> tuple[int, int, str]:
    # a forger who knows the head but not how the hash is computed
    forged = hashlib.sha256(b"looks legitimate").hexdigest()
    await execute(store, INSERT, 11, "evt_forged", store.ts_in(T0), "{}", chain[-1].hash, forged)
    return 11, 10, "hash mismatch"


async def insert_row_in_the_middle(store: SqlStore, chain: list[AuditRecord]) -> tuple[int, int, str]:
    # a forger who knows the hash: renumbers 5..10 to 6..11, inserts a well-formed record 5 chained to 4
    await execute(store, "UPDATE audit_log SET seq = seq + 100 WHERE seq >= 5")
    await execute(store, "UPDATE audit_log SET seq = seq - 99 WHERE seq >= 105")
    data = canonical({"after": None})
    digest = record_hash(5, "evt_forged", T0, "admin", "master", "team.delete", "team_x", None, data, chain[3].hash)
    await execute(store, INSERT, 5, "evt_forged", store.ts_in(T0), data, chain[3].hash, digest)
    return 6, 5, "prev_hash mismatch"


#: Changes the chain of 10 records; returns the seq of the first bad record, how many records before it are
#: intact, and the start of the reason verify gives.
Tamper = Callable[[SqlStore, list[AuditRecord]], Awaitable[tuple[int, int, str]]]


async def tamper_and_verify(db_url: str, store: SqlStore, tamper: Tamper) -> None:
    """Apply ``tamper`` to the chain; verify must exit 1 naming the record and the reason it gives."""
    bad_seq, intact, reason = await tamper(store, list(await store.audit.scan()))
    done = run_cli(db_url, "audit", "verify")
    assert done.returncode == 1, (done.stdout, done.stderr)
    bad = next(r for r in await store.audit.scan() if r.seq == bad_seq)
    expected = f"bad: record seq {bad_seq} (event {bad.event_id}): {reason}"
    assert done.stdout.startswith(expected), done.stdout
    assert f"({intact} records before it are intact, head " in done.stdout, done.stdout


@pytest.mark.parametrize(
    "tamper", [edit_data, edit_actor, delete_row, delete_first_rows, insert_row_at_end, insert_row_in_the_middle]
)
async def test_verify_names_the_first_bad_record(db_url: str, store: SqlStore, tamper: Tamper) -> None:
    await store.audit.append_many([event(n) for n in range(1, 11)])
    await tamper_and_verify(db_url, store, tamper)


async def rewrite_block(store: SqlStore, first_seq: int, change: Callable[[list[dict[str, object]]], object]) -> None:
    async with store.transaction() as tx:
        (row,) = await tx.fetch("SELECT records FROM audit_blocks WHERE first_seq = ?", first_seq)
        records = orjson.loads(row["records"])
        change(records)
        await tx.execute(
            "UPDATE audit_blocks SET records = ? WHERE first_seq = ?", orjson.dumps(records).decode(), first_seq
        )


async def edit_in_block(store: SqlStore, chain: list[AuditRecord]) -> tuple[int, int, str]:
    await execute(
        store, "UPDATE audit_blocks SET records = replace(records, '\"prompt_tokens\":4,', '\"prompt_tokens\":400,')"
    )
    return 4, 3, "hash mismatch: its content was edited"


async def drop_from_block(store: SqlStore, chain: list[AuditRecord]) -> tuple[int, int, str]:
    await rewrite_block(store, 3, lambda records: records.pop(2))  # seq 5
    return 6, 4, "seq gap: expected seq 5, so record 5 is missing"


async def delete_block(store: SqlStore, chain: list[AuditRecord]) -> tuple[int, int, str]:
    await execute(store, "DELETE FROM audit_blocks WHERE first_seq = 3")
    return 7, 2, "seq gap: expected seq 3, so records 3..6 are missing"


async def forge_at_block_end(store: SqlStore, chain: list[AuditRecord]) -> tuple[int, int, str]:
    forged = dict(orjson.loads(orjson.dumps(chain[-1].to_dict())), seq=11, event_id="req_forged")
    forged["hash"] = hashlib.sha256(b"looks legitimate").hexdigest()
    for name in ("kind", "prev_hash"):
        del forged[name]
    await rewrite_block(store, 8, lambda records: records.append(forged))
    return 11, 10, "hash mismatch"


async def garble_block(store: SqlStore, chain: list[AuditRecord]) -> tuple[int, int, str]:
    await execute(store, "UPDATE audit_blocks SET records = 'not json' WHERE first_seq = 3")
    return 3, 2, "hash mismatch"


@pytest.mark.parametrize("tamper", [edit_in_block, drop_from_block, delete_block, forge_at_block_end, garble_block])
async def test_verify_names_the_first_bad_record_in_a_block(db_url: str, store: SqlStore, tamper: Tamper) -> None:
    # rows 1-2, a block 3-6, row 7, a block 8-10
    batches = ([event(1), event(2)], [request(n) for n in range(3, 7)], [event(7)], [request(n) for n in (8, 9, 10)])
    for batch in batches:
        await store.audit.append_many(batch)
    chain = list(await store.audit.scan())
    assert [r.seq for r in chain] == list(range(1, 11))
    done = run_cli(db_url, "audit", "verify")
    assert done.returncode == 0, (done.stdout, done.stderr)
    await tamper_and_verify(db_url, store, tamper)


def set_value(records: list[object]) -> None:
    record = records[1]  # seq 4; compact: [seq, event_id, created_at, actor, action, target, team_id, values, hash]
    assert isinstance(record, list) and record[0] == 4
    record[7][8] = 400  # prompt_tokens (REQUEST_DATA_KEYS order)


async def edit_compact_value(store: SqlStore, chain: list[AuditRecord]) -> tuple[int, int, str]:
    await rewrite_block(store, 3, set_value)
    return 4, 3, "hash mismatch: its content was edited"


async def swap_compact_records(store: SqlStore, chain: list[AuditRecord]) -> tuple[int, int, str]:
    # stored 4, 3, 5, 6: read back in seq order, 3 now follows 4 in its block (its prev_hash is 4's hash)
    await rewrite_block(store, 3, lambda records: records.insert(0, records.pop(1)))
    return 3, 2, "prev_hash mismatch"


async def retype_compact_field(store: SqlStore, chain: list[AuditRecord]) -> tuple[int, int, str]:
    def retype(records: list[object]) -> None:
        record = records[2]  # seq 5
        assert isinstance(record, list)
        record[3] = 123  # the actor, now a number: the block no longer reads as records

    await rewrite_block(store, 3, retype)
    return 3, 2, "hash mismatch"


@pytest.mark.parametrize(
    "tamper", [edit_compact_value, swap_compact_records, retype_compact_field, drop_from_block, garble_block]
)
async def test_verify_names_the_first_bad_compact_record(db_url: str, store: SqlStore, tamper: Tamper) -> None:
    # the account phase's facts: compact records (data values without their keys), rows 1-2, block 3-6, row 7
    for batch in ([event(1), event(2)], [facts(n) for n in range(3, 7)], [event(7)]):
        await store.audit.append_many(batch)
    chain = list(await store.audit.scan())
    assert [r.seq for r in chain] == list(range(1, 8)) and chain[3].payload() == facts(4).event().data
    done = run_cli(db_url, "audit", "verify")
    assert done.returncode == 0, (done.stdout, done.stderr)
    await tamper_and_verify(db_url, store, tamper)


async def test_an_intact_chain_verifies_and_a_cut_tail_is_caught_by_the_anchor(db_url: str, store: SqlStore) -> None:
    done = run_cli(db_url, "audit", "verify")
    assert (done.returncode, done.stdout) == (0, f"ok: 0 records, head {'0' * 64}\n"), done.stderr
    await store.audit.append_many([event(n) for n in range(1, 11)])
    chain = list(await store.audit.scan())
    done = run_cli(db_url, "audit", "verify", "--anchor", chain[6].hash)
    assert (done.returncode, done.stdout) == (0, f"ok: 10 records, head {chain[-1].hash}\n"), done.stderr
    await execute(store, "DELETE FROM audit_log WHERE seq >= 9")  # the tail is gone: a plain walk cannot tell
    done = run_cli(db_url, "audit", "verify")
    assert (done.returncode, done.stdout) == (0, f"ok: 8 records, head {chain[7].hash}\n")
    done = run_cli(db_url, "audit", "verify", "--anchor", chain[-1].hash)
    assert done.returncode == 1
    assert f"does not contain the anchor {chain[-1].hash}" in done.stdout, done.stdout
