"""The tool-call phases (ToolCalls) against a real fake MCP server (a process): authorize, validate, limit,
guard, forward, guard the result, account; and the audited resource reads and prompt gets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import mcp_types
import pytest

from ferrogate.auth.identity import Identity
from ferrogate.config.mcp import McpSettings
from ferrogate.config.model import GuardrailSettings
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.guardrails import Guardrails
from ferrogate.limits import LocalLimiter
from ferrogate.mcp.calls import McpDeps, ToolCalls, audit_arguments, passable
from ferrogate.mcp.catalog import Catalog
from ferrogate.mcp.pins import Pins
from ferrogate.mcp.policy import Policies
from ferrogate.mcp.upstream import Upstream
from ferrogate.observability.families import GUARDRAIL_FINDINGS, MCP_TOOL_CALL_SECONDS, MCP_TOOL_CALLS
from ferrogate.store.audit import AuditEvent
from tests.fakes.mcp_servers import FAKE_AWS_KEY
from tests.fakes.mcp_support import start_http_server, stop_server

pytestmark = pytest.mark.anyio

TEAM = Identity("key_1", "team_1", None, ("*",), None, None)
LIMITED = Identity("key_lim", "team_1", None, ("*",), None, None)
POLICY = {
    "allow": ["fake", "slow-srv"],
    "deny": ["fake/crash"],
    "keys": {"key_lim": {"tool_calls_per_minute": 2}},
}


class Sink:
    """Collects what the account phase writes (the audit writer's and the metrics' interface)."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.counts: dict[tuple[str, tuple[str, ...]], float] = {}
        self.observed: list[tuple[str, tuple[str, ...], float]] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)

    def add(self, family: Any, labels: tuple[str, ...], amount: float = 1.0) -> None:
        self.counts[family.name, labels] = self.counts.get((family.name, labels), 0) + amount

    def observe_value(self, family: Any, labels: tuple[str, ...], value: float) -> None:
        self.observed.append((family.name, labels, value))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def fake_url() -> Iterator[str]:
    proc, url = start_http_server("modern", name="fake")
    yield url
    stop_server(proc)


def settings(url: str, **extra: Any) -> McpSettings:
    servers = [
        {"id": "fake", "transport": "http", "url": url},
        {"id": "slow-srv", "transport": "http", "url": url, "timeout_s": 0.5},
    ]
    return McpSettings.model_validate({"servers": servers, **extra})


@pytest.fixture
async def calls(fake_url: str) -> AsyncIterator[tuple[ToolCalls, Sink]]:
    mcp = settings(fake_url)
    catalog = Catalog(mcp, Pins())
    await catalog.start()
    for upstream in catalog.servers():
        assert await upstream.ready(15), upstream.last_error
    policies = Policies(mcp)
    policies.apply({"team_1": POLICY})
    guard = GuardrailSettings(
        actions={"injection": "block"}, deny_patterns=[{"id": "codename", "regex": "(?i)project bluebird"}]
    )
    sink = Sink()
    deps = McpDeps(
        catalog=catalog,
        policies=policies,
        limiter=LocalLimiter(None),
        guardrails=Guardrails(guard),
        audit=cast(Any, sink),
        metrics=cast(Any, sink),
        settings=mcp,
        auth=cast(Any, None),  # ToolCalls never authenticates: the fronts do
        master_key=b"test master key material",
    )
    try:
        yield ToolCalls(deps), sink
    finally:
        await catalog.close()


def tool(calls: ToolCalls, name: str, server: str = "fake") -> tuple[Upstream, mcp_types.Tool]:
    found = calls.deps.catalog.resolve_tool(f"{server}__{name}")
    assert found is not None, name
    return found


async def call(calls: ToolCalls, name: str, arguments: Any, identity: Identity = TEAM, server: str = "fake") -> Any:
    upstream, found = tool(calls, name, server)
    return await calls.call(identity, upstream, found, arguments, request_id=f"req-{name}", front="rest")


async def test_a_call_is_forwarded_and_accounted(calls: tuple[ToolCalls, Sink]) -> None:
    tc, sink = calls
    outcome = await call(tc, "echo", {"text": "hello"})
    assert outcome.outcome == "ok"
    assert outcome.result["content"] == [{"type": "text", "text": "hello"}]
    assert outcome.result["isError"] is False
    assert outcome.headers == [("x-ferrogate-guardrails", "scanned")]
    [event] = sink.events
    assert (event.kind, event.action, event.actor, event.target, event.team_id, event.event_id) == (
        "request",
        "mcp.tools.call",
        "key_1",
        "fake__echo",
        "team_1",
        "req-echo",
    )
    data = event.data
    assert (data["server"], data["tool"], data["outcome"], data["error"], data["front"]) == (
        "fake",
        "echo",
        "ok",
        None,
        "rest",
    )
    assert data["arguments"] == {"text": "hello"} and data["duration_ms"] > 0
    assert sink.counts[MCP_TOOL_CALLS.name, ("fake", "echo", "ok")] == 1
    [(name, labels, seconds)] = sink.observed
    assert (name, labels) == (MCP_TOOL_CALL_SECONDS.name, ("fake", "echo")) and 0 < seconds < 5


async def test_a_tool_error_is_a_result(calls: tuple[ToolCalls, Sink]) -> None:
    tc, sink = calls
    outcome = await call(tc, "fail", {"message": "disk full"})
    assert outcome.outcome == "tool_error" and outcome.result["isError"] is True
    assert "disk full" in outcome.result["content"][0]["text"]
    assert sink.counts[MCP_TOOL_CALLS.name, ("fake", "fail", "tool_error")] == 1


async def test_a_denied_tool_is_refused_and_audited(calls: tuple[ToolCalls, Sink]) -> None:
    tc, sink = calls
    with pytest.raises(GatewayError) as info:
        await call(tc, "crash", {})
    assert info.value.kind is ErrorKind.TOOL_FORBIDDEN and info.value.status == 403
    assert "fake__crash" in info.value.message
    assert sink.events[0].data["outcome"] == "tool_not_allowed"
    assert sink.counts[MCP_TOOL_CALLS.name, ("fake", "crash", "tool_not_allowed")] == 1
    # another team (no stored policy: the default allows nothing)
    with pytest.raises(GatewayError) as other:
        await call(tc, "echo", {"text": "x"}, Identity("key_9", "team_9", None, ("*",), None, None))
    assert other.value.kind is ErrorKind.TOOL_FORBIDDEN


@pytest.mark.parametrize(
    ("name", "arguments", "param", "words"),
    [
        ("add", {"a": "one", "b": 2}, "arguments/a", "integer"),
        ("add", {"a": 1}, "arguments", '"b" is a required property'),
        ("echo", ["hello"], "arguments", "JSON object"),
        ("echo", {"text": "x" * 1_100_000}, "arguments", "limit"),
    ],
)
async def test_arguments_are_validated_before_the_call(
    calls: tuple[ToolCalls, Sink], name: str, arguments: Any, param: str, words: str
) -> None:
    tc, sink = calls
    with pytest.raises(GatewayError) as info:
        await call(tc, name, arguments)
    err = info.value
    assert (err.status, err.param) == (400, param)
    assert words in err.message
    assert sink.events[0].data["outcome"] == "invalid_value"


async def test_valid_arguments_pass_the_schema(calls: tuple[ToolCalls, Sink]) -> None:
    tc, _ = calls
    outcome = await call(tc, "add", {"a": 2, "b": 40})
    assert outcome.result["content"][0]["text"] == "42"
    assert outcome.result.get("structuredContent") in (None, {"result": 42})


async def test_tool_calls_per_minute(calls: tuple[ToolCalls, Sink]) -> None:
    tc, sink = calls
    for _ in range(2):
        assert (await call(tc, "echo", {"text": "x"}, LIMITED)).outcome == "ok"
    with pytest.raises(GatewayError) as info:
        await call(tc, "echo", {"text": "x"}, LIMITED)
    err = info.value
    assert (err.status, err.wire_code) == (429, "rate_limit_exceeded")
    [(header, seconds)] = err.headers
    assert header == "retry-after" and 1 <= int(seconds) <= 60
    assert sink.events[-1].data["outcome"] == "rate_limit_exceeded"
    assert (await call(tc, "echo", {"text": "x"}, TEAM)).outcome == "ok"  # another key's budget


async def test_a_blocked_argument_never_leaves(calls: tuple[ToolCalls, Sink]) -> None:
    tc, sink = calls
    with pytest.raises(GatewayError) as info:
        await call(tc, "echo", {"text": "all about Project Bluebird"})
    err = info.value
    assert (err.status, err.wire_code, err.param) == (400, "content_policy_violation", "arguments/text")
    assert ("x-ferrogate-guardrails", "scanned; blocked=1") in err.headers
    assert "Bluebird" not in err.message
    data = sink.events[0].data
    assert "Bluebird" not in str(data["arguments"])
    assert data["guardrails"] == [["codename", "injection", "block", "arguments.text"]]
    assert sink.counts[GUARDRAIL_FINDINGS.name, ("codename", "injection", "block")] == 1


async def test_a_secret_in_arguments_is_redacted_upstream_and_in_the_audit(calls: tuple[ToolCalls, Sink]) -> None:
    tc, sink = calls
    outcome = await call(tc, "echo", {"text": f"key {FAKE_AWS_KEY}"})
    assert outcome.result["content"][0]["text"] == "key [REDACTED:aws-access-key-id]"  # what the tool received
    assert outcome.headers == [("x-ferrogate-guardrails", "scanned; redacted=1")]
    assert FAKE_AWS_KEY not in str(sink.events[0].data)


async def test_results_are_guarded(calls: tuple[ToolCalls, Sink]) -> None:
    tc, sink = calls
    secret = await call(tc, "secret", {})
    assert FAKE_AWS_KEY not in str(secret.result) and "[REDACTED:aws-access-key-id]" in str(secret.result)
    assert secret.outcome == "ok"
    injected = await call(tc, "inject", {})
    assert injected.result["isError"] is True
    assert injected.result["content"][0]["text"].startswith("[blocked by guardrails: rule injection-")
    assert injected.result["_meta"] == {"ferrogate/error": "content_policy_violation"}
    assert injected.outcome == "content_policy_violation"
    assert sink.events[-1].data["outcome"] == "content_policy_violation"


async def test_past_its_timeout_a_call_is_a_504(calls: tuple[ToolCalls, Sink]) -> None:
    tc, sink = calls
    started = asyncio.get_running_loop().time()
    with pytest.raises(GatewayError) as info:
        await call(tc, "slow", {"seconds": 5}, server="slow-srv")
    assert asyncio.get_running_loop().time() - started < 3
    err = info.value
    assert (err.status, err.wire_code) == (504, "mcp_timeout")
    assert "slow-srv" in err.message and "0.5 s" in err.message
    assert sink.events[0].data["outcome"] == "mcp_timeout"


async def test_an_unreachable_server_is_a_502(fake_url: str) -> None:
    proc, url = start_http_server("modern", name="doomed")
    mcp = McpSettings.model_validate({"servers": [{"id": "doomed", "transport": "http", "url": url}]})
    catalog = Catalog(mcp, Pins())
    await catalog.start()
    try:
        [upstream] = catalog.servers()
        assert await upstream.ready(15)
        policies = Policies(mcp)
        policies.apply({"team_1": {"allow": ["*"]}})
        sink = Sink()
        deps = McpDeps(catalog, policies, LocalLimiter(None), None, cast(Any, sink), None, mcp, cast(Any, None), b"k")
        found = catalog.resolve_tool("doomed__echo")
        assert found is not None
        stop_server(proc)
        with pytest.raises(GatewayError) as info:
            await ToolCalls(deps).call(TEAM, found[0], found[1], {"text": "x"}, request_id="r", front="mcp")
        err = info.value
        assert (err.status, err.wire_code) == (502, "mcp_server_unavailable")
        assert err.message.startswith("MCP server 'doomed' is unavailable: ")
        assert sink.events[0].data["outcome"] == "mcp_server_unavailable"
    finally:
        stop_server(proc)
        await catalog.close()


async def test_resources_and_prompts_are_audited(calls: tuple[ToolCalls, Sink]) -> None:
    tc, sink = calls
    upstream = tc.deps.catalog.get("fake")
    assert upstream is not None and upstream.resources
    uri = str(upstream.resources[0].uri)
    read = await tc.read_resource(TEAM, upstream, uri, request_id="r1", front="mcp")
    assert read["contents"][0]["uri"] == uri
    got = await tc.get_prompt(TEAM, upstream, "greet", {"name": "Ada"}, request_id="r2", front="mcp")
    assert "Ada" in str(got["messages"])
    first, second = sink.events
    assert (first.action, first.target, first.data["outcome"], first.data["arguments"]) == (
        "mcp.resources.read",
        uri,
        "ok",
        {"uri": uri},
    )
    assert (second.action, second.target, second.data["prompt"]) == ("mcp.prompts.get", "fake__greet", "greet")
    with pytest.raises(GatewayError) as info:
        await tc.get_prompt(TEAM, upstream, "no-such-prompt", None, request_id="r3", front="mcp")
    # the SDK's server answers an unknown prompt with -32603: the upstream's fault as far as the gateway can tell
    assert (info.value.status, info.value.wire_code) == (502, "upstream_bad_response")
    assert info.value.message.startswith("MCP server 'fake': ")
    assert sink.events[-1].data["outcome"] == "upstream_bad_response"


def test_audit_arguments() -> None:
    assert audit_arguments({"token": "t", "q": "x"}, 100) == {"q": "x"}
    assert audit_arguments({"q": "x" * 200}, 100) == "[truncated: 208 bytes]"
    assert audit_arguments(None, 100) is None


def test_an_answer_too_deep_to_pass_on_is_the_servers_fault() -> None:
    deep: dict[str, Any] = {"content": []}
    for _ in range(300):  # orjson parses 1024 levels but writes 254
        deep = {"x": deep}
    with pytest.raises(GatewayError) as caught:
        passable("files", deep)
    assert (caught.value.status, caught.value.message) == (
        502,
        "MCP server 'files' answered with JSON nested too deeply to pass on",
    )
    shallow = {"content": [{"type": "text", "text": "ok"}]}
    assert passable("files", shallow) is shallow
