"""Bad input against the real gateway: every malformed chat body is a 400 naming the field, never a 5xx;
no client number sizes unbounded work (the ``n: 2**63`` request through the mock); valid requests, unknown
fields included, reach the upstream untouched; ``requests.*`` in the configuration sets the ceilings.

(Issue 13: ~1,800 malformed bodies had found 46 that answered 500, and one ``n`` that took the server down.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.openai_upstream import FakeUpstream
from tests.support import Gateway

USER = {"role": "user", "content": "hi"}
CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
#: The realistic request: system + user message, temperature, max_tokens, user.
REALISTIC = {
    "model": "mock",
    "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hi."}],
    "temperature": 0.7,
    "max_tokens": 64,
    "user": "user-1234",
}


def post(gw: Gateway, body: bytes | dict[str, Any]) -> httpx.Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(f"{gw.url}/v1/chat/completions", content=data, timeout=10)


def error_of(resp: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    err: dict[str, Any] = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    return err


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "mock", "messages": [USER], **fields}


def with_message(message: Any) -> dict[str, Any]:
    return {"model": "mock", "messages": [USER, message]}


# ---- type confusion and ranges: 400 naming the field ---------------------------------------------

RAW = b'{"model": "mock", "messages": [{"role": "user", "content": "hi"}], '

MALFORMED: list[tuple[bytes | dict[str, Any], str]] = [
    # the reproductions
    (RAW + b'"n": 9223372036854775808}', "n"),
    (RAW + b'"n": 1000000000000000000000000000000}', "n"),
    (RAW + b'"max_tokens": 9223372036854775808}', "max_tokens"),
    (RAW + b'"max_completion_tokens": 1e30}', "max_completion_tokens"),
    (with_message({"role": "assistant", "tool_calls": [None]}), "messages[1].tool_calls[0]"),
    (with_message({"role": "user", "content": "x", "name": ["a", "b"]}), "messages[1].name"),
    (with_message({"role": ["user"], "content": "x"}), "messages[1].role"),
    (with_message({"role": {"r": 1}, "content": "x"}), "messages[1].role"),
    # messages, per role
    (with_message({"role": "user", "content": [None]}), "messages[1].content[0]"),
    (with_message({"role": "user", "content": [{"type": "text", "text": None}]}), "messages[1].content[0].text"),
    (with_message({"role": "user", "content": [{"type": ["text"]}]}), "messages[1].content[0].type"),
    (
        with_message({"role": "user", "content": [{"type": "image_url", "image_url": 1}]}),
        "messages[1].content[0].image_url",
    ),
    (with_message({"role": "system", "content": None}), "messages[1].content"),
    (with_message({"role": "assistant", "tool_calls": "call"}), "messages[1].tool_calls"),
    (
        with_message({"role": "assistant", "tool_calls": [{**CALL, "function": [1]}]}),
        "messages[1].tool_calls[0].function",
    ),
    (
        with_message({"role": "assistant", "tool_calls": [{**CALL, "function": {"name": "f", "arguments": {"a": 1}}}]}),
        "messages[1].tool_calls[0].function.arguments",
    ),
    (with_message({"role": "assistant", "tool_calls": [{**CALL, "id": None}]}), "messages[1].tool_calls[0].id"),
    (with_message({"role": "user", "content": "x", "tool_calls": [None]}), "messages[1].tool_calls[0]"),
    (with_message({"role": "tool", "content": "42"}), "messages[1].tool_call_id"),
    (with_message({"role": "tool", "content": "42", "tool_call_id": {"id": 1}}), "messages[1].tool_call_id"),
    (with_message({"role": "function", "content": "x", "name": 3}), "messages[1].name"),
    (with_message({"role": "assistant", "content": None, "refusal": []}), "messages[1].refusal"),
    # sampling numbers and flags
    (chat(n=True), "n"),
    (chat(n=2.0), "n"),
    (chat(n=129), "n"),
    (chat(max_tokens=False), "max_tokens"),
    (chat(max_tokens=131_073), "max_tokens"),
    (chat(temperature=2.5), "temperature"),
    (chat(temperature=[1]), "temperature"),
    (chat(top_p=-0.5), "top_p"),
    (chat(presence_penalty=3), "presence_penalty"),
    (chat(frequency_penalty="0"), "frequency_penalty"),
    (chat(seed="1"), "seed"),
    (RAW + b'"seed": 9223372036854775808}', "seed"),
    (chat(logprobs="true"), "logprobs"),
    (chat(top_logprobs=-1), "top_logprobs"),
    (chat(user={"id": 1}), "user"),
    (chat(parallel_tool_calls=0), "parallel_tool_calls"),
    (chat(stream=1), "stream"),
    (chat(stream=True, stream_options={"include_usage": "yes"}), "stream_options.include_usage"),
    # bounded collections
    (chat(stop=[1]), "stop[0]"),
    (chat(stop=["a", "b", "c", "d", "e"]), "stop"),
    (chat(stop={"a": 1}), "stop"),
    (chat(logit_bias={str(i): 1 for i in range(301)}), "logit_bias"),
    (chat(logit_bias={"token": 1}), "logit_bias"),
    (chat(logit_bias={"42": 1000}), "logit_bias.42"),
    (chat(metadata={"k": ["v"]}), "metadata.k"),
    (chat(tools=[{"type": "function", "function": {"name": "f"}}] * 129), "tools"),
    (chat(tools=[{"type": "function", "function": None}]), "tools[0].function"),
    (chat(tools=[{"type": "function", "function": {"name": "a b"}}]), "tools[0].function.name"),
    (chat(tools=[{"type": "function", "function": {"name": "f", "parameters": "{}"}}]), "tools[0].function.parameters"),
    (chat(tool_choice="always"), "tool_choice"),
    (chat(tool_choice={"type": "function", "function": {"name": ["f"]}}), "tool_choice.function.name"),
    (chat(response_format={"type": "json_schema", "json_schema": None}), "response_format.json_schema"),
    (chat(response_format={"type": ["text"]}), "response_format.type"),
]


@pytest.mark.parametrize(("body", "param"), MALFORMED)
def test_malformed_bodies_are_400_naming_the_field(gateway: Gateway, body: bytes | dict[str, Any], param: str) -> None:
    err = error_of(post(gateway, body))
    assert (err["code"], err["type"], err["param"]) == ("invalid_value", "invalid_request_error", param)
    assert param in err["message"]


def test_the_n_request_that_took_the_server_down_is_refused_and_the_server_lives(gateway: Gateway) -> None:
    err = error_of(post(gateway, RAW + b'"n": 9223372036854775808}'))
    assert err["param"] == "n" and "between 1 and 128" in err["message"]
    resp = post(gateway, chat(n=128, max_tokens=3))  # the ceiling itself is served, in bounded work
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["choices"]) == 128
    assert httpx.get(f"{gateway.url}/health", timeout=5).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "mock", "messages": [{"role": "user", "role": "user", "content": "hi"}]}',
        b'{"model": "mock", "messages": [{"role": "user", "content": "a"}],'
        b' "messages": [{"role": "user", "content": "b"}]}',
    ],
)
def test_a_body_the_core_cannot_read_is_400_not_500(gateway: Gateway, body: bytes) -> None:
    """A key given twice passes orjson (the last wins) but not the Rust token counter: still a 400."""
    err = error_of(post(gateway, body))
    assert (err["code"], err["param"]) == ("invalid_value", "messages")
    assert "duplicate field" in err["message"]


# ---- a sweep of type confusion: nothing is a 5xx -------------------------------------------------

RICH = {
    "model": "mock",
    "messages": [
        {"role": "system", "content": "s"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}], "name": "ada"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ],
    "n": 1,
    "max_tokens": 8,
    "max_completion_tokens": 8,
    "temperature": 1,
    "top_p": 1,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "seed": 1,
    "logprobs": False,
    "top_logprobs": 0,
    "user": "u",
    "stop": ["x"],
    "logit_bias": {"1": 1},
    "metadata": {"k": "v"},
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "response_format": {"type": "text"},
    "stream": False,
}
WRONG: list[Any] = [None, True, 0, -1, 2**63, 1e30, 1.5, "s", "", [], [None], {}, {"a": None}]  # 1e30: 10**30 as parsed


def _variants() -> Iterator[bytes]:
    for field in RICH:
        for value in WRONG:
            yield orjson.dumps({**RICH, field: value})
    for i, message in enumerate(RICH["messages"]):  # type: ignore[arg-type]
        for key in ("role", "content", "name", "tool_calls", "tool_call_id"):
            for value in WRONG:
                messages = list(RICH["messages"])  # type: ignore[call-overload]
                messages[i] = {**message, key: value}
                yield orjson.dumps({**RICH, "messages": messages})
    calls = [None, 1, "c", [], {"id": 1}, {**CALL, "type": None}, {**CALL, "function": {"name": 1}}]
    for call in calls:
        yield orjson.dumps({**RICH, "messages": [USER, {"role": "assistant", "tool_calls": [call]}]})


def test_no_type_confusion_is_a_5xx(gateway: Gateway) -> None:
    bodies = list(_variants())
    assert len(bodies) > 500
    with httpx.Client(timeout=10) as client:
        for body in bodies:
            resp = client.post(f"{gateway.url}/v1/chat/completions", content=body)
            assert resp.status_code < 500, (body, resp.text)
            if resp.status_code != 200:
                err = error_of(resp, resp.status_code)
                assert resp.status_code != 400 or err["param"], (body, err)
        assert client.get(f"{gateway.url}/health").status_code == 200


# ---- what is valid passes, untouched --------------------------------------------------------------


def test_the_realistic_request_is_served(gateway: Gateway) -> None:
    resp = post(gateway, REALISTIC)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["role"] == "assistant"
    assert answer["usage"]["prompt_tokens"] > 0


def test_unknown_fields_reach_the_upstream_untouched(gateway: Gateway, upstream: FakeUpstream) -> None:
    extra = {
        "reasoning_effort": "low",
        "a_field_openai_adds_next_year": {"nested": [1, 2.5, None, {"deep": True}]},
        "verbosity": "high",
    }
    message = {"role": "user", "content": "hi", "a_message_field": ["kept"]}
    body = {**REALISTIC, "model": "fake-echo", "messages": [message], **extra}
    before = len(upstream.requests)
    resp = post(gateway, body)
    assert resp.status_code == 200, resp.text
    sent = upstream.requests[before]["body"]
    assert {k: sent[k] for k in extra} == extra
    assert sent["messages"] == [message]
    assert (sent["temperature"], sent["max_tokens"], sent["user"]) == (0.7, 64, "user-1234")


# ---- the ceilings come from the configuration -----------------------------------------------------

TIGHT = """
requests:
  max_output_tokens: 100
  max_n: 2
  max_messages: 3
  max_tools: 1
  max_stop: 1
  max_logit_bias: 2
upstreams:
  - name: mock
    provider: mock
model_groups:
  - name: mock
    deployments: [{upstream: mock}]
"""


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("tight"), TIGHT).wait_ready()
    yield gw
    gw.stop()


TOOL = {"type": "function", "function": {"name": "f"}}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat(max_tokens=101), "max_tokens"),
        (chat(max_completion_tokens=101), "max_completion_tokens"),
        (chat(n=3), "n"),
        ({"model": "mock", "messages": [USER] * 4}, "messages"),
        (chat(tools=[TOOL, TOOL]), "tools"),
        (chat(stop=["a", "b"]), "stop"),
        (chat(logit_bias={"1": 1, "2": 1, "3": 1}), "logit_bias"),
    ],
)
def test_configured_ceilings_refuse_above(tight: Gateway, body: dict[str, Any], param: str) -> None:
    err = error_of(post(tight, body))
    assert (err["code"], err["param"]) == ("invalid_value", param)


def test_configured_ceilings_admit_up_to(tight: Gateway) -> None:
    body = {"model": "mock", "messages": [USER] * 3, "max_tokens": 100, "n": 2, "tools": [TOOL], "stop": ["a"]}
    resp = post(tight, {**body, "logit_bias": {"1": 1, "2": 1}})
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["choices"]) == 2
