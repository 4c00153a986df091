"""Anthropic Messages: the ingress checks, both request translations, both answer translations, usage and counts."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferrogate import _core
from ferrogate.config.model import RequestBounds
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.pipeline.validate import validate_chat
from ferrogate.protocols import anthropic
from ferrogate.protocols.anthropic import (
    ANTHROPIC_RULES,
    DROPPED_TO_OPENAI,
    IMAGE_TOKENS,
    JSON_TOOL,
    MESSAGE_TOKENS,
    REPLY_TOKENS,
    TOOLS_TOKENS,
    count_prompt,
    from_chat,
    reply_from_chat,
    reply_to_chat,
    to_chat,
    usage_of_message,
    validate_count_tokens_request,
    validate_messages_request,
)

BOUNDS = RequestBounds()
USER = [{"role": "user", "content": "hi"}]
PNG = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
TOOL = {"name": "get_weather", "description": "d", "input_schema": {"type": "object", "properties": {}}}
USE = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}
RESULT = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "12C"}


def req(**fields: Any) -> dict[str, Any]:
    return {"model": "claude", "max_tokens": 1024, "messages": USER, **fields}


def turns(*messages: Any) -> dict[str, Any]:
    return {"model": "claude", "max_tokens": 1024, "messages": list(messages)}


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt", "messages": USER, **fields}


def refused(call: Any, *args: Any) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        call(*args)
    assert info.value.kind is ErrorKind.INVALID_FIELD and info.value.status == 400
    return info.value


# ---- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        req(),
        req(temperature=0, top_p=1, top_k=0, stream=False, service_tier="auto", unknown={"x": [1]}),
        req(system="s", stop_sequences=["a"] * 200, metadata={"user_id": None}, temperature=None),
        req(system=[{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]),
        req(tools=[TOOL, {"type": "web_search_20250305", "name": "web_search"}], tool_choice={"type": "any"}),
        req(tools=[TOOL], tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}),
        req(thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=1025, cache_control={"type": "ephemeral"}),
        req(
            thinking={"type": "disabled"},
            output_config={"effort": "low", "format": {"type": "json_schema", "schema": {}}},
        ),
        req(thinking={"type": "adaptive", "display": "omitted"}),
        turns(
            {"role": "user", "content": [{"type": "text", "text": "look"}, PNG]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"}, USE]},
            {"role": "user", "content": [{**RESULT, "is_error": False}, {"type": "text", "text": "go on"}]},
            {
                "role": "assistant",
                "content": [{"type": "redacted_thinking", "data": "x"}, {"type": "text", "text": "ok"}],
            },
        ),
        turns(
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                    {"type": "document", "source": {"type": "anything"}},
                    {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "a"}, PNG]},
                    {"type": "tool_result", "tool_use_id": "t2"},
                    {"type": "search_result", "anything": True},
                ],
            },
            {"role": "system", "content": [{"type": "text", "text": "mid-conversation system text"}]},
        ),
    ],
)
def test_valid_requests_pass(payload: dict[str, Any]) -> None:
    validate_messages_request(payload, BOUNDS)


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ([], ""),
        ({"max_tokens": 5, "messages": USER}, "model"),
        (req(model=""), "model"),
        ({"model": "m", "messages": USER}, "max_tokens"),
        (req(max_tokens=True), "max_tokens"),
        (req(max_tokens=0), "max_tokens"),
        (req(max_tokens=BOUNDS.max_output_tokens + 1), "max_tokens"),
        (req(max_tokens=5.0), "max_tokens"),
        (req(messages=[]), "messages"),
        (req(messages={"role": "user"}), "messages"),
        (req(messages=USER * (BOUNDS.max_messages + 1)), "messages"),
        (turns(None), "messages[0]"),
        (turns({"role": "tool", "content": "x"}), "messages[0].role"),
        (turns({"role": "user", "content": None}), "messages[0].content"),
        (turns({"role": "user", "content": []}), "messages[0].content"),
        (turns({"role": "user", "content": ["hi"]}), "messages[0].content[0]"),
        (turns({"role": "user", "content": [{"text": "hi"}]}), "messages[0].content[0].type"),
        (turns({"role": "user", "content": [{"type": "text", "text": 5}]}), "messages[0].content[0].text"),
        (
            turns(
                {"role": "user", "content": [{"type": "image", "source": {**PNG["source"], "media_type": "image/bmp"}}]}
            ),
            "messages[0].content[0].source.media_type",
        ),
        (
            turns(
                {
                    "role": "user",
                    "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png"}}],
                }
            ),
            "messages[0].content[0].source.data",
        ),
        (
            turns({"role": "user", "content": [{"type": "image", "source": {"type": "url"}}]}),
            "messages[0].content[0].source.url",
        ),
        (turns({"role": "user", "content": [{"type": "image"}]}), "messages[0].content[0].source"),
        (turns({"role": "user", "content": [USE]}), "messages[0].content[0].type"),
        (turns(USER[0], {"role": "assistant", "content": [RESULT]}), "messages[1].content[0].type"),
        (turns(USER[0], {"role": "assistant", "content": [{**USE, "input": "{}"}]}), "messages[1].content[0].input"),
        (turns(USER[0], {"role": "assistant", "content": [{**USE, "id": 1}]}), "messages[1].content[0].id"),
        (turns({"role": "user", "content": [{**RESULT, "is_error": 1}]}), "messages[0].content[0].is_error"),
        (turns({"role": "user", "content": [{**RESULT, "content": 3}]}), "messages[0].content[0].content"),
        (
            turns({"role": "user", "content": [{**RESULT, "content": [{"type": "text", "text": None}]}]}),
            "messages[0].content[0].content[0].text",
        ),
        (
            turns(USER[0], {"role": "assistant", "content": [{"type": "thinking", "thinking": "t"}]}),
            "messages[1].content[0].signature",
        ),
        (
            turns(USER[0], {"role": "assistant", "content": [{"type": "redacted_thinking"}]}),
            "messages[1].content[0].data",
        ),
        (
            turns(
                {"role": "user", "content": [{"type": "text", "text": "a", "cache_control": {"type": "persistent"}}]}
            ),
            "messages[0].content[0].cache_control.type",
        ),
        (turns({"role": "system", "content": [PNG]}), "messages[0].content[0].type"),
        (req(system=5), "system"),
        (req(system=[{"type": "image"}]), "system[0].type"),
        (req(stop_sequences="END"), "stop_sequences"),
        (req(stop_sequences=["a"] * 257), "stop_sequences"),
        (req(stop_sequences=["a", 1]), "stop_sequences[1]"),
        (req(temperature=1.5), "temperature"),
        (req(temperature=True), "temperature"),
        (req(top_p=-0.1), "top_p"),
        (req(top_k=-1), "top_k"),
        (req(top_k=1.0), "top_k"),
        (req(stream="yes"), "stream"),
        (req(metadata={"user_id": 5}), "metadata.user_id"),
        (req(metadata="u"), "metadata"),
        (req(tools={}), "tools"),
        (req(tools=[TOOL] * (BOUNDS.max_tools + 1)), "tools"),
        (req(tools=[{**TOOL, "name": "has space"}]), "tools[0].name"),
        (req(tools=[{**TOOL, "name": "x" * 129}]), "tools[0].name"),
        (req(tools=[{**TOOL, "type": "custom", "input_schema": None}]), "tools[0].input_schema"),
        (req(tools=[{**TOOL, "description": 1}]), "tools[0].description"),
        (req(tools=[{**TOOL, "cache_control": {"type": "ephemeral", "ttl": "1d"}}]), "tools[0].cache_control.ttl"),
        (req(tools=[{"type": 7}]), "tools[0].type"),
        (req(tool_choice="auto"), "tool_choice"),
        (req(tool_choice={"type": "required"}), "tool_choice.type"),
        (req(tool_choice={"type": "tool"}), "tool_choice.name"),
        (
            req(tool_choice={"type": "auto", "disable_parallel_tool_use": "yes"}),
            "tool_choice.disable_parallel_tool_use",
        ),
        (req(thinking={"type": "on"}), "thinking.type"),
        (req(thinking={"type": "enabled", "budget_tokens": 1023}), "thinking.budget_tokens"),
        (req(thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=1024), "thinking.budget_tokens"),
        (req(thinking={"type": "enabled"}), "thinking.budget_tokens"),
        (req(service_tier=1), "service_tier"),
        (req(cache_control={"ttl": "5m"}), "cache_control.type"),
        (req(output_config={"format": {"type": "json_schema"}}), "output_config.format.schema"),
    ],
)
def test_invalid_requests_name_the_field(payload: Any, param: str) -> None:
    assert refused(validate_messages_request, payload, BOUNDS).param == param


def test_stop_sequences_follow_a_larger_configured_bound() -> None:
    validate_messages_request(req(stop_sequences=["a"] * 64), RequestBounds(max_stop=64))
    bounds = RequestBounds(max_stop=64)
    assert refused(validate_messages_request, req(stop_sequences=["a"] * 257), bounds).param == "stop_sequences"


def test_count_tokens_requests_need_no_max_tokens_and_ignore_stream() -> None:
    validate_count_tokens_request({"model": "claude", "messages": USER, "stream": "x"}, BOUNDS)
    validate_count_tokens_request(
        {"model": "claude", "messages": USER, "thinking": {"type": "enabled", "budget_tokens": 2048}}, BOUNDS
    )
    assert refused(validate_count_tokens_request, {"model": "claude", "messages": []}, BOUNDS).param == "messages"
    assert (
        refused(validate_count_tokens_request, {"model": "c", "messages": USER, "tools": [{}]}, BOUNDS).param
        == "tools[0].name"
    )


# ---- Anthropic -> OpenAI chat --------------------------------------------------------------------


def test_to_chat_maps_every_supported_field() -> None:
    payload = req(
        system=[{"type": "text", "text": "a"}, {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}}],
        stop_sequences=["END"],
        temperature=0.5,
        top_p=0.9,
        top_k=40,
        metadata={"user_id": "u-1"},
        tools=[{**TOOL, "strict": True, "cache_control": {"type": "ephemeral"}}],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        thinking={"type": "enabled", "budget_tokens": 1024},
        service_tier="auto",
        stream=True,
        container="c",
        output_config={"effort": "high", "format": {"type": "json_schema", "schema": {"type": "object"}}},
    )
    out = to_chat(payload)
    assert out == {
        "model": "claude",
        "messages": [{"role": "system", "content": "a\n\nb"}, {"role": "user", "content": "hi"}],
        "max_tokens": 1024,
        "stop": ["END"],
        "temperature": 0.5,
        "top_p": 0.9,
        "user": "u-1",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "d",
                    "parameters": TOOL["input_schema"],
                    "strict": True,
                },
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": {"name": JSON_TOOL, "schema": {"type": "object"}}},
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    validate_chat(out)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "none"}, "none"),
        ({"type": "any"}, "required"),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_to_chat_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    out = to_chat(req(tools=[TOOL], tool_choice=choice))
    assert out["tool_choice"] == expected and "parallel_tool_calls" not in out


def test_to_chat_drops_tool_choice_without_tools() -> None:
    assert "tool_choice" not in to_chat(req(tool_choice={"type": "auto", "disable_parallel_tool_use": True}))


def test_to_chat_turns_blocks_into_messages() -> None:
    payload = turns(
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                PNG,
                {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "t", "signature": "s"},
                {"type": "text", "text": "calling"},
                USE,
            ],
        },
        {
            "role": "user",
            "content": [
                RESULT,
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "is_error": True,
                    "content": [{"type": "text", "text": "boom"}, PNG],
                },
                {"type": "tool_result", "tool_use_id": "toolu_3"},
                {"type": "text", "text": "and?"},
            ],
        },
        {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "x"}]},
        {
            "role": "user",
            "content": [
                {
                    "type": "document",
                    "title": "r.pdf",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                }
            ],
        },
        {
            "role": "user",
            "content": [{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain"}}],
        },
        {"role": "system", "content": [{"type": "text", "text": "sys"}]},
    )
    assert to_chat(payload)["messages"] == [
        {"role": "user", "content": "a\n\nb"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": "calling",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "12C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: boom"},
        {"role": "tool", "tool_call_id": "toolu_3", "content": ""},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "text", "text": "and?"},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "file", "file": {"filename": "r.pdf", "file_data": "data:application/pdf;base64,JVBE"}}
            ],
        },
        {"role": "user", "content": "plain"},
        {"role": "system", "content": "sys"},
    ]


def test_to_chat_tool_use_only_has_null_content() -> None:
    out = to_chat(turns(USER[0], {"role": "assistant", "content": [USE]}))
    assert out["messages"][1]["content"] is None and len(out["messages"][1]["tool_calls"]) == 1


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        (req(tools=[{"type": "web_search_20250305", "name": "web_search"}]), "tools[0].type"),
        (
            turns(
                USER[0],
                {"role": "assistant", "content": [{"type": "server_tool_use", "id": "s", "name": "web_search"}]},
            ),
            "messages[1].content[0].type",
        ),
        (turns({"role": "user", "content": [{"type": "search_result"}]}), "messages[0].content[0].type"),
        (
            turns({"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}),
            "messages[0].content[0].source.type",
        ),
        (
            turns(
                {"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}]}
            ),
            "messages[0].content[0].source.type",
        ),
        (turns({"role": "user", "content": [{"type": "document"}]}), "messages[0].content[0].source.type"),
        (
            turns(
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "search_result"}]}],
                }
            ),
            "messages[0].content[0].content[0].type",
        ),
    ],
)
def test_to_chat_refuses_what_has_no_chat_form(payload: dict[str, Any], param: str) -> None:
    err = refused(to_chat, payload)
    assert err.param == param and "no OpenAI chat form" in err.message


def test_every_table_entry_is_documented() -> None:
    doc = anthropic.__doc__ or ""
    for field in [*DROPPED_TO_OPENAI, *ANTHROPIC_RULES]:
        for name in field.replace("/", " ").replace(" and ", " ").split():
            assert name in doc, name
    assert set(ANTHROPIC_RULES.values()) == {"map", "refuse", "drop"}


# ---- OpenAI chat -> Anthropic --------------------------------------------------------------------


def test_from_chat_maps_every_supported_field() -> None:
    fn = {"name": "get_weather", "description": "d", "parameters": {"type": "object"}, "strict": True}
    payload = chat(
        max_completion_tokens=300,
        max_tokens=200,
        stop="END",
        temperature=1,
        top_p=0.5,
        user="u-1",
        tools=[{"type": "function", "function": fn}, {"type": "function", "function": {"name": "bare"}}],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
        stream=True,
        stream_options={"include_usage": True},
        seed=1,
        frequency_penalty=0.5,
        presence_penalty=0.5,
        service_tier="flex",
        store=True,
        metadata={"k": "v"},
        n=1,
        logprobs=False,
        top_logprobs=0,
        logit_bias={},
        modalities=["text"],
        response_format={"type": "text"},
        verbosity="low",
    )
    out, json_mode = from_chat(payload, "claude-x", 4096)
    assert json_mode is False
    assert out == {
        "model": "claude-x",
        "max_tokens": 300,
        "messages": USER,
        "stop_sequences": ["END"],
        "temperature": 1,
        "top_p": 0.5,
        "metadata": {"user_id": "u-1"},
        "tools": [
            {"name": "get_weather", "description": "d", "input_schema": {"type": "object"}},
            {"name": "bare", "input_schema": {"type": "object", "properties": {}}},
        ],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        "stream": True,
    }
    validate_messages_request(out, BOUNDS)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"tool_choice": "auto"}, {"type": "auto"}),
        ({"tool_choice": "required"}, {"type": "any"}),
        ({"tool_choice": "none"}, {"type": "none"}),
        ({"parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
        ({"tool_choice": "none", "parallel_tool_calls": False}, {"type": "none"}),
        ({"parallel_tool_calls": True}, None),
    ],
)
def test_from_chat_tool_choice(fields: dict[str, Any], expected: Any) -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    out, _ = from_chat(chat(tools=tools, **fields), "c", 64)
    assert out.get("tool_choice") == expected


def test_from_chat_without_tools_sends_no_tool_choice() -> None:
    out, _ = from_chat(chat(tool_choice="auto", parallel_tool_calls=False), "c", 64)
    assert "tool_choice" not in out and "tools" not in out


def test_from_chat_turns() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    messages = [
        {"role": "system", "content": "one"},
        {"role": "user", "content": "hi"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "again"},
                {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklG"}},
            ],
        },
        {"role": "developer", "content": [{"type": "text", "text": "two"}, {"type": "text", "text": "three"}]},
        {
            "role": "assistant",
            "content": "sure",
            "tool_calls": [call, {**call, "id": "call_2", "function": {"name": "g", "arguments": ""}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "x"}]},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}, {"type": "text", "text": ""}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "part"}, {"type": "refusal", "refusal": "no"}]},
        {"role": "assistant", "content": None, "tool_calls": [{**call, "id": "call_3"}]},
        {"role": "tool", "tool_call_id": "call_3", "content": ""},
        {"role": "user", "content": [{"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE"}}]},
        {"role": "assistant", "content": ""},
    ]
    out, _ = from_chat(chat(messages=messages), "c", 64)
    assert out["system"] == "one\n\ntwo\n\nthree"
    assert out["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "text", "text": "again"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/webp", "data": "UklG"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "sure"},
                {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
                {"type": "tool_use", "id": "call_2", "name": "g", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "42"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "x"}]},
                {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "part\n\nno"},
                {"type": "tool_use", "id": "call_3", "name": "f", "input": {"a": 1}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_3"},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
            ],
        },
    ]
    validate_messages_request(out, BOUNDS)


def test_from_chat_puts_tool_results_first_when_a_user_turn_precedes_them() -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "c", "content": "r"}]
    out, _ = from_chat(chat(messages=messages), "c", 64)
    assert [b["type"] for b in out["messages"][0]["content"]] == ["tool_result", "text"]


@pytest.mark.parametrize(
    ("fmt", "schema"),
    [
        ({"type": "json_object"}, {"type": "object"}),
        (
            {
                "type": "json_schema",
                "json_schema": {"name": "out", "schema": {"properties": {"a": {"type": "string"}}}},
            },
            {"type": "object", "properties": {"a": {"type": "string"}}},
        ),
        ({"type": "json_schema", "json_schema": {"name": "out"}}, {"type": "object"}),
    ],
)
def test_from_chat_json_mode_forces_the_json_tool(fmt: dict[str, Any], schema: dict[str, Any]) -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    out, json_mode = from_chat(chat(response_format=fmt, tools=tools, tool_choice="auto"), "c", 64)
    assert json_mode is True
    assert out["tools"][-1]["name"] == JSON_TOOL and out["tools"][-1]["input_schema"] == schema
    assert out["tool_choice"] == {"type": "tool", "name": JSON_TOOL}


@pytest.mark.parametrize(
    ("effort", "most", "thinking"),
    [("low", 2000, 1024), ("medium", 5000, 4096), ("high", 20000, 16384), ("none", 64, None), ("minimal", 64, None)],
)
def test_from_chat_reasoning_effort(effort: str, most: int, thinking: int | None) -> None:
    out, _ = from_chat(chat(reasoning_effort=effort, max_tokens=most), "c", 64)
    expected = None if thinking is None else {"type": "enabled", "budget_tokens": thinking}
    assert out.get("thinking") == expected


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        (chat(n=2), "n"),
        (chat(logprobs=True), "logprobs"),
        (chat(top_logprobs=3), "top_logprobs"),
        (chat(logit_bias={"1": 5}), "logit_bias"),
        (chat(audio={"voice": "alloy", "format": "wav"}), "audio"),
        (chat(modalities=["text", "audio"]), "modalities"),
        (chat(prediction={"type": "content", "content": "x"}), "prediction"),
        (chat(web_search_options={}), "web_search_options"),
        (chat(functions=[{"name": "f"}]), "functions"),
        (chat(function_call="auto"), "function_call"),
        (chat(temperature=1.2), "temperature"),
        (chat(reasoning_effort="high"), "reasoning_effort"),
        (chat(reasoning_effort="low", max_tokens=1024), "reasoning_effort"),
        (chat(reasoning_effort="low", max_tokens=4096, response_format={"type": "json_object"}), "reasoning_effort"),
        (chat(reasoning_effort="turbo", max_tokens=4096), "reasoning_effort"),
        (chat(messages=[{"role": "function", "name": "f", "content": "x"}]), "messages[0].role"),
        (
            chat(messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]),
            "messages[0].content[0].type",
        ),
        (
            chat(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}],
                    }
                ]
            ),
            "messages[0].content[0].image_url.url",
        ),
        (
            chat(
                messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]
            ),
            "messages[0].content[0].image_url.url",
        ),
        (
            chat(messages=[{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]),
            "messages[0].content[0].file",
        ),
        (
            chat(
                messages=[
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}],
                    }
                ]
            ),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            chat(
                messages=[
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{"}}],
                    }
                ]
            ),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            chat(
                messages=[
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "type": "custom", "custom": {"name": "f", "input": ""}}],
                    }
                ]
            ),
            "messages[0].tool_calls[0].type",
        ),
        (
            chat(messages=[{"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}}]),
            "messages[0].function_call",
        ),
        (chat(tools=[{"type": "custom", "custom": {"name": "grep"}}]), "tools[0].type"),
        (
            chat(
                tools=[{"type": "function", "function": {"name": "f"}}],
                tool_choice={"type": "allowed_tools", "allowed_tools": {}},
            ),
            "tool_choice.type",
        ),
        (
            chat(response_format={"type": "json_schema", "json_schema": {"name": "o", "schema": {"type": "array"}}}),
            "response_format.json_schema.schema",
        ),
    ],
)
def test_from_chat_refusals_name_the_field(payload: dict[str, Any], param: str) -> None:
    assert refused(from_chat, payload, "c", 4096).param == param


# ---- whole answers -------------------------------------------------------------------------------


def message(content: list[dict[str, Any]], stop: str | None = "end_turn", **fields: Any) -> bytes:
    usage = {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 2}
    body = {
        "id": "msg_up",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
        **fields,
    }
    return orjson.dumps(body)


def test_reply_to_chat_full_answer() -> None:
    content = [
        {"type": "thinking", "thinking": "hmm", "signature": "s"},
        {"type": "redacted_thinking", "data": "x"},
        {"type": "text", "text": "The answer "},
        {"type": "text", "text": "is 4.", "citations": []},
        {"type": "tool_use", "id": "toolu_1", "name": "calc", "input": {"x": 2}},
    ]
    out = orjson.loads(reply_to_chat(message(content, "tool_use"), "r1", "client-model"))
    assert out["id"] == "chatcmpl-r1" and out["object"] == "chat.completion" and type(out["created"]) is int
    assert out["model"] == "claude-x"
    assert out["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "The answer is 4.",
                "refusal": None,
                "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "calc", "arguments": '{"x":2}'}}
                ],
                "reasoning_content": "hmm",
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ]
    assert out["usage"] == {
        "prompt_tokens": 15,
        "completion_tokens": 5,
        "total_tokens": 20,
        "prompt_tokens_details": {"cached_tokens": 3},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
        (None, "stop"),
        ("novel_reason", "stop"),
    ],
)
def test_reply_to_chat_finish_reason(stop: str | None, finish: str) -> None:
    out = orjson.loads(reply_to_chat(message([], stop), "r", "m"))
    assert out["choices"][0]["finish_reason"] == finish
    assert out["choices"][0]["message"]["content"] is None and "tool_calls" not in out["choices"][0]["message"]


def test_reply_to_chat_json_mode_answers_with_the_tool_input() -> None:
    content = [{"type": "tool_use", "id": "toolu_1", "name": JSON_TOOL, "input": {"a": [1, 2]}}]
    out = orjson.loads(reply_to_chat(message(content, "tool_use", model=None), "r", "client-model", json_mode=True))
    choice = out["choices"][0]
    assert choice["message"]["content"] == '{"a":[1,2]}' and "tool_calls" not in choice["message"]
    assert choice["finish_reason"] == "stop" and out["model"] == "client-model"
    plain = orjson.loads(reply_to_chat(message(content, "tool_use"), "r", "m"))
    assert plain["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == JSON_TOOL


def test_reply_to_chat_reads_thinking_tokens_and_bad_numbers_as_zero() -> None:
    body = message([], usage={"input_tokens": -1, "output_tokens": 9, "output_tokens_details": {"thinking_tokens": 4}})
    usage = orjson.loads(reply_to_chat(body, "r", "m"))["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["completion_tokens_details"]) == (
        0,
        9,
        {"reasoning_tokens": 4},
    )


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'"x"'])
def test_reply_to_chat_refuses_what_is_not_a_message(body: bytes) -> None:
    with pytest.raises(GatewayError) as info:
        reply_to_chat(body, "r", "m")
    assert info.value.kind is ErrorKind.UPSTREAM_PROTOCOL and info.value.status == 502


def completion(message: dict[str, Any], finish: str | None = "stop", **fields: Any) -> bytes:
    usage = {
        "prompt_tokens": 20,
        "completion_tokens": 7,
        "total_tokens": 27,
        "prompt_tokens_details": {"cached_tokens": 5},
    }
    body = {
        "id": "chatcmpl-up",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-x",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
        "usage": usage,
        **fields,
    }
    return orjson.dumps(body)


def test_reply_from_chat_full_answer() -> None:
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "calc", "arguments": '{"x": 2}'}},
        {"id": "call_2", "type": "function", "function": {"name": "bad", "arguments": "{not json"}},
        {"id": "call_3", "type": "function", "function": {"name": "list", "arguments": "[1]"}},
    ]
    body = completion({"content": "4", "reasoning_content": "hmm", "tool_calls": calls}, "tool_calls")
    out = orjson.loads(reply_from_chat(body, "r1", "claude-client"))
    assert out == {
        "id": "msg_r1",
        "type": "message",
        "role": "assistant",
        "model": "gpt-x",  # the upstream's own name, as a stream gives it
        "content": [
            {"type": "text", "text": "4"},
            {"type": "tool_use", "id": "call_1", "name": "calc", "input": {"x": 2}},
            {"type": "tool_use", "id": "call_2", "name": "bad", "input": {}},
            {"type": "tool_use", "id": "call_3", "name": "list", "input": {}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 15,
            "output_tokens": 7,
            "cache_read_input_tokens": 5,
            "cache_creation_input_tokens": 0,
        },
    }


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_reply_from_chat_stop_reason(finish: str | None, stop: str) -> None:
    out = orjson.loads(reply_from_chat(completion({"content": "x"}, finish), "r", "m"))
    assert out["stop_reason"] == stop


def test_reply_from_chat_refusal_and_tool_calls_under_stop() -> None:
    out = orjson.loads(reply_from_chat(completion({"content": None, "refusal": "I can't."}), "r", "m"))
    assert out["content"] == [{"type": "text", "text": "I can't."}] and out["stop_reason"] == "refusal"
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    out = orjson.loads(reply_from_chat(completion({"content": None, "tool_calls": [call]}, "stop"), "r", "m"))
    assert out["stop_reason"] == "tool_use" and out["content"][0]["type"] == "tool_use"


def test_reply_from_chat_without_usage_and_with_cache_writes() -> None:
    out = orjson.loads(reply_from_chat(completion({"content": ""}, usage=None), "r", "m"))
    assert out["content"] == [] and out["usage"] == {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }
    usage = {
        "prompt_tokens": 20,
        "completion_tokens": 1,
        "prompt_tokens_details": {"cached_tokens": 5, "cache_write_tokens": 10},
    }
    out = orjson.loads(reply_from_chat(completion({"content": "x"}, usage=usage), "r", "m"))
    assert out["usage"]["input_tokens"] == 5 and out["usage"]["cache_creation_input_tokens"] == 10


@pytest.mark.parametrize("body", [b"{", b"[]", b'{"choices": []}', b'{"choices": [{"message": "x"}]}'])
def test_reply_from_chat_refuses_what_is_not_a_completion(body: bytes) -> None:
    with pytest.raises(GatewayError) as info:
        reply_from_chat(body, "r", "m")
    assert info.value.kind is ErrorKind.UPSTREAM_PROTOCOL


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (message([]), (15, 5, 3, 0, 2)),
        (b'{"usage": {"input_tokens": 7, "output_tokens": 1}}', (7, 1, 0, 0, 0)),
        (
            b'{"usage": {"input_tokens": 1e3, "output_tokens": 9007199254740993, "cache_read_input_tokens": true}}',
            (0, 0, 0, 0, 0),
        ),
        (
            b'{"usage": {"input_tokens": 1, "output_tokens": 8, "output_tokens_details": {"thinking_tokens": 6}}}',
            (1, 8, 0, 6, 0),
        ),
        (b'{"usage": null}', None),
        (b"[]", None),
        (b"nope", None),
    ],
)
def test_usage_of_message(body: bytes, expected: tuple[int, ...] | None) -> None:
    assert usage_of_message(body) == expected


# ---- counting ------------------------------------------------------------------------------------


def test_count_prompt_counts_text_tools_and_fixed_estimates() -> None:
    payload = req(
        system="You are terse.",
        tools=[TOOL],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "weather?"}, PNG]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "long " * 50, "signature": "s"}, USE]},
            {
                "role": "user",
                "content": [
                    RESULT,
                    {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "dry"}, PNG]},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}}
                ],
            },
        ],
    )
    texts = [
        "You are terse.",
        "weather?",
        'get_weather {"city":"Oslo"}',
        "12C",
        "dry",
        "doc",
        orjson.dumps(TOOL).decode(),
    ]
    expected = _core.count_tokens("\n".join(texts), "cl100k_base")
    expected += REPLY_TOKENS + 4 * MESSAGE_TOKENS + 2 * IMAGE_TOKENS + TOOLS_TOKENS
    assert count_prompt(payload, "cl100k_base") == expected


def test_count_prompt_grows_with_the_text() -> None:
    short = count_prompt(req(), "o200k_base")
    long = count_prompt(req(messages=[{"role": "user", "content": "hi " * 100}]), "o200k_base")
    assert short == _core.count_tokens("hi", "o200k_base") + REPLY_TOKENS + MESSAGE_TOKENS
    assert long > short + 90


# ---- the round trip: Anthropic -> chat -> Anthropic ----------------------------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
_ID = st.from_regex(r"toolu_[a-z0-9]{4}", fullmatch=True)
_NAME = st.from_regex(r"[a-zA-Z0-9_-]{1,20}", fullmatch=True)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**31), 2**31) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)
_TEXT_BLOCK = st.builds(lambda t: {"type": "text", "text": t}, _TEXT)
_CACHED_TEXT = st.builds(lambda t: {"type": "text", "text": t, "cache_control": {"type": "ephemeral"}}, _TEXT)
_IMAGE = st.one_of(
    st.builds(
        lambda mt, data: {"type": "image", "source": {"type": "base64", "media_type": mt, "data": data}},
        st.sampled_from(sorted(["image/jpeg", "image/png", "image/gif", "image/webp"])),
        st.from_regex(r"[A-Za-z0-9+/]{4,16}={0,2}", fullmatch=True),
    ),
    st.builds(lambda p: {"type": "image", "source": {"type": "url", "url": f"https://img.example/{p}.png"}}, _NAME),
)
_RESULT = st.builds(
    lambda i, c: {"type": "tool_result", "tool_use_id": i, **({} if c is None else {"content": c})},
    _ID,
    st.none() | _TEXT | st.lists(_TEXT_BLOCK, min_size=1, max_size=2),
)
_USE = st.builds(
    lambda i, n, a: {"type": "tool_use", "id": i, "name": n, "input": a},
    _ID,
    _NAME,
    st.dictionaries(_TEXT, _JSON, max_size=3),
)
_THINKING = st.just({"type": "thinking", "thinking": "t", "signature": "sig"})


@st.composite
def _user(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        return {"role": "user", "content": draw(_TEXT)}
    results = draw(st.lists(_RESULT, max_size=2))
    rest = draw(st.lists(_TEXT_BLOCK | _CACHED_TEXT | _IMAGE, min_size=0 if results else 1, max_size=3))
    return {"role": "user", "content": results + rest}


@st.composite
def _assistant(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        return {"role": "assistant", "content": draw(_TEXT)}
    texts = draw(st.lists(_TEXT_BLOCK, max_size=2))
    uses = draw(st.lists(_USE, min_size=0 if texts else 1, max_size=2))
    thinking = draw(st.lists(_THINKING, max_size=1))
    return {"role": "assistant", "content": thinking + texts + uses}


@st.composite
def _requests(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 6))
    messages = [draw(_user()) if i % 2 == 0 else draw(_assistant()) for i in range(count)]
    payload: dict[str, Any] = {"model": "claude", "max_tokens": draw(st.integers(1, 100_000)), "messages": messages}
    system = draw(st.none() | _TEXT | st.lists(_TEXT_BLOCK | _CACHED_TEXT, min_size=1, max_size=2))
    if system is not None:
        payload["system"] = system
    tools = draw(
        st.lists(
            st.builds(
                lambda n, d: {
                    "name": n,
                    **({} if d is None else {"description": d}),
                    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
                },
                _NAME,
                st.none() | _TEXT,
            ),
            max_size=3,
            unique_by=lambda t: t["name"],
        )
    )
    if tools:
        payload["tools"] = tools
        kinds = [{"type": "auto"}, {"type": "any"}, {"type": "none"}, {"type": "tool", "name": tools[0]["name"]}]
        choice = draw(st.none() | st.sampled_from(kinds))
        if choice is not None:
            if choice["type"] != "none" and draw(st.booleans()):
                choice = {**choice, "disable_parallel_tool_use": draw(st.booleans())}
            payload["tool_choice"] = choice
    optional = {
        "stop_sequences": st.lists(_TEXT, min_size=1, max_size=4),
        "temperature": st.floats(0, 1),
        "top_p": st.floats(0, 1),
        "top_k": st.integers(0, 500),
        "metadata": st.builds(lambda u: {"user_id": u}, _NAME),
        "stream": st.booleans(),
    }
    for field, strategy in optional.items():
        if draw(st.booleans()):
            payload[field] = draw(strategy)
    return payload


def _blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A turn's content modulo the documented drops: no thinking or cache_control, adjacent texts joined."""
    blocks: list[dict[str, Any]] = []
    for block in [{"type": "text", "text": content}] if isinstance(content, str) else content:
        if block["type"] in ("thinking", "redacted_thinking"):
            continue
        block = {k: v for k, v in block.items() if k != "cache_control"}
        if block["type"] == "tool_result":
            inner = block.pop("content", "")
            block["content"] = inner if isinstance(inner, str) else "\n\n".join(b["text"] for b in inner)
        if block["type"] == "text" and blocks and blocks[-1]["type"] == "text":
            blocks[-1] = {"type": "text", "text": blocks[-1]["text"] + "\n\n" + block["text"]}
        else:
            blocks.append(block)
    return blocks


def _system(system: Any) -> str | None:
    if system is None or isinstance(system, str):
        return system
    return "\n\n".join(block["text"] for block in system)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=_requests())
def test_to_chat_then_from_chat_gives_the_request_back(payload: dict[str, Any]) -> None:
    validate_messages_request(payload, BOUNDS)
    hub = to_chat(payload)
    validate_chat(hub)
    back, json_mode = from_chat(hub, "claude", 4096)
    validate_messages_request(back, BOUNDS)
    assert json_mode is False
    assert [(m["role"], _blocks(m["content"])) for m in back["messages"]] == [
        (m["role"], _blocks(m["content"])) for m in payload["messages"]
    ]
    assert back.get("system") == _system(payload.get("system"))
    tools = [{k: v for k, v in t.items() if k != "cache_control"} for t in payload.get("tools", [])]
    assert back.get("tools") == (tools or None)
    choice = payload.get("tool_choice")
    if choice is not None and choice.get("disable_parallel_tool_use") is False:
        choice = {k: v for k, v in choice.items() if k != "disable_parallel_tool_use"}
    assert back.get("tool_choice") == choice
    for field in ("max_tokens", "stop_sequences", "temperature", "top_p", "metadata"):
        assert back.get(field) == payload.get(field), field
    assert back.get("stream", False) == payload.get("stream", False)
    assert "top_k" not in back
