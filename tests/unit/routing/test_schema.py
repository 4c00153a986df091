"""Structured outputs (``routing.schema`` over ``_core.JsonSchema``): the schema each protocol's request carries
(and its translations), the text of each protocol's whole answer, and the check of valid, invalid, not-JSON and
text-less answers, including answers translated between protocols by the gateway itself."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ferrogate._core import CoreError, JsonSchema, SchemaError
from ferrogate.protocols import ANTHROPIC, EMBEDDINGS, OPENAI_CHAT, RESPONSES, anthropic, responses
from ferrogate.protocols.request import Request
from ferrogate.routing import schema as structured
from ferrogate.routing.schema import answer_text, check, schema_for

PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
VALID = '{"name": "Ada", "age": 36}'
WRONG_TYPE = '{"name": "Ada", "age": "old"}'
MISSING = '{"name": "Ada"}'
NOT_JSON = 'Sure! {"name": "Ada", "age": 36}'


def request(protocol: str, **fields: Any) -> Request:
    payload: dict[str, Any] = {"model": "m", **fields}
    if protocol == OPENAI_CHAT:
        payload.setdefault("messages", [{"role": "user", "content": "hi"}])
    elif protocol == ANTHROPIC:
        payload.setdefault("messages", [{"role": "user", "content": "hi"}])
        payload.setdefault("max_tokens", 64)
    else:  # Responses, embeddings
        payload.setdefault("input", "hi")
    return Request(protocol, orjson.dumps(payload), payload)


def chat_format(schema: Any = PERSON) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}}


def chat_answer(*contents: Any, **message: Any) -> bytes:
    choices = [{"index": i, "message": {"role": "assistant", "content": c, **message}} for i, c in enumerate(contents)]
    return orjson.dumps({"object": "chat.completion", "choices": choices})


def anthropic_answer(*blocks: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": "message", "role": "assistant", "content": list(blocks), "stop_reason": "end_turn"})


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def responses_answer(*items: dict[str, Any]) -> bytes:
    return orjson.dumps({"object": "response", "status": "completed", "output": list(items)})


def message_item(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}


PERSON_SCHEMA = JsonSchema(orjson.dumps(PERSON))

# ---- the schema of a request -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "fields", "has_schema"),
    [
        (OPENAI_CHAT, {"response_format": chat_format()}, True),
        (OPENAI_CHAT, {"response_format": {"type": "json_object"}}, False),
        (OPENAI_CHAT, {"response_format": {"type": "text"}}, False),
        (OPENAI_CHAT, {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, False),
        (OPENAI_CHAT, {}, False),
        (RESPONSES, {"text": {"format": {"type": "json_schema", "name": "person", "schema": PERSON}}}, True),
        (RESPONSES, {"text": {"format": {"type": "json_object"}}}, False),
        (RESPONSES, {"text": {"verbosity": "low"}}, False),
        (RESPONSES, {}, False),
        (ANTHROPIC, {"output_config": {"format": {"type": "json_schema", "schema": PERSON}}}, True),
        (ANTHROPIC, {"output_config": {"effort": "low"}}, False),
        (ANTHROPIC, {}, False),
        (EMBEDDINGS, {"response_format": chat_format()}, False),
    ],
)
def test_schema_for_reads_each_protocols_field(protocol: str, fields: dict[str, Any], has_schema: bool) -> None:
    schema = schema_for(request(protocol, **fields))
    if not has_schema:
        assert schema is None
        return
    assert schema is not None
    assert schema.errors(VALID.encode()) == []
    assert schema.errors(MISSING.encode()) == [("", '"age" is a required property')]


@pytest.mark.parametrize(
    ("protocol", "fields"),
    [
        (ANTHROPIC, {"output_config": {"format": {"type": "json_schema", "schema": PERSON}}}),
        (RESPONSES, {"text": {"format": {"type": "json_schema", "name": "person", "schema": PERSON}}}),
    ],
)
def test_the_chat_form_of_a_translated_request_carries_the_same_schema(protocol: str, fields: dict[str, Any]) -> None:
    original = request(protocol, **fields)
    chat = original.chat()
    assert chat["response_format"]["type"] == "json_schema"
    translated = schema_for(Request(OPENAI_CHAT, orjson.dumps(chat), chat))
    native = schema_for(original)
    assert translated is native  # the same schema's bytes: one cached compilation


def test_schemas_are_cached_by_their_bytes() -> None:
    structured._compiled.cache_clear()
    first = schema_for(request(OPENAI_CHAT, response_format=chat_format({"type": "object", "title": "cached"})))
    again = schema_for(request(OPENAI_CHAT, response_format=chat_format({"type": "object", "title": "cached"})))
    other = schema_for(request(OPENAI_CHAT, response_format=chat_format({"type": "array", "title": "cached"})))
    assert first is again
    assert other is not first
    info = structured._compiled.cache_info()
    assert (info.hits, info.misses, info.maxsize) == (1, 2, structured.CACHE_SIZE)


def test_a_large_schema_compiles_without_the_cache() -> None:
    big = {"type": "object", "properties": {f"p{i:05}": {"type": "string"} for i in range(3000)}}
    assert len(orjson.dumps(big)) > structured.CACHED_MAX_BYTES
    structured._compiled.cache_clear()
    first = schema_for(request(OPENAI_CHAT, response_format=chat_format(big)))
    again = schema_for(request(OPENAI_CHAT, response_format=chat_format(big)))
    assert first is not None and again is not None and first is not again
    assert structured._compiled.cache_info().currsize == 0
    assert first.errors(b'{"p00007": 1}') == [("/p00007", 'value is not of type "string"')]


@pytest.mark.parametrize(
    ("protocol", "fields", "field"),
    [
        (OPENAI_CHAT, {"response_format": chat_format({"type": "strin"})}, "response_format.json_schema.schema"),
        (
            RESPONSES,
            {"text": {"format": {"type": "json_schema", "name": "x", "schema": {"$ref": "#/nope"}}}},
            "text.format.schema",
        ),
        (
            ANTHROPIC,
            {"output_config": {"format": {"type": "json_schema", "schema": {"$ref": "https://example.com/s.json"}}}},
            "output_config.format.schema",
        ),
        (OPENAI_CHAT, {"response_format": chat_format({"pattern": "(?=a)"})}, "response_format.json_schema.schema"),
    ],
)
def test_a_schema_that_does_not_compile_raises_naming_its_field(
    protocol: str, fields: dict[str, Any], field: str
) -> None:
    for _ in range(2):  # the second time from the cache
        with pytest.raises(SchemaError, match=rf"^{field}: ") as info:
            schema_for(request(protocol, **fields))
        assert isinstance(info.value, CoreError)


# ---- the text of an answer and its check ------------------------------------------------------------------

TOOL_CALL = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]

CASES = [
    # chat
    ("chat valid", OPENAI_CHAT, chat_answer(VALID), VALID, []),
    ("chat wrong type", OPENAI_CHAT, chat_answer(WRONG_TYPE), WRONG_TYPE, [("/age", 'value is not of type "integer"')]),
    ("chat missing", OPENAI_CHAT, chat_answer(MISSING), MISSING, [("", '"age" is a required property')]),
    (
        "chat text parts",
        OPENAI_CHAT,
        chat_answer([{"type": "text", "text": VALID[:9]}, {"type": "text", "text": VALID[9:]}]),
        VALID,
        [],
    ),
    ("chat tool call only", OPENAI_CHAT, chat_answer(None, tool_calls=TOOL_CALL), None, None),
    ("chat refusal", OPENAI_CHAT, chat_answer(None, refusal="I can't."), None, None),
    ("chat empty", OPENAI_CHAT, chat_answer(""), None, None),
    ("chat no choices", OPENAI_CHAT, b'{"choices": []}', None, None),
    (
        "chat second choice",
        OPENAI_CHAT,
        chat_answer(VALID, MISSING),
        VALID,
        [("", 'choices[1]: "age" is a required property')],
    ),
    # anthropic
    ("anthropic valid", ANTHROPIC, anthropic_answer(text_block(VALID)), VALID, []),
    (
        "anthropic split text",
        ANTHROPIC,
        anthropic_answer(
            {"type": "thinking", "thinking": "x", "signature": "s"}, text_block(VALID[:5]), text_block(VALID[5:])
        ),
        VALID,
        [],
    ),
    (
        "anthropic missing",
        ANTHROPIC,
        anthropic_answer(text_block(MISSING)),
        MISSING,
        [("", '"age" is a required property')],
    ),
    (
        "anthropic json tool",
        ANTHROPIC,
        anthropic_answer(
            {"type": "tool_use", "id": "t", "name": anthropic.JSON_TOOL, "input": {"name": "Ada", "age": -1}}
        ),
        '{"name":"Ada","age":-1}',
        [("/age", "value is less than the minimum of 0")],
    ),
    (
        "anthropic other tool",
        ANTHROPIC,
        anthropic_answer({"type": "tool_use", "id": "t", "name": "f", "input": {}}),
        None,
        None,
    ),
    (
        "anthropic refusal",
        ANTHROPIC,
        orjson.dumps({"content": [text_block("I can't.")], "stop_reason": "refusal"}),
        None,
        None,
    ),
    # responses
    (
        "responses valid",
        RESPONSES,
        responses_answer({"type": "reasoning", "summary": []}, message_item(VALID)),
        VALID,
        [],
    ),
    (
        "responses wrong type",
        RESPONSES,
        responses_answer(message_item(WRONG_TYPE)),
        WRONG_TYPE,
        [("/age", 'value is not of type "integer"')],
    ),
    (
        "responses function call",
        RESPONSES,
        responses_answer({"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}),
        None,
        None,
    ),
    (
        "responses refusal",
        RESPONSES,
        responses_answer({"type": "message", "content": [{"type": "refusal", "refusal": "no"}]}),
        None,
        None,
    ),
    # not an answer at all
    ("body not JSON", OPENAI_CHAT, b"<html>502</html>", None, None),
    ("body a list", ANTHROPIC, b"[]", None, None),
    ("embeddings", EMBEDDINGS, b'{"data": []}', None, None),
]


@pytest.mark.parametrize(("protocol", "body", "text", "errors"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_answers_of_each_protocol(
    protocol: str, body: bytes, text: str | None, errors: list[tuple[str, str]] | None
) -> None:
    assert answer_text(protocol, body) == text
    assert check(PERSON_SCHEMA, protocol, body) == errors


@pytest.mark.parametrize(
    ("protocol", "body"),
    [
        (OPENAI_CHAT, chat_answer(NOT_JSON)),
        (ANTHROPIC, anthropic_answer(text_block(NOT_JSON))),
        (RESPONSES, responses_answer(message_item(NOT_JSON))),
        (OPENAI_CHAT, chat_answer(VALID[:-3])),  # cut at max_tokens
        (OPENAI_CHAT, chat_answer(f"```json\n{VALID}\n```")),
    ],
)
def test_a_text_that_is_not_json_is_one_error_at_the_root(protocol: str, body: bytes) -> None:
    found = check(PERSON_SCHEMA, protocol, body)
    assert found is not None and len(found) == 1
    assert found[0][0] == ""
    assert found[0][1].startswith("the answer is not JSON: ")


def test_answers_the_gateway_translated_are_checked_in_the_clients_protocol() -> None:
    upstream_chat = chat_answer(MISSING)
    as_anthropic = anthropic.reply_from_chat(upstream_chat, "r1", "claude-x")
    as_responses = responses.reply_from_chat(upstream_chat, "r1", "m")
    upstream_anthropic = anthropic_answer(
        {"type": "tool_use", "id": "t", "name": anthropic.JSON_TOOL, "input": orjson.loads(MISSING)}
    )
    as_chat = anthropic.reply_to_chat(upstream_anthropic, "r1", "m", json_mode=True)
    missing = [("", '"age" is a required property')]
    assert check(PERSON_SCHEMA, ANTHROPIC, as_anthropic) == missing
    assert check(PERSON_SCHEMA, RESPONSES, as_responses) == missing
    assert check(PERSON_SCHEMA, OPENAI_CHAT, as_chat) == missing
    assert check(PERSON_SCHEMA, ANTHROPIC, upstream_anthropic) == missing  # the upstream's body, before translation
    refused = anthropic.reply_from_chat(chat_answer(None, refusal="I can't."), "r1", "claude-x")
    assert check(PERSON_SCHEMA, ANTHROPIC, refused) is None


def test_the_limit_caps_the_errors() -> None:
    schema = JsonSchema(b'{"type": "array", "items": {"type": "integer"}}')
    body = chat_answer('["a", "b", "c", "d"]', '["e"]')
    assert [at for at, _ in check(schema, OPENAI_CHAT, body) or []] == ["/0", "/1", "/2", "/3", "/0"]
    wrong = 'value is not of type "integer"'
    assert check(schema, OPENAI_CHAT, body, limit=2) == [("/0", wrong), ("/1", wrong)]
    assert len(check(schema, OPENAI_CHAT, body, limit=0) or []) == 1
    assert schema.errors(b'["a", "b"]', -3) == [("/0", wrong)]


def test_an_answer_over_the_work_budget_is_not_checked() -> None:
    doubling = {
        "anyOf": [{"type": "array", "items": {"$ref": "#"}}, {"type": "array", "items": {"$ref": "#"}, "minItems": 1}]
    }
    schema = JsonSchema(orjson.dumps(doubling))
    deep = "[" * 40 + "1" + "]" * 40
    with pytest.raises(SchemaError, match="would take over"):
        schema.errors(deep.encode())
    assert check(schema, OPENAI_CHAT, chat_answer(deep)) is None
    assert check(schema, OPENAI_CHAT, chat_answer("[[1]]")) == [
        ("", "value is not valid under any of the schemas listed in the 'anyOf' keyword")
    ]
