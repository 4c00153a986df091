"""The receive phase's field checks, table-driven: what passes, and the param named for what does not."""

from __future__ import annotations

from typing import Any

import pytest

from ferrogate.config.model import RequestBounds
from ferrogate.errors import GatewayError
from ferrogate.pipeline.validate import validate_chat

OK = [{"role": "user", "content": "hi"}]
CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}, "strict": True}}


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": OK, **fields}


def msgs(*messages: Any) -> dict[str, Any]:
    return {"model": "m", "messages": list(messages)}


@pytest.mark.parametrize(
    "payload",
    [
        body(),
        body(temperature=0.7, max_tokens=256, user="u-1", top_p=1, n=2, presence_penalty=-2, frequency_penalty=2.0),
        body(max_completion_tokens=131_072, seed=-(2**63), logprobs=True, top_logprobs=20, parallel_tool_calls=False),
        body(stop="END", logit_bias={"50256": -100, "11": 5.5}, metadata={"k": "v"}),
        body(stop=["a", "b", "c", "d"], temperature=None, n=None, tools=None, stop_options_unknown=1),
        body(stream=True, stream_options={"include_usage": True, "include_obfuscation": False}),
        body(tools=[TOOL], tool_choice="required"),
        body(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}}),
        body(tools=[{"type": "custom", "custom": {"name": "grep", "format": {"type": "text"}}}], tool_choice="auto"),
        body(tool_choice={"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [TOOL]}}),
        body(functions=[{"name": "f", "parameters": {}}], function_call={"name": "f"}),
        body(response_format={"type": "json_object"}),
        body(response_format={"type": "json_schema", "json_schema": {"name": "out", "schema": {}, "strict": True}}),
        body(unknown_field_passes_upstream={"x": [1, {"deep": None}]}, reasoning_effort="low"),
        msgs({"role": "system", "content": "s"}, {"role": "developer", "content": [{"type": "text", "text": "d"}]}),
        msgs(
            {
                "role": "user",
                "name": "ada",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
                    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                    {"type": "file", "file": {"file_id": "file-1"}},
                ],
            }
        ),
        msgs(
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        ),
        msgs({"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}], "refusal": "no"}),
        msgs({"role": "assistant", "content": None, "tool_calls": []}),
        msgs(
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "custom", "custom": {"name": "g", "input": "x"}}]}
        ),
        msgs({"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}}),
        msgs({"role": "function", "name": "f", "content": "out"}),
        msgs({"role": "user", "content": "x", "unknown_message_field": [1]}),
    ],
)
def test_accepts(payload: dict[str, Any]) -> None:
    validate_chat(payload)


BAD: list[tuple[Any, str]] = [
    ("text", ""),
    ([1], ""),
    ({"model": 3, "messages": OK}, "model"),
    ({"model": "x" * 257, "messages": OK}, "model"),
    ({"model": "m", "messages": None}, "messages"),
    ({"model": "m", "messages": []}, "messages"),
    (msgs(None), "messages[0]"),
    (msgs({"content": "x"}), "messages[0].role"),
    (msgs({"role": ["user"], "content": "x"}), "messages[0].role"),  # unhashable: no TypeError
    (msgs({"role": {"a": 1}, "content": "x"}), "messages[0].role"),
    (msgs({"role": "robot", "content": "x"}), "messages[0].role"),
    (msgs({"role": "user", "content": {}}), "messages[0].content"),
    (msgs({"role": "user", "content": None}), "messages[0].content"),
    (msgs({"role": "user", "content": []}), "messages[0].content"),
    (msgs({"role": "user", "content": [None]}), "messages[0].content[0]"),
    (msgs({"role": "user", "content": [{"type": 1}]}), "messages[0].content[0].type"),
    (msgs({"role": "user", "content": [{"type": "video"}]}), "messages[0].content[0].type"),
    (msgs({"role": "user", "content": [{"type": "text", "text": 5}]}), "messages[0].content[0].text"),
    (msgs({"role": "user", "content": [{"type": "image_url", "image_url": "u"}]}), "messages[0].content[0].image_url"),
    (
        msgs({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u", "detail": "max"}}]}),
        "messages[0].content[0].image_url.detail",
    ),
    (
        msgs({"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": 1}}]}),
        "messages[0].content[0].input_audio.data",
    ),
    (
        msgs({"role": "user", "content": [{"type": "file", "file": {"file_id": 2}}]}),
        "messages[0].content[0].file.file_id",
    ),
    (
        msgs({"role": "system", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}),
        "messages[0].content[0].type",
    ),
    (msgs({"role": "user", "content": "x", "name": ["a"]}), "messages[0].name"),
    (msgs({"role": "user", "content": "x", "name": "n" * 513}), "messages[0].name"),
    (msgs(*OK, {"role": "assistant", "tool_calls": [None]}), "messages[1].tool_calls[0]"),
    (msgs({"role": "assistant", "tool_calls": {"id": "x"}}), "messages[0].tool_calls"),
    (msgs({"role": "assistant", "tool_calls": [{**CALL, "id": 7}]}), "messages[0].tool_calls[0].id"),
    (msgs({"role": "assistant", "tool_calls": [{**CALL, "type": "fn"}]}), "messages[0].tool_calls[0].type"),
    (msgs({"role": "assistant", "tool_calls": [{**CALL, "function": None}]}), "messages[0].tool_calls[0].function"),
    (
        msgs(*OK, {"role": "assistant", "tool_calls": [{**CALL, "function": {"name": "f", "arguments": {}}}]}),
        "messages[1].tool_calls[0].function.arguments",
    ),
    (
        msgs({"role": "assistant", "tool_calls": [{**CALL, "function": {"arguments": "{}"}}]}),
        "messages[0].tool_calls[0].function.name",
    ),
    (msgs({"role": "user", "content": "x", "tool_calls": [1]}), "messages[0].tool_calls[0]"),  # the counter reads it
    (msgs({"role": "assistant", "content": 5}), "messages[0].content"),
    (msgs({"role": "assistant", "content": None, "refusal": 1}), "messages[0].refusal"),
    (msgs({"role": "assistant", "function_call": "f"}), "messages[0].function_call"),
    (msgs({"role": "tool", "content": "x"}), "messages[0].tool_call_id"),
    (msgs({"role": "tool", "content": "x", "tool_call_id": 1}), "messages[0].tool_call_id"),
    (msgs({"role": "user", "content": "x", "tool_call_id": []}), "messages[0].tool_call_id"),
    (msgs({"role": "function", "content": "x"}), "messages[0].name"),
    (body(max_tokens=True), "max_tokens"),
    (body(max_tokens=0), "max_tokens"),
    (body(max_tokens=1.0), "max_tokens"),
    (body(max_tokens=131_073), "max_tokens"),
    (body(max_completion_tokens=2**63), "max_completion_tokens"),
    (body(max_completion_tokens=1e29), "max_completion_tokens"),  # 10**30 as orjson gives it
    (body(n=0), "n"),
    (body(n=129), "n"),
    (body(n=2**63), "n"),
    (body(n=False), "n"),
    (body(n="2"), "n"),
    (body(top_p=1.5), "top_p"),
    (body(temperature="hot"), "temperature"),
    (body(temperature=-0.1), "temperature"),
    (body(temperature=True), "temperature"),
    (body(presence_penalty=2.5), "presence_penalty"),
    (body(frequency_penalty=-3), "frequency_penalty"),
    (body(seed=2**63), "seed"),
    (body(seed=1.5), "seed"),
    (body(logprobs=1), "logprobs"),
    (body(top_logprobs=21), "top_logprobs"),
    (body(user=5), "user"),
    (body(user="u" * 513), "user"),
    (body(stop=5), "stop"),
    (body(stop=["a", "b", "c", "d", "e"]), "stop"),
    (body(stop=["a", None]), "stop[1]"),
    (body(logit_bias=[1]), "logit_bias"),
    (body(logit_bias={"x": 1}), "logit_bias"),
    (body(logit_bias={"1": 101}), "logit_bias.1"),
    (body(logit_bias={"1": "1"}), "logit_bias.1"),
    (body(logit_bias={str(i): 0 for i in range(301)}), "logit_bias"),
    (body(parallel_tool_calls="yes"), "parallel_tool_calls"),
    (body(stream=False, stream_options={}), "stream_options"),
    (body(stream=True, stream_options=[]), "stream_options"),
    (body(stream=True, stream_options={"include_usage": 1}), "stream_options.include_usage"),
    (body(stream="yes"), "stream"),
    (body(metadata=[]), "metadata"),
    (body(metadata={"k": 1}), "metadata.k"),
    (body(metadata={str(i): "v" for i in range(17)}), "metadata"),
    (body(tools={}), "tools"),
    (body(tools=[TOOL] * 129), "tools"),
    (body(tools=[None]), "tools[0]"),
    (body(tools=[{"type": "retrieval"}]), "tools[0].type"),
    (body(tools=[{"type": "function"}]), "tools[0].function"),
    (body(tools=[{"type": "function", "function": {"name": "has space"}}]), "tools[0].function.name"),
    (body(tools=[{"type": "function", "function": {"name": "x" * 65}}]), "tools[0].function.name"),
    (body(tools=[{"type": "function", "function": {"name": "f", "parameters": []}}]), "tools[0].function.parameters"),
    (body(tools=[{"type": "function", "function": {"name": "f", "strict": "no"}}]), "tools[0].function.strict"),
    (body(tools=[{"type": "function", "function": {"name": "f", "description": 1}}]), "tools[0].function.description"),
    (body(tools=[{"type": "custom", "custom": {}}]), "tools[0].custom.name"),
    (body(functions=[{"name": 1}]), "functions[0].name"),
    (body(tool_choice="any"), "tool_choice"),
    (body(tool_choice=1), "tool_choice"),
    (body(tool_choice={"type": "function"}), "tool_choice.function"),
    (body(tool_choice={"type": "function", "function": {"name": None}}), "tool_choice.function.name"),
    (body(tool_choice={"type": "tool"}), "tool_choice.type"),
    (
        body(tool_choice={"type": "allowed_tools", "allowed_tools": {"mode": "x", "tools": []}}),
        "tool_choice.allowed_tools.mode",
    ),
    (body(function_call="some"), "function_call"),
    (body(response_format="json"), "response_format"),
    (body(response_format={"type": "yaml"}), "response_format.type"),
    (body(response_format={"type": "json_schema"}), "response_format.json_schema"),
    (body(response_format={"type": "json_schema", "json_schema": {"schema": {}}}), "response_format.json_schema.name"),
    (
        body(response_format={"type": "json_schema", "json_schema": {"name": "o", "schema": "s"}}),
        "response_format.json_schema.schema",
    ),
    (
        body(response_format={"type": "json_schema", "json_schema": {"name": "o", "strict": 1}}),
        "response_format.json_schema.strict",
    ),
]


@pytest.mark.parametrize(("payload", "param"), BAD)
def test_refuses_naming_the_field(payload: Any, param: str) -> None:
    with pytest.raises(GatewayError) as info:
        validate_chat(payload)
    assert (info.value.param, info.value.status, info.value.wire_code) == (param, 400, "invalid_value")
    assert f"'{param}'" in info.value.message or not param


def test_huge_integers_get_the_range_not_an_overflow() -> None:
    for value in (2**63, 10**30, 1e29):
        with pytest.raises(GatewayError) as info:
            validate_chat(body(n=value))
        assert "between 1 and 128" in info.value.message


def test_bounds_come_from_the_configuration() -> None:
    tight = RequestBounds(max_output_tokens=100, max_n=2, max_messages=2, max_tools=1, max_stop=1, max_logit_bias=1)
    validate_chat(body(max_tokens=100, n=2, stop=["x"], tools=[TOOL], logit_bias={"1": 1}), tight)
    cases = [
        (body(max_tokens=101), "max_tokens"),
        (body(n=3), "n"),
        (msgs(*OK * 3), "messages"),
        (body(tools=[TOOL, TOOL]), "tools"),
        (body(stop=["x", "y"]), "stop"),
        (body(logit_bias={"1": 1, "2": 2}), "logit_bias"),
    ]
    for payload, param in cases:
        with pytest.raises(GatewayError) as info:
            validate_chat(payload, tight)
        assert info.value.param == param
    with pytest.raises(GatewayError) as info:
        validate_chat(msgs(*OK * 2049))
    assert info.value.param == "messages" and "at most 2048" in info.value.message


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        (body(response_format={"type": ["text"]}), "response_format.type"),
        (
            msgs({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u", "detail": []}}]}),
            "messages[0].content[0].image_url.detail",
        ),
        (body(tool_choice={"type": {"a": 1}}), "tool_choice.type"),
        (body(tools=[{"type": ["function"]}]), "tools[0].type"),
        (msgs({"role": "assistant", "tool_calls": [{**CALL, "type": {}}]}), "messages[0].tool_calls[0].type"),
    ],
)
def test_unhashable_values_are_refusals_not_type_errors(payload: Any, param: str) -> None:
    """An array or object where a name is looked up must not raise ``TypeError: unhashable type``."""
    with pytest.raises(GatewayError) as info:
        validate_chat(payload)
    assert info.value.param == param


def test_text_on_a_part_of_another_type_is_checked() -> None:
    """The token counter reads ``text`` in any part: a non-string there is named, not a 400 on ``messages``."""
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}, "text": 5}]}],
    }
    with pytest.raises(GatewayError) as info:
        validate_chat(body, RequestBounds())
    assert info.value.param == "messages[0].content[0].text"
