"""The receive phase's field checks, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from ferrogate.errors import GatewayError
from ferrogate.pipeline.validate import validate_chat

OK = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "messages": OK},
        {"model": "m", "messages": [{"role": "assistant", "content": None, "tool_calls": []}]},
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]},
        {"model": "m", "messages": OK, "stream": True, "stream_options": {"include_usage": True}},
        {"model": "m", "messages": OK, "max_tokens": 1, "temperature": 0, "top_p": 1, "n": 2},
        {"model": "m", "messages": OK, "unknown_field_passes_upstream": {"x": 1}},
    ],
)
def test_accepts(body: dict[str, Any]) -> None:
    validate_chat(body)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ("text", ""),
        ({"model": 3, "messages": OK}, "model"),
        ({"model": "m", "messages": None}, "messages"),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [*OK, {"role": "user", "content": {}}]}, "messages[1].content"),
        ({"model": "m", "messages": OK, "max_tokens": True}, "max_tokens"),
        ({"model": "m", "messages": OK, "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "messages": OK, "n": 0}, "n"),
        ({"model": "m", "messages": OK, "top_p": 1.5}, "top_p"),
        ({"model": "m", "messages": OK, "temperature": "hot"}, "temperature"),
        ({"model": "m", "messages": OK, "stream": False, "stream_options": {}}, "stream_options"),
        ({"model": "m", "messages": OK, "stream": True, "stream_options": []}, "stream_options"),
    ],
)
def test_refuses_naming_the_field(body: Any, param: str) -> None:
    with pytest.raises(GatewayError) as info:
        validate_chat(body)
    assert info.value.param == param
    assert info.value.status == 400
