"""Fuzzing the MCP tool gateway's two fronts through the real server (hypothesis).

``/mcp`` (JSON-RPC over Streamable HTTP): generated messages (real, unknown or any methods; plausible or
type-confused params, huge integers, deep nesting; ids of any JSON type; a wrong ``jsonrpc``; batches) with
either generation's headers (2026-07-28: ``Mcp-Protocol-Version``, ``Mcp-Method``, ``Mcp-Name`` and the
``_meta`` envelope, right or wrong; 2025-11-25: no, a valid, a garbage or a very long ``Mcp-Session-Id``), odd
content types and accept headers (bad bearers only in a few requests: failed authentication is throttled, 2 s
each past five a minute); raw bodies that are not JSON, not UTF-8, 10,000 levels deep or
over the body limit. ``/mcp/v1`` (REST): tool calls on generated (escaped, long) server ids and tool names with
any body, and the listings on odd ids. One HTTP fake upstream (``fz``, 2026-07-28) behind the gateway.

Rules: never a 5xx; every ``/mcp`` answer with a body a JSON-RPC response (an error one for a 4xx:
``{"jsonrpc": "2.0", "id": ..., "error": {"code": int, "message": str}}``, its id the request's or null), a 202
empty; every ``/mcp/v1`` 4xx in OpenAI's error shape; no answer slower than 3 s; the worker alive and its memory
bounded afterwards. See docs/fuzzing.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferrogate.mcp.methods import METHODS as SERVED
from tests.e2e.fuzzing import MASTER_KEY, Failure, Target, fuzz_settings, rss_bytes
from tests.e2e.mcp_support import (
    ENVELOPE,
    LEGACY,
    MODERN,
    Fake,
    http_server,
    new_key,
    new_team,
    servers_yaml,
    set_policy,
    start_fake,
    until,
    wait_ready,
)
from tests.e2e.test_fuzz_http import anything, cut_or_corrupt, dumps, huge_ints

MAX_ARGUMENTS = 1024  # the smallest mcp.max_argument_bytes: the limits are reached with small bodies
MCP_BODY_LIMIT = MAX_ARGUMENTS + 64 * 1024  # /mcp reads the arguments' bound plus the envelope's
REST_BODY_LIMIT = MAX_ARGUMENTS + 4096
SLOW_S = 3.0  # an answer slower than this is a hang (every tool called answers at once)
#: Tools the key may call (and that answer at once); the fake's slow, crash, mutate and cancelled are denied.
TOOLS = ["fz__echo", "fz__add", "fz__fail", "fz__refuse", "fz__secret", "fz__inject", "fz__headers"]
DENIED = ["fz__crash", "fz__slow", "fz__mutate", "fz__cancelled"]
POLICY = {"allow": ["*"], "deny": ["fz/crash", "fz/slow", "fz/mutate", "fz/cancelled"]}
#: The methods the gateway serves, the ones it only acknowledges, and some it does not know.
METHODS = [
    *sorted(SERVED),
    "initialize",
    "notifications/initialized",
    "notifications/cancelled",
    "tools/unknown",
    "",
    "rpc.discover",
]


# ---- the shape of a JSON-RPC answer -----------------------------------------------------------------------------


def _is_id(value: Any) -> bool:
    return value is None or (isinstance(value, str | int) and not isinstance(value, bool))


def rpc_problem(resp: httpx.Response, sent_id: Any) -> str | None:
    """What is wrong with an answer of ``/mcp`` (``sent_id``: the request's id, ``...`` when it had none that can
    be echoed), or ``None`` when it is a JSON-RPC response as promised."""
    status = resp.status_code
    if status == 202:
        return None if not resp.content else f"202 with a body: {resp.text[:200]}"
    try:
        body: Any = resp.json()
    except ValueError:
        return f"not JSON: {resp.text[:200]!r}"
    if not isinstance(body, dict) or body.get("jsonrpc") != "2.0" or "id" not in body:
        return f"not a JSON-RPC response: {resp.text[:200]}"
    if not _is_id(body["id"]):
        return f"id of the wrong type: {resp.text[:200]}"
    if body["id"] is not None and sent_id is not ... and body["id"] != sent_id:
        return f"id {body['id']!r} is not the request's {sent_id!r}"
    if "error" in body:
        error = body["error"]
        if set(body) != {"jsonrpc", "id", "error"} or not isinstance(error, dict):
            return f"not {{jsonrpc, id, error}}: {resp.text[:200]}"
        if not set(error) <= {"code", "message", "data"} or not {"code", "message"} <= set(error):
            return f"not {{code, message[, data]}}: {resp.text[:200]}"
        if not isinstance(error["code"], int) or isinstance(error["code"], bool):
            return f"code not an integer: {resp.text[:200]}"
        if not isinstance(error["message"], str) or not error["message"]:
            return f"empty message: {resp.text[:200]}"
        if "internal error (request id" in error["message"]:
            return f"an internal error: {resp.text[:300]}"
        return None
    if status >= 400:
        return f"a {status} that is no JSON-RPC error: {resp.text[:200]}"
    if set(body) != {"jsonrpc", "id", "result"} or not isinstance(body["result"], dict):
        return f"not {{jsonrpc, id, result: object}}: {resp.text[:200]}"
    if body["id"] is None:
        return f"a result with a null id: {resp.text[:200]}"
    return None


def send_rpc(
    target: Target, client: httpx.Client, body: bytes, headers: dict[str, str], sent_id: Any = ...
) -> httpx.Response | None:
    """POST ``body`` to ``/mcp``; record a failure for a 5xx, an answer that is no JSON-RPC response, or none."""
    shown = f"POST /mcp {headers} " + repr(body[:300]) + ("..." if len(body) > 300 else "")
    target.sent += 1
    try:
        resp = client.post("/mcp", content=body, headers=headers)
    except httpx.HTTPError as exc:
        target.failures.append(Failure("no answer", shown, None, f"{type(exc).__name__}: {exc}"))
        if not target.alive():
            raise AssertionError("the gateway died:\n" + "\n".join(map(str, target.failures))) from exc
        return None
    if resp.elapsed.total_seconds() > SLOW_S:
        target.failures.append(Failure("slow", shown, resp.status_code, f"answered in {resp.elapsed}"))
    if resp.status_code >= 500:
        target.failures.append(Failure("5xx", shown, resp.status_code, resp.text[:300]))
        return resp
    problem = rpc_problem(resp, sent_id)
    if problem:
        target.failures.append(Failure("JSON-RPC shape", shown, resp.status_code, problem))
    return resp


# ---- the gateway -------------------------------------------------------------------------------------------------


class World:
    """The gateway under fuzz, its fake upstream, a key allowed every quick tool and a 2025-11-25 session."""

    def __init__(self, target: Target, fake: Fake, key: str, session: str) -> None:
        self.target, self.fake, self.key, self.session = target, fake, key, session


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    fake = start_fake("modern", name="fz")
    extra = {
        "upstreams": [{"name": "mock", "provider": "mock"}],
        "model_groups": [{"name": "mock", "deployments": [{"upstream": "mock"}]}],
    }
    config = servers_yaml([http_server("fz", fake)], max_argument_bytes=MAX_ARGUMENTS, extra=extra)
    try:
        target = Target.start(tmp_path_factory.mktemp("fuzz-mcp"), config)
    except BaseException:
        fake.stop()
        raise
    try:
        gw = target.gateway
        gw.master_key = MASTER_KEY  # --dev: tests.support.admin would use the (absent) environment's key
        wait_ready(gw, "fz")
        team = new_team(gw, "fuzz-mcp")
        key = new_key(gw, team).key
        set_policy(gw, team, POLICY)
        auth = {"authorization": f"Bearer {key}"}
        with httpx.Client(base_url=gw.url, timeout=10) as c:

            def listed() -> bool:
                resp = c.post(
                    "/mcp",
                    content=dumps(rpc_body("tools/list", {"_meta": ENVELOPE})),
                    headers=modern("tools/list") | auth,
                )
                return resp.status_code == 200 and "fz__echo" in resp.text

            until(listed, 10)
            params = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "1"}}
            opened = c.post("/mcp", content=dumps(rpc_body("initialize", params)), headers=legacy() | auth)
            assert opened.status_code == 200, opened.text
            session = opened.headers["mcp-session-id"]
            for name, arguments in [("fz__echo", {"text": "hi"}), ("fz__add", {"a": 1, "b": 2})]:  # warm up the paths
                call = {"name": name, "arguments": arguments, "_meta": ENVELOPE}
                c.post("/mcp", content=dumps(rpc_body("tools/call", call)), headers=modern("tools/call", name) | auth)
                c.post("/mcp/v1/servers/fz/tools/echo:call", json={"arguments": {"text": "hi"}}, headers=auth)
        target.rss_before = rss_bytes(target.worker)
        yield World(target, fake, key, session)
    finally:
        target.gateway.stop()
        fake.stop()


@pytest.fixture
def client(world: World) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=world.target.gateway.url, timeout=10) as c:
        yield c


def check(world: World, client: httpx.Client) -> None:
    world.target.check_health(client)
    assert not world.target.failures, world.target.report()


# ---- generated messages ------------------------------------------------------------------------------------------


def rpc_body(method: str, params: Any, rid: Any = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}


def header_safe(value: Any) -> str:
    """``value`` as a header value httpx can send (printable ASCII, no surrounding space)."""
    return "".join(c for c in str(value) if " " <= c <= "~").strip()


def modern(method: str, name: Any = None) -> dict[str, str]:
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": MODERN,
        "mcp-method": header_safe(method),
    }
    if name is not None:
        headers["mcp-name"] = header_safe(name)
    return headers


def legacy(session: str | None = None) -> dict[str, str]:
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    if session is not None:
        headers |= {"mcp-session-id": session, "mcp-protocol-version": LEGACY}
    return headers


def deep_value(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def field(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(plausible, plausible, plausible, anything)


text = st.text(max_size=40)
tool_name = st.sampled_from(TOOLS + TOOLS + DENIED + ["fz__nope", "nope__echo", "fz__", "__echo", "fz", ""]) | text
arguments = (
    st.fixed_dictionaries({"text": field(text)})
    | st.fixed_dictionaries({"a": field(st.integers(-5, 5) | huge_ints), "b": field(st.integers(-5, 5) | huge_ints)})
    | st.fixed_dictionaries({}, optional={"message": field(text), "reason": field(text), "extra": anything})
    | st.sampled_from([129, 250]).map(lambda d: {"text": deep_value(d)})  # deeper: test_arguments_past_orjson_depth
    | st.just({"text": "x" * (MAX_ARGUMENTS + 10)})
)
meta = st.just(ENVELOPE) | st.fixed_dictionaries(
    {},
    optional={
        "io.modelcontextprotocol/protocolVersion": field(st.sampled_from([MODERN, LEGACY, "2099-01-01", ""])),
        "io.modelcontextprotocol/clientCapabilities": anything,
        "progressToken": anything,
    },
)
PARAMS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "tools/call": st.fixed_dictionaries({"name": field(tool_name)}, optional={"arguments": field(arguments)}),
    "resources/read": st.fixed_dictionaries(
        {"uri": field(st.sampled_from(["fz://readme", "file:///etc/passwd", "", "fz__x://y"]) | text)}
    ),
    "prompts/get": st.fixed_dictionaries(
        {"name": field(st.sampled_from(["fz__greet", "fz__nope", ""]) | text)},
        optional={"arguments": field(st.dictionaries(text, text, max_size=3))},
    ),
    "initialize": st.fixed_dictionaries(
        {},
        optional={
            "protocolVersion": field(st.sampled_from([LEGACY, "2025-06-18", MODERN, "1999-01-01"])),
            "capabilities": anything,
            "clientInfo": field(st.fixed_dictionaries({"name": text, "version": text})),
        },
    ),
    "notifications/cancelled": st.fixed_dictionaries({}, optional={"requestId": anything, "reason": field(text)}),
    "tools/list": st.fixed_dictionaries({}, optional={"cursor": field(text)}),
}
request_id = (
    st.integers(-5, 1000)
    | huge_ints
    | st.integers(2**63 - 2, 2**64 + 1)
    | text
    | st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | anything
)


def rarely(draw: st.DrawFn, one_in: int) -> bool:
    """True about once in ``one_in`` draws (a middle value: hypothesis favours the bounds of a range)."""
    return draw(st.integers(0, one_in - 1)) == one_in // 2


@st.composite
def message(draw: st.DrawFn, modern_era: bool) -> dict[str, Any]:
    """One JSON-RPC message: a method, its params (plausible or confused), an id (or none), ``jsonrpc``; each part
    mostly right, so that the others are what is judged."""
    method = draw(text) if rarely(draw, 5) else draw(st.sampled_from(METHODS))
    params: Any = draw(PARAMS.get(method, st.fixed_dictionaries({})) | PARAMS["tools/call"])
    if rarely(draw, 6):
        params = draw(anything | huge_ints)
    elif isinstance(params, dict) and modern_era and not rarely(draw, 6):
        params["_meta"] = draw(meta) if rarely(draw, 3) else ENVELOPE
    found: dict[str, Any] = {"jsonrpc": draw(anything) if rarely(draw, 10) else "2.0"}
    if not rarely(draw, 5):
        found["id"] = draw(request_id) if rarely(draw, 4) else draw(st.integers(-5, 1000) | text)
    found["method"] = method
    if not rarely(draw, 7):
        found["params"] = params
    return found


def echoable(body: Any) -> Any:
    """The id an answer may carry for ``body``: its id when it is one (``...``: any, or none)."""
    if isinstance(body, dict) and "id" in body and _is_id(body["id"]):
        return body["id"]
    return ...


accepts = st.sampled_from(
    ["application/json, text/event-stream", "application/json", "text/event-stream", "*/*", "text/html", "", "x"]
)
content_types = st.sampled_from(
    ["application/json", "application/json", "text/plain", "application/json; charset=latin-1", "", "x/y"]
)
garbage_session = st.sampled_from(["", "x", "a.b.c", "fg1." + "A" * 40, "x" * 4000, "x" * 20_000]) | st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60
)


@st.composite
def rpc_request(draw: st.DrawFn, world: World) -> tuple[bytes, dict[str, str], Any]:
    """A body, its headers and the id an answer may echo: either generation, single or batched, odd headers."""
    era = draw(st.sampled_from(["modern", "legacy", "modern", "legacy", "legacy-none", "legacy-garbage"]))
    is_modern = era == "modern"
    if rarely(draw, 10):
        body: Any = draw(st.lists(message(is_modern), max_size=3))
    else:
        body = draw(message(is_modern))
    if is_modern:
        first = body if isinstance(body, dict) else (body[0] if body else {})
        params = first.get("params")
        name = params.get("name", params.get("uri")) if isinstance(params, dict) else None
        headers = modern(str(first.get("method", "")), name)
        if rarely(draw, 5):  # routing headers that disagree with the body
            headers["mcp-method"] = draw(st.sampled_from(METHODS[1:]))
            if draw(st.booleans()):
                headers["mcp-name"] = draw(st.sampled_from([*TOOLS, "", "x" * 3000]))
        if rarely(draw, 7):
            headers["mcp-protocol-version"] = draw(st.sampled_from(["2099-01-01", "x", "", LEGACY]))
    elif era == "legacy":
        headers = legacy(world.session)
    elif era == "legacy-none":
        headers = legacy()
    else:
        headers = legacy(draw(garbage_session))
    if rarely(draw, 6):
        headers["accept"] = draw(accepts)
    if rarely(draw, 6):
        headers["content-type"] = draw(content_types)
    headers["authorization"] = f"Bearer {world.key}"  # bad credentials: test_refused_credentials (throttled)
    return dumps(body), headers, echoable(body)


def test_generated_jsonrpc_messages(world: World, client: httpx.Client) -> None:
    world.target.begin()

    @fuzz_settings(250)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        body, headers, sent_id = data.draw(rpc_request(world))
        send_rpc(world.target, client, body, headers, sent_id)

    run()
    check(world, client)


@st.composite
def tool_call(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A plausible ``tools/call`` of a quick tool with one part confused: its ``(params, name)``."""
    name = draw(st.sampled_from(TOOLS))
    params: dict[str, Any] = {"name": name, "arguments": draw(arguments)}
    where = draw(st.sampled_from(["none", "arguments", "name", "argument", "meta"]))
    if where == "arguments":
        params["arguments"] = draw(anything | huge_ints)
    elif where == "name":
        params["name"] = draw(anything)
    elif where == "argument" and params["arguments"]:
        params["arguments"][draw(st.sampled_from(sorted(params["arguments"])))] = draw(anything | huge_ints)
    elif where == "meta":
        params["_meta"] = draw(anything)
    return params, name


def test_generated_tool_calls_in_both_generations(world: World, client: httpx.Client) -> None:
    """Calls that pass the framing (right headers, right envelope), so the arguments reach validation and the
    upstream: each generation, with ids of every kind the gateway takes."""
    world.target.begin()
    auth = {"authorization": f"Bearer {world.key}"}

    @fuzz_settings(150)
    @given(call=tool_call(), is_modern=st.booleans(), rid=st.integers(-(2**63), 2**63 - 1) | text)
    def run(call: tuple[dict[str, Any], str], is_modern: bool, rid: Any) -> None:
        params, name = call
        if is_modern:
            params.setdefault("_meta", ENVELOPE)
            headers = modern("tools/call", params["name"] if isinstance(params["name"], str) else name)
        else:
            headers = legacy(world.session)
        send_rpc(world.target, client, dumps(rpc_body("tools/call", params, rid)), headers | auth, rid)

    run()
    check(world, client)


@pytest.mark.parametrize("rid", [2**63 - 1, 2**63, 2**64, 2**80, -(2**63), -(2**63) - 1, 10**30])
@pytest.mark.parametrize("is_modern", [True, False], ids=["modern", "legacy"])
def test_ids_past_64_bits(world: World, client: httpx.Client, rid: int, is_modern: bool) -> None:
    """An integer id outside 64 bits is answered (a result or a JSON-RPC error), not a 5xx."""
    world.target.begin()
    method = "server/discover" if is_modern else "tools/list"
    params: dict[str, Any] = {"_meta": ENVELOPE} if is_modern else {}
    headers = (modern(method) if is_modern else legacy(world.session)) | {"authorization": f"Bearer {world.key}"}
    send_rpc(world.target, client, dumps(rpc_body(method, params, rid)), headers, rid)
    check(world, client)


@pytest.mark.parametrize("depth", [200, 300])
@pytest.mark.parametrize("front", ["rest", "mcp"])
def test_deep_arguments_are_refused_naming_them(world: World, client: httpx.Client, front: str, depth: int) -> None:
    """Arguments the body parser takes (up to 1024 levels) but the schema check (128) or the encoder (254) cannot:
    a 400 / an invalid-params error naming ``arguments``, never a 500."""
    world.target.begin()
    auth = {"authorization": f"Bearer {world.key}"}
    deep_args = {"text": deep_value(depth)}
    if front == "rest":
        body = dumps({"arguments": deep_args})
        resp = world.target.send(client, "POST", "/mcp/v1/servers/fz/tools/echo:call", body, auth)
        assert resp is not None and resp.status_code == 400, resp and resp.text
        assert resp.json()["error"]["param"] == "arguments", resp.text
    else:
        params = {"name": "fz__echo", "arguments": deep_args, "_meta": ENVELOPE}
        resp = send_rpc(
            world.target, client, dumps(rpc_body("tools/call", params)), modern("tools/call", "fz__echo") | auth, 1
        )
        assert resp is not None and resp.status_code < 500, resp and resp.text
        answer = resp.json()
        error = answer.get("error") or {}
        result = answer.get("result") or {}
        assert error.get("code") == -32602 or result.get("isError") is True, resp.text
        assert "arguments" in (error.get("message") or str(result)), resp.text
    check(world, client)


@pytest.mark.parametrize("who", ["garbage", "master", "none"])
def test_refused_credentials(world: World, client: httpx.Client, who: str) -> None:
    """A bad bearer is a 401 with a JSON-RPC error body and ``WWW-Authenticate`` (few: failures are throttled);
    none (``--dev``: anonymous) is not this key's session."""
    world.target.begin()
    headers = legacy(world.session)
    if who != "none":
        headers["authorization"] = "Bearer " + ("fg-" + "x" * 40 if who == "garbage" else MASTER_KEY)
    resp = send_rpc(world.target, client, dumps(rpc_body("tools/list", {}, 7)), headers, 7)
    assert resp is not None
    if who == "none":
        assert resp.status_code == 404, resp.text
    else:
        assert resp.status_code == 401, resp.text
        assert resp.headers["www-authenticate"].startswith("Bearer"), resp.headers
    check(world, client)


# ---- raw bodies --------------------------------------------------------------------------------------------------


@st.composite
def raw_bodies(draw: st.DrawFn, world: World) -> bytes:
    """Bodies that are not one clean JSON-RPC object: cut, corrupted, not UTF-8, deep, huge, random, empty."""
    valid = dumps(draw(message(True)))
    kind = draw(st.sampled_from(["cut", "corrupt", "deep", "huge", "bytes", "empty", "latin-1"]))
    if kind in ("cut", "corrupt"):
        return cut_or_corrupt(draw, valid, kind)
    if kind == "deep":
        depth = draw(st.sampled_from([129, 1025, 10_000]))
        nested = "[" * depth + "]" * depth
        where = draw(st.sampled_from(["body", "params", "arguments", "id", "meta"]))
        return {
            "body": nested,
            "params": f'{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{nested}}}',
            "arguments": f'{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":'
            f'{{"name":"fz__echo","arguments":{{"text":{nested}}}}}}}',
            "id": f'{{"jsonrpc":"2.0","id":{nested},"method":"ping"}}',
            "meta": f'{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"_meta":{nested}}}}}',
        }[where].encode()
    if kind == "huge":
        size = draw(st.sampled_from([MCP_BODY_LIMIT - 200, MCP_BODY_LIMIT + 1, 10 * MCP_BODY_LIMIT]))
        return b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fz__echo","arguments":{"text":"' + (
            b"x" * size + b'"}}}'
        )
    if kind == "latin-1":
        return b'{"jsonrpc":"2.0","id":"\xe9","method":"tools/call","params":{"name":"fz__echo\xff"}}'
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    return b""


def test_raw_bodies(world: World, client: httpx.Client) -> None:
    world.target.begin()
    auth = {"authorization": f"Bearer {world.key}"}

    @fuzz_settings(150)
    @given(data=st.data(), is_modern=st.booleans())
    def run(data: st.DataObject, is_modern: bool) -> None:
        raw = data.draw(raw_bodies(world))
        headers = (modern("tools/call", "fz__echo") if is_modern else legacy(world.session)) | auth
        if len(raw) > MCP_BODY_LIMIT:  # refused before it is read: the server then closes the connection
            headers["connection"] = "close"
        send_rpc(world.target, client, raw, headers)

    run()
    check(world, client)


@pytest.mark.parametrize("where", ["body", "arguments"])
def test_ten_thousand_levels_of_nesting_are_a_parse_error(world: World, client: httpx.Client, where: str) -> None:
    world.target.begin()
    nested = "[" * 10_000 + "]" * 10_000
    body = nested if where == "body" else f'{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{nested}}}'
    headers = modern("tools/call") | {"authorization": f"Bearer {world.key}"}
    resp = send_rpc(world.target, client, body.encode(), headers)
    assert resp is not None and resp.status_code == 400, resp and resp.text
    assert resp.json()["error"]["code"] == -32700
    check(world, client)


# ---- REST --------------------------------------------------------------------------------------------------------


path_text = (
    st.sampled_from(["fz", "fz", "echo", "add", "fail", "crash", "nope", "FZ", "fz__echo", ".", "..", "%2F", "%00"])
    | st.text(min_size=1, max_size=40)
    | st.just("x" * 3000)
    | st.just("é🚀" * 200)
)
safe_chars = st.sampled_from(["", "", "/", ":@!$&'()*+,;=", "%"])
rest_body = st.one_of(
    st.fixed_dictionaries({"arguments": arguments}).map(dumps),
    st.fixed_dictionaries({"arguments": anything}).map(dumps),
    anything.map(dumps),
    st.binary(max_size=100),
    st.just(b'{"arguments":{"text":"' + b"x" * (REST_BODY_LIMIT + 10) + b'"}}'),
    st.just(b'{"arguments":' + b"[" * 10_000 + b"]" * 10_000 + b"}"),
)


def test_generated_rest_calls(world: World, client: httpx.Client) -> None:
    world.target.begin()
    auth = {"authorization": f"Bearer {world.key}", "content-type": "application/json"}

    @fuzz_settings(200)
    @given(server=path_text, tool=path_text, safe=safe_chars, body=rest_body, route=st.sampled_from(["call", "tools"]))
    def run(server: str, tool: str, safe: str, body: bytes, route: str) -> None:
        if tool in ("crash", "slow", "mutate", "cancelled"):
            tool = "echo"
        sid, name = quote(server, safe=safe), quote(tool, safe=safe)
        if route == "call":
            headers = dict(auth)
            if len(body) > REST_BODY_LIMIT:
                headers["connection"] = "close"
            world.target.send(client, "POST", f"/mcp/v1/servers/{sid}/tools/{name}:call", body, headers)
        else:
            world.target.send(client, "GET", f"/mcp/v1/servers/{sid}/tools", None, auth)
            world.target.send(client, "GET", "/mcp/v1/servers", None, auth)

    run()
    check(world, client)


def test_rest_calls_of_the_real_tools(world: World, client: httpx.Client) -> None:
    """The real server and tool names, so bodies reach validation and the upstream."""
    world.target.begin()
    auth = {"authorization": f"Bearer {world.key}", "content-type": "application/json"}

    @fuzz_settings(100)
    @given(
        tool=st.sampled_from([t.removeprefix("fz__") for t in TOOLS]),
        body=st.fixed_dictionaries({}, optional={"arguments": field(arguments), "extra": anything}),
    )
    def run(tool: str, body: dict[str, Any]) -> None:
        world.target.send(client, "POST", f"/mcp/v1/servers/fz/tools/{tool}:call", dumps(body), auth)

    run()
    check(world, client)
