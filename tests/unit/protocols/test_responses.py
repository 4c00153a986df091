"""The Responses protocol: field checks, the translation to chat and back, usage and the counted text."""

from __future__ import annotations

from typing import Any

import httpx2
import openai
import orjson
import pytest
from openai.types.responses import Response

from ferrogate.config.model import RequestBounds
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.protocols.responses import (
    CHAT_RULES,
    prompt_text,
    reply_from_chat,
    to_chat,
    usage_of_response,
    validate_responses_request,
)

BOUNDS = RequestBounds(max_messages=4, max_tools=2, max_output_tokens=1000)
TOOL = {"type": "function", "name": "get_weather", "description": "Weather.", "parameters": {"type": "object"}}
CALL = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'}


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "input": "hi", **fields}


def items(*entries: Any) -> dict[str, Any]:
    return {"model": "m", "input": list(entries)}


# ---- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        body(),
        body(instructions="Be brief.", max_output_tokens=16, temperature=2, top_p=0, stream=True, store=False),
        body(instructions=None, max_output_tokens=None, temperature=None, unknown_field={"x": 1}),
        body(tools=[TOOL, {"type": "web_search"}], tool_choice="required", parallel_tool_calls=False),
        body(tool_choice={"type": "function", "name": "get_weather"}),
        body(tool_choice={"type": "allowed_tools", "mode": "auto", "tools": []}),
        body(metadata={"k": "v"}, user="u-1", previous_response_id="resp_1", truncation="auto"),
        body(text={"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}}),
        body(text={"format": {"type": "json_object"}, "verbosity": "low"}, reasoning={"effort": "high"}),
        body(reasoning={"effort": None, "summary": "auto"}, stream_options={"include_obfuscation": False}),
        {"model": "m", "previous_response_id": "resp_1"},
        items(
            {"role": "user", "content": "hi"},
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "ok", "annotations": []}]},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
        ),
        items(
            {"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]},
            {"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]},
            {"role": "user", "content": [{"type": "input_file", "file_id": "file_2", "filename": "a.pdf"}]},
        ),
        items(
            CALL,
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "call_1", "output": [{"type": "input_text", "text": "t"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
        ),
        items({"type": "item_reference", "id": "msg_1"}),
    ],
)
def test_valid_requests_pass(payload: dict[str, Any]) -> None:
    validate_responses_request(payload, BOUNDS)


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ([], ""),
        ({"input": "hi"}, "model"),
        ({"model": "", "input": "hi"}, "model"),
        ({"model": "m" * 257, "input": "hi"}, "model"),
        ({"model": "m"}, "input"),
        (body(input=5), "input"),
        (items(*[{"role": "user", "content": "x"}] * 5), "input"),
        (items("hi"), "input[0]"),
        (items({"role": "tool", "content": "x"}), "input[0].role"),
        (items({"content": "x"}), "input[0].role"),
        (items({"role": "user", "content": 3}), "input[0].content"),
        (items({"role": "user", "content": [{"type": "text", "text": "x"}]}), "input[0].content[0].type"),
        (items({"role": "user", "content": [{"type": ["x"]}]}), "input[0].content[0].type"),
        (items({"role": "user", "content": [{"type": "input_text"}]}), "input[0].content[0].text"),
        (items({"role": "user", "content": [{"type": "input_image"}]}), "input[0].content[0].image_url"),
        (
            items({"role": "user", "content": [{"type": "input_image", "image_url": "u", "detail": "max"}]}),
            "input[0].content[0].detail",
        ),
        (items({"role": "assistant", "content": [{"type": "refusal"}]}), "input[0].content[0].refusal"),
        (items({**CALL, "call_id": 1}), "input[0].call_id"),
        (items({**CALL, "name": "has space"}), "input[0].name"),
        (items({**CALL, "arguments": {"city": "Paris"}}), "input[0].arguments"),
        (items({"type": "function_call_output", "call_id": "c", "output": None}), "input[0].output"),
        (items({"type": "function_call_output", "call_id": "c", "output": [{"type": "x"}]}), "input[0].output[0].type"),
        (items({"type": 7}), "input[0].type"),
        (body(instructions=["x"]), "instructions"),
        (body(max_output_tokens=15), "max_output_tokens"),
        (body(max_output_tokens=1001), "max_output_tokens"),
        (body(max_output_tokens=True), "max_output_tokens"),
        (body(max_output_tokens=100.0), "max_output_tokens"),
        (body(temperature=2.1), "temperature"),
        (body(temperature=False), "temperature"),
        (body(top_p=-0.1), "top_p"),
        (body(stream=1), "stream"),
        (body(stream_options=[]), "stream_options"),
        (body(tools={}), "tools"),
        (body(tools=[TOOL] * 3), "tools"),
        (body(tools=[None]), "tools[0]"),
        (body(tools=[{"name": "f"}]), "tools[0].type"),
        (body(tools=[{**TOOL, "name": ""}]), "tools[0].name"),
        (body(tools=[{**TOOL, "parameters": "{}"}]), "tools[0].parameters"),
        (body(tools=[{**TOOL, "strict": "yes"}]), "tools[0].strict"),
        (body(tools=[{**TOOL, "description": 1}]), "tools[0].description"),
        (body(tool_choice="any"), "tool_choice"),
        (body(tool_choice={"type": "function"}), "tool_choice.name"),
        (body(tool_choice={"name": "f"}), "tool_choice.type"),
        (body(parallel_tool_calls="true"), "parallel_tool_calls"),
        (body(metadata={str(i): "v" for i in range(17)}), "metadata"),
        (body(metadata={"k": 1}), "metadata.k"),
        (body(metadata={"k" * 65: "v"}), "metadata"),
        (body(user=1), "user"),
        (body(user="u" * 513), "user"),
        (body(store="no"), "store"),
        (body(previous_response_id=1), "previous_response_id"),
        (body(text="json"), "text"),
        (body(text={"format": {"type": "xml"}}), "text.format.type"),
        (body(text={"format": {"type": "json_schema", "schema": {}}}), "text.format.name"),
        (body(text={"format": {"type": "json_schema", "name": "o"}}), "text.format.schema"),
        (body(text={"format": {"type": "json_schema", "name": "o", "schema": {}, "strict": 1}}), "text.format.strict"),
        (body(text={"verbosity": "loud"}), "text.verbosity"),
        (body(reasoning={"effort": "extreme"}), "reasoning.effort"),
        (body(reasoning={"summary": "long"}), "reasoning.summary"),
        (body(truncation="always"), "truncation"),
    ],
)
def test_invalid_requests_name_the_field(payload: Any, param: str) -> None:
    with pytest.raises(GatewayError) as err:
        validate_responses_request(payload, BOUNDS)
    assert (err.value.kind, err.value.status, err.value.param) == (ErrorKind.INVALID_FIELD, 400, param)
    if param:
        assert param.split("[")[0].split(".")[0] in err.value.message


# ---- to chat -------------------------------------------------------------------------------------


def test_a_string_input_with_instructions_and_sampling() -> None:
    payload = body(
        instructions="Be brief.",
        max_output_tokens=64,
        temperature=0.5,
        top_p=0.9,
        parallel_tool_calls=False,
        user="u",
        metadata={"k": "v"},
        store=True,
        truncation="auto",
        include=["reasoning.encrypted_content"],
        reasoning={"effort": "low", "summary": "auto"},
        stream=False,
    )
    assert to_chat(payload) == {
        "model": "m",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "max_completion_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.9,
        "parallel_tool_calls": False,
        "user": "u",
        "metadata": {"k": "v"},
        "reasoning_effort": "low",
        "stream": False,
    }


def test_instructions_come_first_whatever_the_key_order() -> None:
    chat = to_chat({"input": "hi", "model": "m", "instructions": "sys"})
    assert chat["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]


def test_stream_asks_for_usage() -> None:
    chat = to_chat(body(stream=True))
    assert (chat["stream"], chat["stream_options"]) == (True, {"include_usage": True})


def test_message_items_and_parts() -> None:
    payload = items(
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "look"},
                {"type": "input_image", "image_url": "https://x/y.png", "detail": "original"},
                {"type": "input_image", "image_url": "data:image/png;base64,AA=="},
                {"type": "input_file", "file_id": "file_1", "filename": "a.pdf"},
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "output_text", "text": "a", "annotations": []}, {"type": "refusal", "refusal": "b"}],
        },
        {"role": "system", "content": []},
    )
    assert to_chat(payload)["messages"] == [
        {"role": "developer", "content": "rules"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA==", "detail": "auto"}},
                {"type": "file", "file": {"file_id": "file_1", "filename": "a.pdf"}},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "refusal", "refusal": "b"}]},
        {"role": "system", "content": ""},
    ]


def test_function_calls_merge_into_the_turns_assistant_message() -> None:
    second = {**CALL, "call_id": "call_2", "arguments": "{}"}
    payload = items(
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "Checking."},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        CALL,
        second,
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "rain"}]},
        CALL,
    )
    tool_call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    assert to_chat(payload)["messages"] == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                tool_call,
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rain"}]},
        {"role": "assistant", "content": None, "tool_calls": [tool_call]},
    ]


@pytest.mark.parametrize(
    ("tool_choice", "chat_choice"),
    [
        ("required", "required"),
        ({"type": "function", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
        (
            {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "get_weather"}]},
            {
                "type": "allowed_tools",
                "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": "get_weather"}}]},
            },
        ),
    ],
)
def test_tools_and_tool_choice(tool_choice: Any, chat_choice: Any) -> None:
    chat = to_chat(body(tools=[{**TOOL, "strict": True}], tool_choice=tool_choice))
    function = {"name": "get_weather", "description": "Weather.", "parameters": {"type": "object"}, "strict": True}
    assert chat["tools"] == [{"type": "function", "function": function}]
    assert chat["tool_choice"] == chat_choice


@pytest.mark.parametrize(
    ("text", "response_format"),
    [
        ({"format": {"type": "text"}}, {"type": "text"}),
        ({"format": {"type": "json_object"}}, {"type": "json_object"}),
        (
            {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}},
            {"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True}},
        ),
    ],
)
def test_text_format_becomes_response_format(text: dict[str, Any], response_format: dict[str, Any]) -> None:
    assert to_chat(body(text=text))["response_format"] == response_format


def test_verbosity_is_kept() -> None:
    assert to_chat(body(text={"verbosity": "low"}))["verbosity"] == "low"


@pytest.mark.parametrize(
    ("payload", "param", "words"),
    [
        (body(previous_response_id="resp_1"), "previous_response_id", "does not store responses"),
        (body(conversation="conv_1"), "conversation", "does not store responses"),
        (body(prompt={"id": "pmpt_1"}), "prompt", "prompt templates"),
        (body(tools=[TOOL, {"type": "web_search"}]), "tools[1].type", "not supported by chat-completions upstreams"),
        (body(tool_choice={"type": "web_search"}), "tool_choice.type", "not supported"),
        (
            body(tool_choice={"type": "allowed_tools", "mode": "auto", "tools": [{"type": "mcp"}]}),
            "tool_choice.type",
            "",
        ),
        (items({"type": "item_reference", "id": "msg_1"}), "input[0].type", "item_reference"),
        (items(), "input", "no message"),
        (items({"type": "reasoning", "id": "rs_1", "summary": []}), "input", "no message"),
        (
            items({"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}),
            "input[0].content[0].file_id",
            "file_id",
        ),
        (
            items({"role": "user", "content": [{"type": "input_file", "file_url": "https://x"}]}),
            "input[0].content[0].file_url",
            "file_url",
        ),
        (
            items({"role": "system", "content": [{"type": "input_image", "image_url": "u"}]}),
            "input[0].content[0].type",
            "system messages",
        ),
        (
            items({"role": "user", "content": [{"type": "refusal", "refusal": "no"}]}),
            "input[0].content[0].type",
            "user messages",
        ),
        (
            items(
                {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_image", "image_url": "u"}]}
            ),
            "input[0].output[0].type",
            "only be text",
        ),
    ],
)
def test_what_chat_cannot_serve_is_refused(payload: dict[str, Any], param: str, words: str) -> None:
    validate_responses_request(payload, BOUNDS)
    with pytest.raises(GatewayError) as err:
        to_chat(payload)
    assert (err.value.status, err.value.param) == (400, param)
    assert words in err.value.message


def test_the_rules_table_covers_the_translated_fields() -> None:
    assert {"instructions", "input", "max_output_tokens", "tools", "tool_choice", "text", "stream"} <= set(CHAT_RULES)
    assert not {"store", "truncation", "include"} & set(CHAT_RULES)


# ---- the answer ----------------------------------------------------------------------------------

CHAT_ANSWER: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 20,
        "completion_tokens": 8,
        "total_tokens": 28,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 2},
    },
}


def test_reply_from_chat_is_an_sdk_response() -> None:
    out = orjson.loads(reply_from_chat(orjson.dumps(CHAT_ANSWER), "abc", "my-model"))
    response = Response.model_validate(out)
    assert (response.id, response.object, response.status, response.model) == (
        "resp_abc",
        "response",
        "completed",
        "gpt-4o-mini-2024-07-18",  # the upstream's own name, as a stream gives it
    )
    assert response.created_at == 1_700_000_000
    assert response.output_text == "Let me check."
    assert out["output"] == [
        {
            "id": "msg_abc_0",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Let me check.", "annotations": []}],
        },
        {
            "id": "fc_abc_1",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_9",
            "name": "get_weather",
            "arguments": "{}",
        },
    ]
    assert out["usage"] == {
        "input_tokens": 20,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 8,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 28,
    }
    assert (out["tool_choice"], out["tools"], out["parallel_tool_calls"], out["temperature"]) == (
        "auto",
        [],
        True,
        None,
    )
    assert usage_of_response(orjson.dumps(out)) == (20, 8, 4, 2)


def test_reply_echoes_the_request() -> None:
    request = body(tools=[TOOL], tool_choice={"type": "function", "name": "get_weather"}, temperature=0.3, top_p=0.5)
    request.update(parallel_tool_calls=False, instructions="sys", max_output_tokens=99, metadata={"k": "v"})
    out = orjson.loads(reply_from_chat(orjson.dumps(CHAT_ANSWER), "abc", "m", request=request))
    response = Response.model_validate(out)
    assert response.tools[0].name == "get_weather"  # type: ignore[union-attr]
    assert (out["tool_choice"], out["temperature"], out["top_p"]) == (request["tool_choice"], 0.3, 0.5)
    assert (response.parallel_tool_calls, response.instructions, response.max_output_tokens) == (False, "sys", 99)
    assert response.metadata == {"k": "v"}


@pytest.mark.parametrize(("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")])
def test_a_cut_answer_is_incomplete(finish: str, reason: str) -> None:
    answer = {"created": 1, "choices": [{"message": {"content": "partial"}, "finish_reason": finish}]}
    out = orjson.loads(reply_from_chat(orjson.dumps(answer), "r", "m"))
    response = Response.model_validate(out)
    assert (response.status, response.incomplete_details and response.incomplete_details.reason) == (
        "incomplete",
        reason,
    )
    assert out["output"][0]["status"] == "incomplete"
    assert out["usage"] is None


def test_a_refusal_and_text_parts() -> None:
    answer = {
        "choices": [
            {
                "message": {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "refusal": "no"},
                "finish_reason": ["odd"],
            }
        ]
    }
    out = orjson.loads(reply_from_chat(orjson.dumps(answer), "r", "m"))
    response = Response.model_validate(out)
    assert response.status == "completed" and type(out["created_at"]) is int
    assert out["output"][0]["content"] == [
        {"type": "output_text", "text": "ab", "annotations": []},
        {"type": "refusal", "refusal": "no"},
    ]


def test_an_empty_answer_has_no_output_items() -> None:
    answer = {"choices": [{"message": {"content": None}, "finish_reason": "stop"}]}
    out = orjson.loads(reply_from_chat(orjson.dumps(answer), "r", "m"))
    assert Response.model_validate(out).output == []


@pytest.mark.parametrize("answer", [b"not json", b"[]", b'{"choices": []}', b'{"choices": [{"message": "x"}]}'])
def test_a_bad_upstream_answer_is_a_502(answer: bytes) -> None:
    with pytest.raises(GatewayError) as err:
        reply_from_chat(answer, "r", "m")
    assert (err.value.kind, err.value.status) == (ErrorKind.UPSTREAM_PROTOCOL, 502)


def test_the_openai_client_reads_the_reply() -> None:
    """The SDK itself, over HTTP, reads the translated answer (a fake gateway behind httpx's mock transport)."""
    sent: list[dict[str, Any]] = []

    def gateway(request: httpx2.Request) -> httpx2.Response:
        payload = orjson.loads(request.content)
        validate_responses_request(payload, RequestBounds())
        sent.append(to_chat(payload))
        return httpx2.Response(
            200, content=reply_from_chat(orjson.dumps(CHAT_ANSWER), "r1", payload["model"], request=payload)
        )

    with httpx2.Client(transport=httpx2.MockTransport(gateway)) as http:
        client = openai.OpenAI(api_key="k", base_url="http://gateway/v1", http_client=http)
        response = client.responses.create(model="m", input="weather?", instructions="sys", max_output_tokens=50)
    assert response.output_text == "Let me check."
    assert response.usage is not None and response.usage.total_tokens == 28
    assert sent[0]["messages"][0] == {"role": "system", "content": "sys"}
    assert sent[0]["max_completion_tokens"] == 50


# ---- usage and counted text ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "usage"),
    [
        (b'{"usage": {"input_tokens": 5, "output_tokens": 6}}', (5, 6, 0, 0)),
        (
            b'{"usage": {"input_tokens": 5, "output_tokens": 6, "input_tokens_details": {"cached_tokens": 2},'
            b' "output_tokens_details": {"reasoning_tokens": 3}}}',
            (5, 6, 2, 3),
        ),
        (
            b'{"usage": {"input_tokens": -1, "output_tokens": 1.5, "input_tokens_details": {"cached_tokens": true}}}',
            (0, 0, 0, 0),
        ),
        (b'{"usage": {"input_tokens": 9007199254740993, "output_tokens": "7"}}', (0, 0, 0, 0)),
        (b'{"usage": null}', None),
        (b"[1]", None),
        (b"{", None),
    ],
)
def test_usage_of_response(answer: bytes, usage: tuple[int, int, int, int] | None) -> None:
    assert usage_of_response(answer) == usage


def test_prompt_text_holds_everything_the_model_reads() -> None:
    payload = items(
        {
            "role": "user",
            "content": [{"type": "input_text", "text": "question"}, {"type": "input_image", "image_url": "u"}],
        },
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "refused"}]},
        CALL,
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_1", "output": [{"type": "input_text", "text": "more"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
    )
    payload.update(
        instructions="Be brief.",
        tools=[TOOL, {"type": "web_search"}],
        text={"format": {"type": "json_schema", "name": "o", "schema": {"type": "string"}}},
    )
    assert prompt_text(payload).split("\n") == [
        "Be brief.",
        "question",
        "refused",
        "get_weather",
        '{"city":"Paris"}',
        "sunny",
        "more",
        "get_weather",
        "Weather.",
        '{"type":"object"}',
        '{"type":"web_search"}',
        '{"type":"string"}',
    ]


def test_prompt_text_of_a_string_input() -> None:
    assert prompt_text(body()) == "hi"
