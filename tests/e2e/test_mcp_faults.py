"""Faults of upstream MCP servers, as both fronts answer them, and what keeps working meanwhile.

- an HTTP server killed (SIGKILL) during a call: 502 ``mcp_server_unavailable`` naming it (REST), an ``isError``
  result saying so (``/mcp``); it is listed as unavailable (REST ``state``, ``/mcp`` ``_meta``) while the other
  servers still list and call, and it comes back once it listens again;
- a client hanging up mid-call: the call cancelled (both fronts) and audited as ``client_closed``; on a
  2025-11-25 session the upstream call is cancelled too;
- a call past the server's ``timeout_s``: 504 ``mcp_timeout`` and the upstream call cancelled (the fake's record
  says ``cancelled``), on a 2025-11-25 session and on a 2026-07-28 exchange;
- a tool's own error (or an upstream's JSON-RPC refusal of the call): an ``isError`` result, HTTP 200;
- a stdio server whose process exits (``crash``): restarted, a later call succeeds within a few seconds;
- a server that is down when the gateway starts appears when it comes up.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.e2e.mcp_support import (
    ENVELOPE,
    MODERN,
    Fake,
    World,
    audit_records,
    call_rest,
    http_server,
    new_key,
    new_team,
    rest,
    rpc,
    run,
    running,
    sdk,
    server_status,
    set_policy,
    start_fakes,
    stdio_server,
    text_of,
    until,
    wait_ready,
)
from tests.e2e.test_admin_api import assert_error
from tests.fakes.mcp_support import start_http_server
from tests.support import free_port

LONG = {"seconds": 20}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("mcp-faults")
    records = {sid: tmp / f"{sid}.record" for sid in ("flaky", "lazy-legacy", "lazy-modern", "patient")}
    fakes = start_fakes(
        {
            "flaky": ("legacy", {"name": "flaky", "record": records["flaky"]}),
            "lazy-legacy": ("legacy", {"name": "lazy-legacy", "record": records["lazy-legacy"]}),
            "lazy-modern": ("modern", {"name": "lazy-modern", "record": records["lazy-modern"], "sse": True}),
            "patient": ("modern", {"name": "patient", "record": records["patient"], "sse": True}),
        }
    )
    late_port = free_port()
    servers = [
        stdio_server("files"),
        http_server("flaky", fakes["flaky"]),
        http_server("lazy-legacy", fakes["lazy-legacy"], timeout_s=1),
        http_server("lazy-modern", fakes["lazy-modern"], timeout_s=1),
        http_server("patient", fakes["patient"]),
        {"id": "late", "transport": "http", "url": f"http://127.0.0.1:{late_port}/mcp"},
    ]
    with running(tmp, fakes, servers, ready=["files", "flaky", "lazy-legacy", "lazy-modern", "patient"]) as w:
        team = new_team(w.gw, "faults")
        w.tenants = {"k": new_key(w.gw, team)}
        set_policy(w.gw, team, {"allow": ["*"]})
        # the late server: down at the start, up from now on
        w.extra |= {"records": records, "late_at_start": server_status(w.gw)["late"]}
        proc, url = start_http_server("legacy", late_port, name="late")
        w.fakes["late"] = Fake("legacy", {"name": "late"}, proc, url)
        yield w


def key(world: World) -> str:
    return world.tenants["k"].key


def started(record: Path, count: int) -> bool:
    return record.exists() and record.read_text().count("started") >= count


def lines(record: Path, word: str) -> int:
    return record.read_text().count(word) if record.exists() else 0


def others_still_work(world: World) -> None:
    """While ``flaky`` is down: it is listed as unavailable, the other servers list and call."""
    servers = {s["id"]: s for s in rest(world.gw, "GET", "/servers", key(world)).json()["data"]}
    assert servers["flaky"]["state"] == "unavailable" and servers["flaky"]["error"], servers["flaky"]
    assert servers["files"]["state"] == "ready" and servers["files"]["error"] is None
    listed = rpc(world.gw, key(world), "tools/list").json()["result"]
    names = {t["name"] for t in listed["tools"]}
    assert {"files__echo", "lazy-legacy__echo", "lazy-modern__echo"} <= names
    assert not {n for n in names if n.startswith("flaky__")}
    assert "flaky" in listed["_meta"]["ferrogate/unavailable"]
    tools = rest(world.gw, "GET", "/servers/flaky/tools", key(world))
    err = assert_error(tools, 502, "mcp_server_unavailable")
    assert "MCP server 'flaky' is unavailable" in err["message"]
    err = assert_error(call_rest(world.gw, key(world), "flaky", "echo", {"text": "x"}), 502, "mcp_server_unavailable")
    assert "MCP server 'flaky' is unavailable" in err["message"]
    for server in ("files", "lazy-modern"):
        resp = call_rest(world.gw, key(world), server, "add", {"a": 1, "b": 1})
        assert resp.status_code == 200 and text_of(resp.json()) == "2", resp.text


def bring_back(world: World) -> None:
    world.fakes["flaky"].restart()
    wait_ready(world.gw, "flaky", bound_s=20)
    resp = call_rest(world.gw, key(world), "flaky", "echo", {"text": "back"})
    assert resp.status_code == 200 and text_of(resp.json()) == "back", resp.text


def test_a_server_killed_mid_call_is_a_502_and_the_others_go_on(world: World) -> None:
    record = world.extra["records"]["flaky"]
    before = lines(record, "started")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(call_rest, world.gw, key(world), "flaky", "slow", LONG)
        until(lambda: started(record, before + 1))
        killed = time.monotonic()
        world.fakes["flaky"].kill()
        resp = pending.result(timeout=20)
    assert time.monotonic() - killed < 5
    err = assert_error(resp, 502, "mcp_server_unavailable")
    assert err["message"].startswith("MCP server 'flaky' is unavailable: "), err
    try:
        until(lambda: server_status(world.gw)["flaky"]["state"] == "unavailable")  # type: ignore[index]
        others_still_work(world)
    finally:
        bring_back(world)


def test_a_server_killed_mid_call_is_an_error_result_on_mcp(world: World) -> None:
    record = world.extra["records"]["flaky"]
    before = lines(record, "started")

    async def scenario() -> Any:
        async with sdk(world.gw, key(world), "auto") as client, anyio.create_task_group() as tg:
            out: dict[str, Any] = {}

            async def call() -> None:
                out["result"] = await client.call_tool("flaky__slow", LONG)

            tg.start_soon(call)
            with anyio.fail_after(10):
                while not started(record, before + 1):  # noqa: ASYNC110 (a file another process writes)
                    await anyio.sleep(0.05)
            world.fakes["flaky"].kill()
        return out["result"]

    try:
        result = run(scenario())
        assert result.is_error is True
        assert text_of(result).startswith("MCP server 'flaky' is unavailable: "), text_of(result)
        assert result.meta == {"ferrogate/error": "mcp_server_unavailable"} or (
            result.meta is not None and result.meta.get("ferrogate/error") == "mcp_server_unavailable"
        )
        others_still_work(world)
    finally:
        bring_back(world)


@pytest.mark.parametrize("server", ["lazy-legacy", "lazy-modern"])
def test_a_call_past_the_timeout_is_a_504_and_cancelled_upstream(world: World, server: str) -> None:
    record = world.extra["records"][server]
    cancelled = lines(record, "cancelled")
    began = time.monotonic()
    resp = call_rest(world.gw, key(world), server, "slow", LONG)
    took = time.monotonic() - began
    err = assert_error(resp, 504, "mcp_timeout")
    assert err["message"] == f"MCP server '{server}' did not answer within 1 s; the call was cancelled."
    assert 0.9 < took < 4, took
    until(lambda: lines(record, "cancelled") > cancelled, bound_s=5)
    assert lines(record, "finished") == 0
    # /mcp: an error result the agent can read, and cancelled upstream too
    answer = rpc(world.gw, key(world), "tools/call", {"name": f"{server}__slow", "arguments": LONG})
    assert answer.status_code == 200, answer.text
    result = answer.json()["result"]
    assert result["isError"] is True and result["_meta"]["ferrogate/error"] == "mcp_timeout"
    assert text_of(result) == err["message"]
    until(lambda: lines(record, "cancelled") > cancelled + 1, bound_s=5)
    # the session is still good
    ok = call_rest(world.gw, key(world), server, "slow", {"seconds": 0.01})
    assert ok.status_code == 200 and text_of(ok.json()) == "slept 0.01", ok.text


def test_a_tool_error_is_an_error_result(world: World) -> None:
    for server in ("files", "flaky", "lazy-modern"):
        resp = call_rest(world.gw, key(world), server, "fail", {"message": "boom"})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["isError"] is True and "boom" in text_of(body), body
        refused = call_rest(world.gw, key(world), server, "refuse", {"reason": "not today"})
        assert refused.status_code == 200, refused.text
        assert refused.json()["isError"] is True
        assert text_of(refused.json()) == f"MCP server '{server}' refused the call: not today (JSON-RPC error -32602)"

    async def via_sdk() -> Any:
        async with sdk(world.gw, key(world), "legacy") as client:
            return await client.call_tool("files__fail", {"message": "boom"})

    result = run(via_sdk())
    assert result.is_error is True and "boom" in text_of(result)


def test_a_crashed_stdio_server_comes_back(world: World) -> None:
    began = time.monotonic()
    resp = call_rest(world.gw, key(world), "files", "crash", {})
    assert time.monotonic() - began < 5
    err = assert_error(resp, 502, "mcp_server_unavailable")
    assert err["message"].startswith("MCP server 'files' is unavailable: "), err

    def answered() -> bool:
        got = call_rest(world.gw, key(world), "files", "echo", {"text": "again"})
        return got.status_code == 200 and text_of(got.json()) == "again"

    until(answered, bound_s=8, step_s=0.1)
    assert time.monotonic() - began < 8
    assert server_status(world.gw)["files"]["state"] == "ready"  # type: ignore[index]


def test_a_server_down_at_the_start_appears_when_it_comes_up(world: World) -> None:
    at_start = world.extra["late_at_start"]
    assert at_start["state"] in ("connecting", "unavailable"), at_start
    wait_ready(world.gw, "late", bound_s=35)
    names = {t["name"] for t in rpc(world.gw, key(world), "tools/list").json()["result"]["tools"]}
    assert "late__echo" in names
    resp = call_rest(world.gw, key(world), "late", "echo", {"text": "here"})
    assert resp.status_code == 200 and text_of(resp.json()) == "here", resp.text


@pytest.mark.parametrize("server", ["flaky", "patient"])  # a 2025-11-25 session, a 2026-07-28 exchange
@pytest.mark.parametrize("front", ["rest", "mcp"])
def test_a_client_hanging_up_cancels_the_upstream_call(world: World, front: str, server: str) -> None:
    """The client gives up (its read timeout closes the connection) long before the server's 30 s timeout: the
    gateway's call is cancelled and audited as ``client_closed``."""
    record = world.extra["records"][server]
    cancelled, started_before = lines(record, "cancelled"), lines(record, "started")
    auth = {"Authorization": f"Bearer {key(world)}"}
    with pytest.raises(httpx.ReadTimeout):
        if front == "rest":
            httpx.post(
                f"{world.gw.url}/mcp/v1/servers/{server}/tools/slow:call", json={"arguments": LONG}, headers=auth,
                timeout=httpx.Timeout(10, read=1.5),
            )  # fmt: skip
        else:
            body = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": f"{server}__slow",
                    "arguments": LONG, "_meta": ENVELOPE}}  # fmt: skip
            headers = {**auth, "accept": "application/json, text/event-stream", "mcp-protocol-version": MODERN,
                       "mcp-method": "tools/call", "mcp-name": f"{server}__slow"}  # fmt: skip
            httpx.post(f"{world.gw.url}/mcp", json=body, headers=headers, timeout=httpx.Timeout(10, read=1.5))
    assert lines(record, "started") == started_before + 1
    if server == "flaky":  # a session's call is cancelled upstream (notifications/cancelled)
        until(lambda: lines(record, "cancelled") > cancelled, bound_s=5)
    # (a 2026-07-28 exchange keeps running upstream until the server's timeout_s: docs/mcp.md, "Limits")
    assert lines(record, "finished") == 0

    def audited() -> list[dict[str, Any]]:
        found = audit_records(world.gw, action="mcp.tools.call", target=f"{server}__slow")
        return [r for r in found if r["data"]["outcome"] == "client_closed" and r["data"]["front"] == front]

    until(audited, bound_s=5)
