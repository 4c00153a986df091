"""Every bad-input and upstream-fault case: right status, OpenAI error shape, field named."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.support import Gateway

OK_MESSAGES = [{"role": "user", "content": "hi"}]


def post(gw: Gateway, body: bytes | dict[str, Any], **headers: str) -> httpx.Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(f"{gw.url}/v1/chat/completions", content=data, headers=headers, timeout=10)


def assert_error(resp: httpx.Response, status: int, code: str, param: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    err: dict[str, Any] = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == code
    assert err["param"] == param
    assert err["message"]
    return err


def test_malformed_json_is_400(gateway: Gateway) -> None:
    err = assert_error(post(gateway, b'{"model": "mock", "messages": ['), 400, "invalid_json")
    assert "not valid JSON" in err["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([1, 2], ""),
        ({"messages": OK_MESSAGES}, "model"),
        ({"model": "", "messages": OK_MESSAGES}, "model"),
        ({"model": "mock"}, "messages"),
        ({"model": "mock", "messages": "hello"}, "messages"),
        ({"model": "mock", "messages": []}, "messages"),
        ({"model": "mock", "messages": ["hi"]}, "messages[0]"),
        ({"model": "mock", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "mock", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "mock", "messages": OK_MESSAGES, "max_tokens": -1}, "max_tokens"),
        ({"model": "mock", "messages": OK_MESSAGES, "max_tokens": "10"}, "max_tokens"),
        ({"model": "mock", "messages": OK_MESSAGES, "max_completion_tokens": 0}, "max_completion_tokens"),
        ({"model": "mock", "messages": OK_MESSAGES, "temperature": 3}, "temperature"),
        ({"model": "mock", "messages": OK_MESSAGES, "stream": "yes"}, "stream"),
        ({"model": "mock", "messages": OK_MESSAGES, "stream_options": {"include_usage": True}}, "stream_options"),
        (
            {"model": "mock", "messages": OK_MESSAGES, "stream": True, "stream_options": {"include_usage": 1}},
            "stream_options.include_usage",
        ),
    ],
)
def test_invalid_fields_are_400_naming_the_field(gateway: Gateway, body: Any, param: str) -> None:
    assert_error(post(gateway, orjson.dumps(body)), 400, "invalid_value", param)


def test_invalid_field_through_the_sdk(gateway: Gateway) -> None:
    sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    with sdk, pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="mock", messages=OK_MESSAGES, max_tokens=-5)  # type: ignore[arg-type]
    assert info.value.body is not None and info.value.body["param"] == "max_tokens"  # type: ignore[index]


def test_unknown_model_is_404(gateway: Gateway) -> None:
    err = assert_error(post(gateway, {"model": "nope", "messages": OK_MESSAGES}), 404, "model_not_found", "model")
    assert "'nope'" in err["message"]


def test_body_over_limit_is_413(gateway: Gateway) -> None:
    big = {"model": "mock", "messages": [{"role": "user", "content": "x" * 70_000}]}
    assert_error(post(gateway, big), 413, "request_too_large")


def test_a_413_closes_the_connection_and_the_next_request_is_answered(gateway: Gateway) -> None:
    """The unread rest of a refused body must never be taken for the next request on a keep-alive connection."""
    big = {"model": "mock", "messages": [{"role": "user", "content": "x" * 700_000}]}
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        for _ in range(20):
            resp = client.post("/v1/chat/completions", json=big)
            assert resp.status_code == 413 and resp.headers.get("connection") == "close"
            ok = client.post("/v1/chat/completions", json={"model": "mock", "messages": OK_MESSAGES})
            assert ok.status_code == 200, ok.text


def test_chunked_body_over_limit_is_413(gateway: Gateway) -> None:
    def chunks() -> Any:
        yield b'{"model": "mock", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"x" * 5000
        yield b'"}]}'

    resp = httpx.post(f"{gateway.url}/v1/chat/completions", content=chunks(), timeout=10)
    assert_error(resp, 413, "request_too_large")


def test_wrong_method_is_405_with_allow(gateway: Gateway) -> None:
    resp = httpx.get(f"{gateway.url}/v1/chat/completions")
    assert_error(resp, 405, "method_not_allowed")
    assert resp.headers["allow"] == "POST"


def test_unknown_route_is_404(gateway: Gateway) -> None:
    assert_error(httpx.get(f"{gateway.url}/v1/nothing"), 404, "not_found")


def test_upstream_timeout_is_504(gateway: Gateway) -> None:
    err = assert_error(post(gateway, {"model": "fake-slow", "messages": OK_MESSAGES}), 504, "upstream_timeout")
    assert "'fake'" in err["message"]


def test_upstream_unreachable_is_502_naming_it(gateway: Gateway) -> None:
    err = assert_error(post(gateway, {"model": "gone", "messages": OK_MESSAGES}), 502, "upstream_unreachable")
    assert "'dead'" in err["message"]


def test_stream_dying_midway_ends_with_error_event(gateway: Gateway) -> None:
    body = {"model": "fake-die-mid-stream", "messages": OK_MESSAGES, "stream": True}
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", content=orjson.dumps(body), timeout=10) as r:
        assert r.status_code == 200
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    contents = [orjson.loads(e)["choices"][0]["delta"].get("content") for e in events[:-1]]
    assert contents == ["", "Hello", " from"]
    error = orjson.loads(events[-1])["error"]
    assert error["code"] == "upstream_bad_response"
    assert "'fake'" in error["message"]
    # the gateway is still up and serving
    assert post(gateway, {"model": "mock", "messages": OK_MESSAGES}).status_code == 200


def test_sdk_raises_on_stream_error_event(gateway: Gateway) -> None:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0) as sdk:
        stream = sdk.chat.completions.create(model="fake-die-mid-stream", messages=OK_MESSAGES, stream=True)  # type: ignore[arg-type]
        with pytest.raises(openai.APIError):
            list(stream)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/models", "/health", "/ready", "/nowhere"])
def test_every_response_carries_a_request_id(gateway: Gateway, path: str) -> None:
    resp = httpx.get(f"{gateway.url}{path}")
    rid = resp.headers["x-request-id"]
    assert len(rid) == 24 and int(rid, 16) >= 0
    other = httpx.get(f"{gateway.url}{path}").headers["x-request-id"]
    assert other != rid


@pytest.mark.parametrize(
    ("sent", "echoed"), [("abc-123.DEF:4_5", True), ("bad id with spaces", False), ("x" * 200, False)]
)
def test_client_request_id_echoed_when_well_formed(gateway: Gateway, sent: str, echoed: bool) -> None:
    resp = post(gateway, {"model": "mock", "messages": OK_MESSAGES}, **{"x-request-id": sent})
    assert resp.status_code == 200
    assert (resp.headers["x-request-id"] == sent) is echoed


def test_health_and_ready(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.url}/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["store"] == "sqlite"


@pytest.mark.parametrize(
    ("query", "param"),
    [("from=9999-12-31T23:59:59-23:59", "from"), ("to=0001-01-01T00:00:00%2B23:59", "to"), ("from=yesterday", "from")],
)
def test_usage_times_without_a_utc_form_are_a_400(gateway: Gateway, query: str, param: str) -> None:
    resp = httpx.get(f"{gateway.url}/v1/usage?{query}", timeout=10)
    assert_error(resp, 400, "invalid_value", param)
