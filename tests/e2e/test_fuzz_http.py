"""Fuzzing ``POST /v1/chat/completions`` through the real server (hypothesis).

Generated bodies: every field the gateway or a provider reads, each either plausible or of any
JSON type (huge integers, deep nesting, odd strings); raw bodies that are not JSON, not UTF-8,
duplicate keys, 10,000 levels deep, or over the size limit. Rules: never a 5xx, every 4xx in
OpenAI's error shape, the worker alive and its memory bounded afterwards. See docs/fuzzing.md.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.e2e.fuzzing import Target, fuzz_settings
from tests.fakes.openai_upstream import FakeUpstream

MAX_BODY = 65536
KNOWN = ["model", "messages", "role", "content", "name", "type", "text", "function", "arguments", "tool_calls"]

huge_ints = st.integers(min_value=2**62, max_value=2**80) | st.integers(min_value=-(2**80), max_value=-(2**62))
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | huge_ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["", "user", "text", "function", "auto", "none", "required", "json_object", "\x00", "é🚀"])
)
anything = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from(KNOWN) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)


text = st.text(max_size=40)
small_int = st.integers(min_value=-2, max_value=8)


def chat_body(confuse: bool) -> st.SearchStrategy[dict[str, Any]]:
    """A chat request: a model, messages, and any of the other known fields; with ``confuse``, any
    value may instead be any JSON at all (type confusion)."""

    def field(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(plausible, plausible, plausible, anything) if confuse else plausible

    parts = st.lists(
        st.fixed_dictionaries({"type": field(st.sampled_from(["text", "image_url"])), "text": field(text)})
        | st.fixed_dictionaries(
            {"type": st.just("image_url"), "image_url": field(st.fixed_dictionaries({"url": text}))}
        ),
        max_size=3,
    )
    function = st.fixed_dictionaries({"name": field(text), "arguments": field(text)})
    tool_call = st.fixed_dictionaries(
        {"id": field(text), "type": field(st.just("function")), "function": field(function)}
    )
    roles = ["system", "developer", "user", "assistant", "tool", "function"] + (["robot"] if confuse else [])
    message = st.fixed_dictionaries(
        {"role": field(st.sampled_from(roles))},
        optional={
            "content": field(st.none() | text | parts),
            "name": field(text),
            "tool_calls": field(
                st.lists(tool_call | st.none(), max_size=3) if confuse else st.lists(tool_call, max_size=3)
            ),
            "tool_call_id": field(text),
            "refusal": field(st.none() | text),
        },
    )
    definition = st.fixed_dictionaries(
        {"name": field(text)}, optional={"description": text, "parameters": field(st.just({"type": "object"}))}
    )
    tool = st.fixed_dictionaries({"type": field(st.just("function")), "function": field(definition)})
    counts = small_int | huge_ints if confuse else st.integers(1, 8)
    return st.fixed_dictionaries(
        {
            "model": field(st.sampled_from(["mock", "fake-echo", "fake-echo", "nope"])),
            "messages": field(st.lists(message, min_size=0 if confuse else 1, max_size=4)),
        },
        optional={
            "n": field(counts),
            "max_tokens": field(counts),
            "max_completion_tokens": field(counts),
            "temperature": field(st.floats(min_value=-1, max_value=3)),
            "top_p": field(st.floats(min_value=-1, max_value=2)),
            "stop": field(text | st.lists(text, max_size=6)),
            "logit_bias": field(
                st.dictionaries(st.integers(0, 200_000).map(str), st.integers(-150, 150), max_size=400)
            ),
            "tools": field(st.lists(tool, max_size=4)),
            "tool_choice": field(
                st.sampled_from(["auto", "none", "required"])
                | st.fixed_dictionaries(
                    {"type": st.just("function"), "function": st.fixed_dictionaries({"name": text})}
                )
            ),
            "response_format": field(
                st.fixed_dictionaries(
                    {"type": st.sampled_from(["text", "json_object", "json_schema"])},
                    optional={"json_schema": anything},
                )
            ),
            "stream": field(st.booleans()),
            "stream_options": field(st.fixed_dictionaries({}, optional={"include_usage": field(st.booleans())})),
            "seed": field(st.integers()),
            "presence_penalty": field(st.floats(min_value=-3, max_value=3)),
            "frequency_penalty": field(st.floats(min_value=-3, max_value=3)),
            "logprobs": field(st.booleans()),
            "top_logprobs": field(small_int),
            "user": field(text),
            "parallel_tool_calls": field(st.booleans()),
            "metadata": field(st.dictionaries(text, text, max_size=4)),
            "reasoning_effort": field(st.sampled_from(["low", "medium", "high"])),
            "some_future_field": anything,
        },
    )


body = chat_body(confuse=True)
plausible_body = chat_body(confuse=False)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into ``value`` (dict keys and list indices), the value itself excluded."""
    found: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in items:
        found.append((*prefix, key))
        found += paths(child, (*prefix, key))
    return found


@st.composite
def one_confused_field(draw: st.DrawFn) -> dict[str, Any]:
    """A plausible body with exactly one value, anywhere in it, replaced by any JSON value."""
    payload: dict[str, Any] = copy.deepcopy(draw(plausible_body))  # st.just() values are shared: never mutate them
    path = draw(st.sampled_from(paths(payload)))
    parent: Any = payload
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = draw(anything)
    return payload


def dumps(value: Any) -> bytes:
    """JSON text of any generated value (``json``, not orjson: it writes integers of any size)."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def deep(depth: int, where: str) -> bytes:
    nested = "[" * depth + "]" * depth
    ok = '{"role":"user","content":"hi"}'
    placed = {
        "body": nested,
        "messages": f'{{"model":"mock","messages":{nested}}}',
        "content": f'{{"model":"mock","messages":[{{"role":"user","content":{nested}}}]}}',
        "unknown": f'{{"model":"mock","messages":[{ok}],"extra":{nested}}}',
        "tools": f'{{"model":"mock","messages":[{ok}],"tools":{nested}}}',
        "message field": f'{{"model":"mock","messages":[{{"role":"user","content":"hi","x":{nested}}}]}}',
    }
    return placed[where].encode()


JUNK = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b'"', b"\\", b"\\ud800", b"NaN", b"1e400"]


def cut_or_corrupt(draw: st.DrawFn, valid: bytes, kind: str) -> bytes:
    """``valid`` cut short (``cut``), or with one byte replaced by junk: a bad UTF-8 byte, a NUL, a stray quote or
    escape, a lone surrogate escape, a non-JSON number (``corrupt``)."""
    at = draw(st.integers(0, max(len(valid) - 1, 0)))
    if kind == "cut":
        return valid[:at]
    junk = draw(st.sampled_from(JUNK))
    return valid[:at] + junk + valid[at + 1 :]


@st.composite
def raw_bodies(draw: st.DrawFn) -> bytes:
    """Bodies that are not clean JSON objects: cut, corrupted, duplicated keys, deep, huge."""
    valid = dumps(draw(body))
    kind = draw(st.sampled_from(["cut", "corrupt", "duplicate", "deep", "huge", "bytes", "empty"]))
    if kind in ("cut", "corrupt"):
        return cut_or_corrupt(draw, valid, kind)
    if kind == "duplicate":
        key = draw(st.sampled_from(['"model"', '"messages"', '"n"', '"stream"', '"content"', '"role"']))
        value = dumps(draw(anything))
        return valid.replace(key.encode() + b":", key.encode() + b":" + value + b"," + key.encode() + b":", 1)
    if kind == "deep":
        return deep(
            draw(st.sampled_from([129, 1025, 10_000])),
            draw(st.sampled_from(["body", "messages", "content", "unknown", "tools", "message field"])),
        )
    if kind == "huge":
        return (
            b'{"model":"mock","messages":[{"role":"user","content":"'
            + b"x" * draw(st.sampled_from([MAX_BODY - 80, MAX_BODY + 1, 10 * MAX_BODY]))
            + b'"}]}'
        )
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    return b""


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    fake = FakeUpstream()
    fake.start()
    config = f"""
server:
  max_body_bytes: {MAX_BODY}
upstreams:
  - name: fake
    provider: openai
    base_url: http://127.0.0.1:{fake.port}/v1
    api_key: sk-fake
    timeouts: {{connect_s: 2, read_s: 5, total_s: 10}}
  - name: mock
    provider: mock
    mock: {{chunks: 4, words: 12}}
model_groups:
  - name: mock
    deployments: [{{upstream: mock}}]
  - name: fake-echo
    deployments: [{{upstream: fake, model: echo}}]
"""
    found = Target.start(tmp_path_factory.mktemp("fuzz-http"), config)
    yield found
    found.gateway.stop()
    fake.stop()


@pytest.fixture
def client(target: Target) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=target.gateway.url, timeout=15) as c:
        yield c


def check(target: Target, client: httpx.Client) -> None:
    target.check_health(client)
    assert not target.failures, target.report()


def test_generated_chat_bodies(target: Target, client: httpx.Client) -> None:
    target.begin()

    @fuzz_settings(300)
    @given(payload=body)
    def run(payload: dict[str, Any]) -> None:
        target.send(client, "POST", "/v1/chat/completions", dumps(payload), {"content-type": "application/json"})

    run()
    check(target, client)


def test_one_confused_field_anywhere(target: Target, client: httpx.Client) -> None:
    target.begin()

    @fuzz_settings(300)
    @given(payload=one_confused_field())
    def run(payload: dict[str, Any]) -> None:
        target.send(client, "POST", "/v1/chat/completions", dumps(payload), {"content-type": "application/json"})

    run()
    check(target, client)


SIZED = ["n", "max_tokens", "max_completion_tokens", "top_logprobs", "seed"]


def test_numbers_that_size_work_are_bounded(target: Target, client: httpx.Client) -> None:
    """A client number that sizes the gateway's (or the mock's) work is refused above its bound."""
    target.begin()

    @fuzz_settings(100)
    @given(payload=plausible_body, name=st.sampled_from(SIZED), value=huge_ints | st.integers(100, 10**7))
    def run(payload: dict[str, Any], name: str, value: int) -> None:
        payload.update(model="mock", **{name: value})
        target.send(client, "POST", "/v1/chat/completions", dumps(payload), {"content-type": "application/json"})

    run()
    check(target, client)


def test_raw_chat_bodies(target: Target, client: httpx.Client) -> None:
    target.begin()

    @fuzz_settings(200)
    @given(raw=raw_bodies())
    def run(raw: bytes) -> None:
        headers = {"content-type": "application/json"}
        if len(raw) > MAX_BODY:  # refused before it is read: the server then closes the connection
            headers["connection"] = "close"
        target.send(client, "POST", "/v1/chat/completions", raw, headers)

    run()
    check(target, client)


@pytest.mark.parametrize("where", ["body", "messages", "content", "unknown", "tools", "message field"])
def test_ten_thousand_levels_of_nesting_are_a_4xx(target: Target, client: httpx.Client, where: str) -> None:
    target.begin()
    resp = target.send(client, "POST", "/v1/chat/completions", deep(10_000, where))
    assert resp is not None and resp.status_code == 400, resp and resp.text
    assert resp.json()["error"]["code"] == "invalid_json"
    check(target, client)
