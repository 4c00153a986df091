"""Guarded, limited, metered and pinned MCP tool calls through a real gateway, on REST and on ``/mcp``.

- a secret (the fakes' AWS access key) in a tool's arguments: a redact rule masks what goes upstream (``echo``
  answers ``[REDACTED:aws-access-key-id]``), ``x-ferrogate-guardrails`` says ``redacted=1``, the audit record
  keeps the arguments as sent, never the secret; a key whose policy blocks the rule is refused with 400
  ``content_policy_violation`` naming the rule and ``arguments/...`` (``/mcp``: an ``isError`` result saying so),
  the upstream never called (the fake's record of ``slow`` calls);
- results guarded: ``secret``'s credential masked; ``inject``'s prompt-injection phrase (injection rules set to
  block) and a deny pattern in what a server returns make an ``isError`` result naming the rule; for a key whose
  answers are scanned (``responses: true``) they are masked instead;
- tool calls per minute (a key's entry, its team's, else ``mcp.tool_calls_per_minute``): the call past the limit
  is a 429 ``rate_limit_exceeded`` with ``Retry-After`` (REST) and an ``isError`` result (``/mcp``), one bucket
  per key whatever the front;
- ``ferrogate_mcp_tool_calls_total{server,tool,outcome}`` and ``ferrogate_mcp_tool_call_seconds{server,tool}``
  count exactly the calls made;
- pinning: a tool whose definition changes after approval is in ``GET /admin/v1/mcp/tools/changed``, an
  ``mcp.tool.changed`` audit record and ``ferrogate_mcp_tool_changes_total``; with ``on_change: hide`` it leaves
  every listing and is refused as unknown until the server is approved again; with ``flag`` it stays.

Upstreams: ``tools`` (HTTP, 2026-07-28, its static header carries a deny-listed phrase that its ``headers`` tool
returns), ``pinned`` (``on_change: hide``) and ``flagged`` (``on_change: flag``), both listed every 0.5 s and
restarted with the ``changed`` variant by the pinning tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.mcp_support import (
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
    text_of,
    tool_names,
    until,
    wait_ready,
)
from tests.e2e.test_admin_api import assert_error
from tests.fakes.mcp_servers import FAKE_AWS_KEY, INJECTION
from tests.support import Gateway, admin

GUARD = "x-ferrogate-guardrails"
AWS_RULE = "aws-access-key-id"
REDACTED = f"[REDACTED:{AWS_RULE}]"
#: A deny pattern of the configuration; the ``tools`` server's static header carries it.
CODENAME = "Project Bluebird"
#: The global default of tool calls per minute (teams without a limit of their own).
DEFAULT_PER_MINUTE = 3
CONFIG_EXTRA = {
    "guardrails": {
        "actions": {"injection": "block"},
        "deny_patterns": [{"id": "codename", "regex": r"(?i)project\s+bluebird"}],
    }
}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("mcp-guarded")
    record = tmp / "tools.record"
    fakes = start_fakes(
        {
            "tools": ("modern", {"name": "tools", "record": record}),
            "pinned": ("modern", {"name": "pinned"}),
            "flagged": ("modern", {"name": "flagged"}),
        }
    )
    servers = [
        http_server("tools", fakes["tools"], headers={"X-Note": CODENAME}),
        http_server("pinned", fakes["pinned"], on_change="hide", refresh_s=0.5),
        http_server("flagged", fakes["flagged"], refresh_s=0.5),
    ]
    with running(tmp, fakes, servers, tool_calls_per_minute=DEFAULT_PER_MINUTE, extra=CONFIG_EXTRA) as w:
        gw = w.gw
        team, other = new_team(gw, "guarded"), new_team(gw, "guarded-default")
        w.tenants = {who: new_key(gw, team) for who in ("redact", "block", "answers", "lim", "metered")}
        w.tenants["dflt"] = new_key(gw, other)
        lim = w.tenants["lim"].key_id
        set_policy(
            gw, team, {"allow": ["*"], "tool_calls_per_minute": 10_000, "keys": {lim: {"tool_calls_per_minute": 2}}}
        )
        set_policy(gw, other, {"allow": ["*"]})
        admin(gw, "PUT", f"/keys/{w.tenants['block'].key_id}/guardrails", {"actions": {AWS_RULE: "block"}})
        admin(gw, "PUT", f"/keys/{w.tenants['answers'].key_id}/guardrails", {"responses": True})
        w.extra["record"] = record
        yield w


def key(world: World, who: str) -> str:
    return world.tenants[who].key


def started(world: World) -> int:
    """How many ``slow`` calls reached the ``tools`` upstream."""
    record: Path = world.extra["record"]
    return record.read_text().count("started") if record.exists() else 0


def audited(gw: Gateway, resp: httpx.Response, action: str = "mcp.tools.call") -> dict[str, Any]:
    """The audit record of the call ``resp`` answered (found by its request id), once it is written."""
    rid = resp.headers["x-request-id"]

    def found() -> list[dict[str, Any]]:
        return [r for r in audit_records(gw, action=action) if r["data"].get("request_id") == rid]

    [record] = until(found)
    return record


def scrape(gw: Gateway) -> Samples:
    resp = httpx.get(f"{gw.url}/metrics", timeout=10)
    assert resp.status_code == 200, resp.text
    samples: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples[s.name, frozenset(s.labels.items())] = s.value
    return samples


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def mcp_call(world: World, who: str, name: str, arguments: dict[str, Any]) -> httpx.Response:
    """``tools/call`` over raw JSON-RPC at 2026-07-28 (the HTTP answer, headers included)."""
    return rpc(world.gw, key(world, who), "tools/call", {"name": name, "arguments": arguments})


def error_code(result: dict[str, Any]) -> str | None:
    """The gateway's error code of an ``isError`` result it made (``_meta["ferrogate/error"]``)."""
    code: str | None = (result.get("_meta") or {}).get("ferrogate/error")
    return code


def result_of(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert "result" in body, body
    result: dict[str, Any] = body["result"]
    return result


# ---- guarded arguments --------------------------------------------------------------------------------------


def test_a_secret_in_arguments_is_redacted_upstream_and_in_the_audit(world: World) -> None:
    text = f"deploy with {FAKE_AWS_KEY} now"
    sent = f"deploy with {REDACTED} now"
    resp = call_rest(world.gw, key(world, "redact"), "tools", "echo", {"text": text})
    assert resp.status_code == 200, resp.text
    assert text_of(resp.json()) == sent  # what the upstream received
    assert resp.headers[GUARD] == "scanned; redacted=1"
    assert FAKE_AWS_KEY not in resp.text
    record = audited(world.gw, resp)
    assert (record["target"], record["actor"]) == ("tools__echo", world.tenants["redact"].key_id)
    data = record["data"]
    assert (data["outcome"], data["front"], data["arguments"]) == ("ok", "rest", {"text": sent})
    assert data["guardrails"] == [[AWS_RULE, "secret", "redact", "arguments.text"]]
    assert FAKE_AWS_KEY not in str(record)
    # /mcp, raw 2026-07-28 and the SDK at 2025-11-25: the same
    answer = mcp_call(world, "redact", "tools__echo", {"text": text})
    assert text_of(result_of(answer)) == sent and answer.headers[GUARD] == "scanned; redacted=1"
    mcp_record = audited(world.gw, answer)["data"]
    assert (mcp_record["front"], mcp_record["arguments"]) == ("mcp", {"text": sent})
    assert FAKE_AWS_KEY not in str(mcp_record)

    async def via_sdk() -> Any:
        async with sdk(world.gw, key(world, "redact"), "legacy") as client:
            return await client.call_tool("tools__echo", {"text": text})

    result = run(via_sdk())
    assert result.is_error is False and text_of(result) == sent


def test_a_block_rule_refuses_the_call_before_it_leaves(world: World) -> None:
    before = started(world)
    resp = call_rest(world.gw, key(world, "block"), "tools", "slow", {"seconds": 0.01, "note": f"key {FAKE_AWS_KEY}"})
    err = assert_error(resp, 400, "content_policy_violation", "arguments/note")
    assert err["message"] == (
        f"The tool call was refused by the guardrails: rule '{AWS_RULE}' (secret) matched at arguments/note."
    )
    assert resp.headers[GUARD] == "scanned; blocked=1"
    assert FAKE_AWS_KEY not in resp.text
    record = audited(world.gw, resp)["data"]
    assert (record["outcome"], record["error"]) == ("content_policy_violation", "content_policy_violation")
    assert record["arguments"] == "[withheld: refused by the guardrails]"
    assert record["guardrails"] == [[AWS_RULE, "secret", "block", "arguments.note"]]
    assert FAKE_AWS_KEY not in str(record)
    echoed = call_rest(world.gw, key(world, "block"), "tools", "echo", {"text": FAKE_AWS_KEY})
    assert_error(echoed, 400, "content_policy_violation", "arguments/text")
    assert FAKE_AWS_KEY not in echoed.text
    # /mcp: an isError result the agent reads, naming the rule and the field
    answer = mcp_call(world, "block", "tools__slow", {"seconds": 0.01, "note": FAKE_AWS_KEY})
    result = result_of(answer)
    assert result["isError"] is True and error_code(result) == "content_policy_violation"
    assert f"rule '{AWS_RULE}'" in text_of(result) and "arguments/note" in text_of(result)
    assert answer.headers[GUARD] == "scanned; blocked=1" and FAKE_AWS_KEY not in answer.text
    # neither reached the upstream; the same call of a key that redacts does
    assert started(world) == before
    allowed = call_rest(world.gw, key(world, "redact"), "tools", "slow", {"seconds": 0.01, "note": FAKE_AWS_KEY})
    assert allowed.status_code == 200 and text_of(allowed.json()) == "slept 0.01", allowed.text
    until(lambda: started(world) == before + 1)


# ---- guarded results ----------------------------------------------------------------------------------------


def test_a_secret_in_a_result_is_masked(world: World) -> None:
    resp = call_rest(world.gw, key(world, "redact"), "tools", "secret", {})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["isError"] is False
    assert text_of(body) == f"the deploy key is {REDACTED} (do not share)"
    assert body["structuredContent"] == {"result": f"the deploy key is {REDACTED} (do not share)"}
    assert FAKE_AWS_KEY not in resp.text
    assert resp.headers[GUARD] == "scanned; redacted=2"  # the text and the structured content
    record = audited(world.gw, resp)["data"]
    assert (record["outcome"], record["arguments"]) == ("ok", {})
    assert record["guardrails"] == [
        [AWS_RULE, "secret", "redact", "content[0].text"],
        [AWS_RULE, "secret", "redact", "structuredContent.result"],
    ]
    # a key whose policy blocks the rule gets an error result instead
    blocked = call_rest(world.gw, key(world, "block"), "tools", "secret", {})
    assert blocked.status_code == 200, blocked.text
    assert blocked.json()["isError"] is True and text_of(blocked.json()) == f"[blocked by guardrails: rule {AWS_RULE}]"
    assert FAKE_AWS_KEY not in blocked.text

    async def via_sdk() -> Any:
        async with sdk(world.gw, key(world, "redact"), "auto") as client:
            return await client.call_tool("tools__secret", {})

    result = run(via_sdk())
    assert result.is_error is False and text_of(result) == f"the deploy key is {REDACTED} (do not share)"


def test_a_prompt_injection_in_a_result_is_an_error_result(world: World) -> None:
    resp = call_rest(world.gw, key(world, "redact"), "tools", "inject", {})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["isError"] is True and error_code(body) == "content_policy_violation"
    assert text_of(body).startswith("[blocked by guardrails: rule injection-"), body
    assert INJECTION not in resp.text
    assert resp.headers[GUARD].startswith("scanned; blocked=")
    record = audited(world.gw, resp)["data"]
    assert record["outcome"] == "content_policy_violation"
    assert {(rule.split("-")[0], category, action) for rule, category, action, _ in record["guardrails"]} == {
        ("injection", "injection", "block")
    }
    answer = result_of(mcp_call(world, "redact", "tools__inject", {}))
    assert answer["isError"] is True and error_code(answer) == "content_policy_violation"
    assert text_of(answer) == text_of(body)


def test_a_deny_pattern_in_a_result_is_an_error_result(world: World) -> None:
    resp = call_rest(world.gw, key(world, "redact"), "tools", "headers", {})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["isError"] is True and text_of(body) == "[blocked by guardrails: rule codename]", body
    assert "bluebird" not in resp.text.lower()
    answer = result_of(mcp_call(world, "redact", "tools__headers", {}))
    assert answer["isError"] is True and text_of(answer) == "[blocked by guardrails: rule codename]"


def test_when_answers_are_scanned_a_result_is_masked_not_refused(world: World) -> None:
    injected = call_rest(world.gw, key(world, "answers"), "tools", "inject", {})
    assert injected.status_code == 200, injected.text
    body = injected.json()
    assert body["isError"] is False, body
    assert "[REDACTED:injection-" in text_of(body) and INJECTION not in injected.text
    noted = call_rest(world.gw, key(world, "answers"), "tools", "headers", {})
    assert noted.status_code == 200 and noted.json()["isError"] is False, noted.text
    assert "[REDACTED:codename]" in text_of(noted.json()) and "bluebird" not in noted.text.lower()


# ---- tool calls per minute ----------------------------------------------------------------------------------


def test_past_a_keys_limit_a_call_is_a_429_and_an_error_result(world: World) -> None:
    before = scrape(world.gw)
    lim = key(world, "lim")
    for i in range(2):
        ok = call_rest(world.gw, lim, "tools", "echo", {"text": f"call {i}"})
        assert ok.status_code == 200 and text_of(ok.json()) == f"call {i}", ok.text
    refused = call_rest(world.gw, lim, "tools", "echo", {"text": "one too many"})
    err = assert_error(refused, 429, "rate_limit_exceeded")
    assert err["type"] == "tool_calls"
    retry = int(refused.headers["retry-after"])
    assert 1 <= retry <= 60, retry
    assert err["message"] == f"Too many tool calls: this key may make 2 per minute; try again in {retry} s."
    assert audited(world.gw, refused)["data"]["outcome"] == "rate_limit_exceeded"
    # the same key's bucket on /mcp: an isError result saying so
    answer = mcp_call(world, "lim", "tools__echo", {"text": "still too many"})
    result = result_of(answer)
    assert result["isError"] is True and error_code(result) == "rate_limit_exceeded"
    assert text_of(result).startswith("Too many tool calls: this key may make 2 per minute; try again in ")
    # another key of the team (the team's limit) is not affected
    other = call_rest(world.gw, key(world, "redact"), "tools", "echo", {"text": "fine"})
    assert other.status_code == 200, other.text
    after = scrape(world.gw)
    labels = {"server": "tools", "tool": "echo", "outcome": "rate_limit_exceeded"}
    name = "ferrogate_mcp_tool_calls_total"
    assert sample(after, name, **labels) - sample(before, name, **labels) == 2


def test_without_a_policy_limit_the_configured_default_applies(world: World) -> None:
    dflt = key(world, "dflt")

    async def via_sdk() -> list[Any]:
        async with sdk(world.gw, dflt, "legacy") as client:
            return [await client.call_tool("tools__add", {"a": i, "b": 1}) for i in range(DEFAULT_PER_MINUTE + 1)]

    *allowed, refused = run(via_sdk())
    assert [text_of(r) for r in allowed] == [str(i + 1) for i in range(DEFAULT_PER_MINUTE)]
    assert refused.is_error is True and refused.meta is not None
    assert refused.meta.get("ferrogate/error") == "rate_limit_exceeded"
    assert f"may make {DEFAULT_PER_MINUTE} per minute" in text_of(refused)
    err = assert_error(call_rest(world.gw, dflt, "tools", "add", {"a": 1, "b": 1}), 429, "rate_limit_exceeded")
    assert f"may make {DEFAULT_PER_MINUTE} per minute" in err["message"]


# ---- metrics ------------------------------------------------------------------------------------------------


def test_tool_calls_are_counted_and_timed_by_server_tool_and_outcome(world: World) -> None:
    before = scrape(world.gw)
    metered = key(world, "metered")
    assert call_rest(world.gw, metered, "tools", "echo", {"text": "a"}).status_code == 200
    assert result_of(mcp_call(world, "metered", "tools__echo", {"text": "b"}))["isError"] is False
    assert call_rest(world.gw, metered, "tools", "fail", {"message": "boom"}).json()["isError"] is True
    assert_error(call_rest(world.gw, metered, "tools", "add", {"a": "x", "b": 1}), 400, "invalid_value", "arguments/a")
    blocked = call_rest(world.gw, metered, "tools", "echo", {"text": f"about {CODENAME}"})
    assert_error(blocked, 400, "content_policy_violation", "arguments/text")
    after = scrape(world.gw)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    calls = "ferrogate_mcp_tool_calls_total"
    assert delta(calls, server="tools", tool="echo", outcome="ok") == 2
    assert delta(calls, server="tools", tool="fail", outcome="tool_error") == 1
    assert delta(calls, server="tools", tool="add", outcome="invalid_value") == 1
    assert delta(calls, server="tools", tool="echo", outcome="content_policy_violation") == 1
    assert total(after, calls) - total(before, calls) == 5  # nothing else counted
    seconds = "ferrogate_mcp_tool_call_seconds"
    assert delta(f"{seconds}_count", server="tools", tool="echo") == 3
    assert delta(f"{seconds}_count", server="tools", tool="fail") == 1
    assert delta(f"{seconds}_bucket", server="tools", tool="echo", le="+Inf") == 3
    assert 0 < delta(f"{seconds}_sum", server="tools", tool="echo") < 10
    findings = "ferrogate_guardrail_findings_total"
    assert delta(findings, rule="codename", category="injection", action="block") == 1


# ---- pinning ------------------------------------------------------------------------------------------------


def changed_tools(gw: Gateway, server: str) -> list[dict[str, Any]]:
    return [t for t in admin(gw, "GET", "/mcp/tools/changed")["data"] if t["server_id"] == server]


def listed(world: World, who: str = "redact") -> set[str]:
    return {t["name"] for t in result_of(rpc(world.gw, key(world, who), "tools/list"))["tools"]}


def rest_tools(world: World, server: str) -> dict[str, dict[str, Any]]:
    resp = rest(world.gw, "GET", f"/servers/{server}/tools", key(world, "redact"))
    assert resp.status_code == 200, resp.text
    return {t["name"]: t for t in resp.json()["data"]}


def change_echo(world: World, server: str) -> dict[str, Any]:
    """Approve ``server``, restart its fake with echo's description changed: echo's entry in the changed tools."""
    approval = admin(world.gw, "POST", f"/mcp/servers/{server}/approve")
    assert approval["cleared"] == [] and len(approval["pins"]["echo"]) == 64
    assert changed_tools(world.gw, server) == []
    world.fakes[server].restart(variant="changed")
    [change] = until(lambda: changed_tools(world.gw, server), bound_s=15)
    assert (change["tool"], change["approved_hash"]) == ("echo", approval["pins"]["echo"])
    assert change["seen_hash"] != change["approved_hash"]
    wait_ready(world.gw, server)
    return change


def assert_change_reported(world: World, server: str, change: dict[str, Any]) -> None:
    """The ``mcp.tool.changed`` audit record (by ``system``), the metric and the server's status."""
    [record] = until(lambda: audit_records(world.gw, action="mcp.tool.changed", target=f"{server}__echo"))
    assert record["actor"] == "system"
    assert record["data"] == {
        "server": server,
        "tool": "echo",
        "approved": change["approved_hash"],
        "seen": change["seen_hash"],
    }
    assert sample(scrape(world.gw), "ferrogate_mcp_tool_changes_total", server=server, tool="echo") == 1
    assert server_status(world.gw)[server]["flagged"] == ["echo"]  # type: ignore[index]


def test_a_changed_tool_of_a_hide_server_is_hidden_until_approved_again(world: World) -> None:
    assert {"pinned__echo", "pinned__add"} <= listed(world)
    assert call_rest(world.gw, key(world, "redact"), "pinned", "echo", {"text": "before"}).status_code == 200
    change = change_echo(world, "pinned")
    assert_change_reported(world, "pinned", change)
    # hidden: from /mcp's and REST's listings, and refused as unknown on call
    until(lambda: "pinned__echo" not in listed(world))
    assert "pinned__add" in listed(world)
    assert "echo" not in rest_tools(world, "pinned") and "add" in rest_tools(world, "pinned")
    err = assert_error(
        call_rest(world.gw, key(world, "redact"), "pinned", "echo", {"text": "x"}), 404, "mcp_tool_not_found", "name"
    )
    assert err["message"] == "MCP server 'pinned' has no tool 'echo'."
    unknown = mcp_call(world, "redact", "pinned__echo", {"text": "x"})
    assert unknown.status_code == 400, unknown.text
    assert unknown.json()["error"] == {"code": -32602, "message": "Unknown tool: pinned__echo"}

    async def via_sdk() -> tuple[set[str], str]:
        async with sdk(world.gw, key(world, "redact"), "legacy") as client:
            names = await tool_names(client)
            with pytest.raises(MCPError) as info:
                await client.call_tool("pinned__echo", {"text": "x"})
            return names, str(info.value)

    names, refusal = run(via_sdk())
    assert "pinned__echo" not in names and "pinned__add" in names
    assert "Unknown tool: pinned__echo" in refusal
    # approved again: the new definition is listed and callable
    again = admin(world.gw, "POST", "/mcp/servers/pinned/approve")
    assert (again["cleared"], again["pins"]["echo"]) == (["echo"], change["seen_hash"])
    until(lambda: "pinned__echo" in listed(world))
    assert rest_tools(world, "pinned")["echo"]["description"] == "Echo the text back, changed."
    resp = call_rest(world.gw, key(world, "redact"), "pinned", "echo", {"text": "after"})
    assert resp.status_code == 200 and text_of(resp.json()) == "after", resp.text
    assert changed_tools(world.gw, "pinned") == []
    assert server_status(world.gw)["pinned"]["flagged"] == []  # type: ignore[index]


def test_a_changed_tool_of_a_flag_server_stays_listed_and_flagged(world: World) -> None:
    change = change_echo(world, "flagged")
    assert_change_reported(world, "flagged", change)
    until(lambda: rest_tools(world, "flagged")["echo"]["description"] == "Echo the text back, changed.")
    assert "flagged__echo" in listed(world)
    resp = call_rest(world.gw, key(world, "redact"), "flagged", "echo", {"text": "still here"})
    assert resp.status_code == 200 and text_of(resp.json()) == "still here", resp.text
    assert text_of(result_of(mcp_call(world, "redact", "flagged__echo", {"text": "mcp"}))) == "mcp"
    again = admin(world.gw, "POST", "/mcp/servers/flagged/approve")
    assert again["cleared"] == ["echo"]
    until(lambda: changed_tools(world.gw, "flagged") == [])
