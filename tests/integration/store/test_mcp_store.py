"""The MCP section of the store (``store.mcp``): servers with sealed credentials, team tool policies, approved pins,
the change counter and ``all()`` (what the change feed applies), on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from ferrogate.guardrails.sync import PolicySync
from ferrogate.mcp.secrets import Sealer, split_credentials
from ferrogate.store import Conflict, InvalidValue
from ferrogate.store.mcp import drop_policy_statements
from ferrogate.store.sql import SqlStore
from tests.integration.store.conftest import Backend

pytestmark = pytest.mark.anyio

TOKEN = "bearer-token-never-stored-in-clear-0001"  # noqa: S105 (a test value)
GITHUB = {
    "id": "github",
    "transport": "http",
    "url": "https://mcp.example.com/mcp",
    "timeout_s": 10.0,
    "headers": {"X-Tenant": "tenant-header-secret-0002"},
    "bearer_token": TOKEN,
}
FILES = {"id": "files", "transport": "stdio", "command": "files-mcp", "args": ["--read-only"]}
POLICY = {"allow": ["github/*", "files/read_*"], "deny": ["github/delete_*"], "tool_calls_per_minute": 30, "keys": {}}
SEALER = Sealer(b"store-test-master-key")


async def test_a_new_store_is_empty_at_version_zero(store: SqlStore) -> None:
    assert await store.mcp.version() == 0
    assert await store.mcp.all() == {"servers": {}, "policies": {}, "pins": {}}
    assert await store.mcp.servers() == []
    assert await store.mcp.get_server("github") is None
    assert await store.mcp.get_policy("team_0123456789abcdef") is None
    assert (await store.mcp.pins("github"), await store.mcp.approved("github")) == ({}, None)


async def test_servers_round_trip_with_sealed_credentials_only(store: SqlStore) -> None:
    doc, secret = split_credentials(GITHUB)
    sealed = SEALER.seal(secret)
    before = datetime.now(UTC)
    put = await store.mcp.put_server("github", doc, sealed, "master", create=True)
    assert (put["id"], put["doc"], put["sealed"], put["updated_by"]) == ("github", doc, sealed, "master")
    assert before <= put["updated_at"] <= datetime.now(UTC) and put["updated_at"].tzinfo is UTC
    assert await store.mcp.get_server("github") == put
    assert SEALER.unseal(put["sealed"] or "") == secret
    none = await store.mcp.put_server("files", FILES, None, "key_admin")
    assert [s["id"] for s in await store.mcp.servers()] == ["files", "github"]
    assert (await store.mcp.all())["servers"] == {
        "files": {"doc": FILES, "sealed": None},
        "github": {"doc": doc, "sealed": sealed},
    }
    assert none["sealed"] is None
    # the rows themselves: no credential in clear anywhere
    async with store.transaction(write=False) as tx:
        rows = await tx.fetch("SELECT id, doc, sealed FROM mcp_servers")
    text = repr([tuple(str(row[c]) for c in ("id", "doc", "sealed")) for row in rows])
    assert TOKEN not in text and "tenant-header-secret-0002" not in text and "X-Tenant" not in text


async def test_create_refuses_a_taken_id_and_put_replaces_whole(store: SqlStore) -> None:
    await store.mcp.put_server("files", FILES, None, "master", create=True)
    with pytest.raises(Conflict, match="MCP server 'files' already exists"):
        await store.mcp.put_server("files", {**FILES, "command": "other"}, None, "master", create=True)
    assert (await store.mcp.version(), (await store.mcp.get_server("files") or {}).get("doc")) == (1, FILES)
    replaced = await store.mcp.put_server("files", {"id": "files", "transport": "stdio", "command": "v2"}, "v1.x", "k")
    assert (replaced["doc"], replaced["sealed"], replaced["updated_by"]) == (
        {"id": "files", "transport": "stdio", "command": "v2"},
        "v1.x",
        "k",
    )
    assert await store.mcp.version() == 2


async def test_delete_drops_the_server_and_its_pins(store: SqlStore) -> None:
    await store.mcp.put_server("files", FILES, None, "master")
    await store.mcp.approve("files", {"read_file": "a" * 64}, "master")
    assert await store.mcp.delete_server("files", "master") is True
    assert (await store.mcp.get_server("files"), await store.mcp.approved("files")) == (None, None)
    assert await store.mcp.version() == 3
    assert await store.mcp.delete_server("files", "master") is False  # nothing to drop: no change
    assert await store.mcp.version() == 3


async def test_policies_by_team(store: SqlStore) -> None:
    team = "team_0123456789abcdef"
    put = await store.mcp.put_policy(team, POLICY, "master")
    assert (put["team_id"], put["doc"], put["updated_by"]) == (team, POLICY, "master")
    assert await store.mcp.get_policy(team) == put
    narrowed = {**POLICY, "keys": {"key_0123456789abcdef": {"allow": ["github/list_*"], "deny": []}}}
    await store.mcp.put_policy(team, narrowed, "key_admin")
    assert (await store.mcp.all())["policies"] == {team: narrowed}
    assert await store.mcp.delete_policy(team) is True
    assert await store.mcp.delete_policy(team) is False
    assert (await store.mcp.get_policy(team), await store.mcp.version()) == (None, 3)


async def test_a_teams_delete_can_drop_its_policy_in_its_transaction(store: SqlStore) -> None:
    async def drop(team_id: str) -> None:
        async with store.transaction() as tx:
            for sql, args in drop_policy_statements(team_id):
                await tx.execute(sql, *args)

    await store.mcp.put_policy("team_a", POLICY, "master")
    await store.mcp.put_policy("team_b", POLICY, "master")
    await drop("team_a")
    assert ((await store.mcp.all())["policies"], await store.mcp.version()) == ({"team_b": POLICY}, 3)
    await drop("team_a")  # nothing left to drop: the version stays
    assert await store.mcp.version() == 3


async def test_deleting_a_team_drops_its_policy(store: SqlStore) -> None:
    team = await store.teams.create("mcp-users")
    kept = await store.teams.create("mcp-others")
    await store.mcp.put_policy(team.id, POLICY, "master")
    await store.mcp.put_policy(kept.id, POLICY, "master")
    version = await store.mcp.version()
    await store.teams.delete(team.id)
    assert await store.mcp.get_policy(team.id) is None
    assert (await store.mcp.get_policy(kept.id) or {}).get("doc") == POLICY
    assert await store.mcp.version() == version + 1  # the workers learn of it


async def test_approve_replaces_a_servers_pins_and_an_empty_approval_counts(store: SqlStore) -> None:
    first = {"create_issue": "1" * 64, "list_issues": "2" * 64}
    await store.mcp.approve("github", first, "master")
    assert await store.mcp.pins("github") == first
    await store.mcp.approve("github", {"list_issues": "3" * 64}, "key_admin")
    assert await store.mcp.approved("github") == {"list_issues": "3" * 64}  # replaced whole, not merged
    await store.mcp.approve("files", {}, "system")  # approved with no tools: no longer trusted on first use
    assert (await store.mcp.approved("files"), await store.mcp.pins("files")) == ({}, {})
    assert (await store.mcp.all())["pins"] == {"files": {}, "github": {"list_issues": "3" * 64}}
    assert await store.mcp.version() == 3
    async with store.transaction(write=False) as tx:
        rows = await tx.fetch(
            "SELECT approved_by FROM mcp_pins WHERE server_id = ? AND tool = ?", "github", "list_issues"
        )
    assert [r["approved_by"] for r in rows] == ["key_admin"]


async def test_every_change_raises_the_version_by_one(store: SqlStore) -> None:
    steps = [
        store.mcp.put_server("github", {"id": "github"}, None, "m"),
        store.mcp.put_server("github", {"id": "github"}, None, "m"),  # the same document again is still a change
        store.mcp.put_policy("team_a", POLICY, "m"),
        store.mcp.approve("github", {"t": "h"}, "m"),
        store.mcp.delete_policy("team_a"),
        store.mcp.delete_server("github", "m"),
    ]
    for n, step in enumerate(steps, start=1):
        await step
        assert await store.mcp.version() == n


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: s.mcp.put_server("My_Server", {}, None, "m"), "server_id"),
        (lambda s: s.mcp.put_server("x" * 33, {}, None, "m"), "server_id"),
        (lambda s: s.mcp.put_server("ok", ["not", "an", "object"], None, "m"), "doc"),
        (lambda s: s.mcp.put_server("ok", {"when": object()}, None, "m"), "doc"),
        (lambda s: s.mcp.put_server("ok", {}, b"bytes", "m"), "sealed"),
        (lambda s: s.mcp.put_policy("", POLICY, "m"), "team_id"),
        (lambda s: s.mcp.approve("ok", {"": "h"}, "m"), "hashes"),
        (lambda s: s.mcp.approve("ok", {"t": ""}, "m"), "hashes.t"),
        (lambda s: s.mcp.get_server("bad id"), "server_id"),
    ],
)
async def test_bad_values_are_refused_naming_the_field(store: SqlStore, call: object, field: str) -> None:
    with pytest.raises(InvalidValue) as info:
        await call(store)  # type: ignore[operator]
    assert info.value.field == field
    assert await store.mcp.version() == 0


async def test_another_worker_follows_changes_through_the_feed(store: SqlStore, backend: Backend) -> None:
    """PolicySync over ``store.mcp`` (its ``source``): a second store on the same database sees every change; the
    target's ``apply`` may be a coroutine (awaited before the version counts as applied; a refusal keeps the
    previous state)."""

    class Target:
        def __init__(self) -> None:
            self.applied: list[dict[str, object]] = []

        async def apply(self, docs: dict[str, Any]) -> None:
            await asyncio.sleep(0)
            if "refused" in docs["policies"]:
                raise ValueError("allow.0: refused")
            self.applied.append(docs)

    other = backend.open()
    target = Target()
    sync = PolicySync(target, other, None, source=other.mcp, poll_s=0.05, channel="ferrogate:mcp:changed")
    assert await sync.load() is True
    assert target.applied == [{"servers": {}, "policies": {}, "pins": {}}]
    poll = asyncio.create_task(sync.poll())
    try:
        await store.mcp.put_policy("team_a", POLICY, "master")
        async with asyncio.timeout(2):
            while sync.version != 1:  # noqa: ASYNC110 (the poll under test)
                await asyncio.sleep(0.01)
        assert target.applied[-1] == {"servers": {}, "policies": {"team_a": POLICY}, "pins": {}}
        assert await other.guardrails.version() == 0  # the guardrails' counter is another one
        await store.mcp.put_policy("refused", POLICY, "master")
        assert await sync.load() is False
        assert (sync.version, len(target.applied)) == (1, 2)  # the previous state stays
    finally:
        poll.cancel()
