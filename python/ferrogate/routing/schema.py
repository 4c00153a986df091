"""Structured outputs: the JSON schema a request asks its answer to match, and the check of a whole answer.

Each protocol has its own field for the schema, read by :func:`schema_for` from the client's request:

================  ===================================================================================
protocol          field
================  ===================================================================================
OpenAI chat       ``response_format: {type: json_schema, json_schema: {name, schema, strict}}``
OpenAI Responses  ``text.format: {type: json_schema, name, schema, strict}``
Anthropic         ``output_config.format: {type: json_schema, schema}`` (what ``anthropic.to_chat``
                  turns into the chat ``response_format``; a chat request for an Anthropic upstream
                  becomes the forced JSON tool, whose input is the answer)
================  ===================================================================================

``json_object`` (JSON mode without a schema) and plain text are not checked. The schema compiles once in the
Rust core (:class:`ferrogate._core.JsonSchema`) and is cached by its bytes (an LRU of :data:`CACHE_SIZE`
schemas up to :data:`CACHED_MAX_BYTES`; larger ones compile per request). :func:`answer_text` reads an
answer's text from a whole answer of any protocol, and :func:`check` validates it: ``[]`` valid, a list of
``(JSON pointer, message)`` invalid (an answer that is not JSON: one error at ``""``), ``None`` not checked
(no text: a tool call or a refusal; or over the check's work budget). Streams are not checked: their text is
not kept.

Example:
    >>> import orjson
    >>> from ferrogate.protocols import OPENAI_CHAT
    >>> from ferrogate.protocols.request import Request
    >>> payload = {"model": "m", "messages": [], "response_format": {"type": "json_schema", "json_schema": {
    ...     "name": "n", "schema": {"type": "object", "required": ["n"]}}}}
    >>> schema = schema_for(Request(OPENAI_CHAT, orjson.dumps(payload), payload))
    >>> answer = {"choices": [{"message": {"role": "assistant", "content": '{"m": 1}'}}]}
    >>> check(schema, OPENAI_CHAT, orjson.dumps(answer))
    [('', '"n" is a required property')]
"""

from __future__ import annotations

import functools
from typing import Any, Final

import orjson

from ferrogate._core import JsonSchema, SchemaError
from ferrogate.protocols import ANTHROPIC, OPENAI_CHAT, RESPONSES
from ferrogate.protocols.anthropic import JSON_TOOL
from ferrogate.protocols.request import Request

__all__ = ["CACHED_MAX_BYTES", "CACHE_SIZE", "MAX_ERRORS", "answer_text", "check", "schema_for"]

#: Compiled schemas kept per worker (least recently used dropped first).
CACHE_SIZE: Final = 256
#: Schemas up to this size (bytes of JSON) are cached; a larger one (up to the core's 256 KiB) compiles per
#: request, so the cache holds at most 16 MiB of schema text.
CACHED_MAX_BYTES: Final = 64 * 1024
#: Errors :func:`check` returns at most.
MAX_ERRORS: Final = 5


def schema_for(request: Request) -> JsonSchema | None:
    """The compiled JSON schema the request asks its answer to match, or ``None`` when it asks for none.

    Raises:
        SchemaError: the schema does not compile; the message starts with its field
            (``response_format.json_schema.schema: invalid JSON schema at "/type": ...``).
    """
    found = _schema_of(request.protocol, request.payload)
    if found is None:
        return None
    field, schema = found
    raw = orjson.dumps(schema)
    compiled = _compiled(raw) if len(raw) <= CACHED_MAX_BYTES else _compile(raw)
    if isinstance(compiled, str):
        raise SchemaError(f"{field}: {compiled}")
    return compiled


#: protocol -> (the keys from the request to its format object, the keys from that to the schema).
_WHERE: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    OPENAI_CHAT: (("response_format",), ("json_schema", "schema")),
    RESPONSES: (("text", "format"), ("schema",)),
    ANTHROPIC: (("output_config", "format"), ("schema",)),
}


def _dig(value: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = value.get(key) if type(value) is dict else None
    return value


def _schema_of(protocol: str, payload: dict[str, Any]) -> tuple[str, Any] | None:
    """``(field, schema)`` of the request's JSON schema, if it has one."""
    where = _WHERE.get(protocol)
    if where is None:
        return None
    to_format, to_schema = where
    fmt = _dig(payload, to_format)
    if type(fmt) is not dict or fmt.get("type") != "json_schema":
        return None
    schema = _dig(fmt, to_schema)
    return None if schema is None else (".".join(to_format + to_schema), schema)


def _compile(raw: bytes) -> JsonSchema | str:
    """The compiled schema, or why it does not compile."""
    try:
        return JsonSchema(raw)
    except SchemaError as exc:
        return str(exc)


#: The same, cached: a schema that does not compile is not compiled again either.
_compiled = functools.lru_cache(maxsize=CACHE_SIZE)(_compile)


def answer_text(protocol: str, body: bytes) -> str | None:
    """The text of a whole answer (a JSON body in ``protocol``): the first choice's content (chat), the text blocks
    (Anthropic; without any, the input of the gateway's JSON tool :data:`~ferrogate.protocols.anthropic.JSON_TOOL`),
    the ``output_text`` parts of the output messages (Responses). ``None`` when it has none (tool calls only, a
    refusal, an empty answer) or the body is not an answer.

    Example:
        >>> blocks = [{"type": "thinking", "thinking": "hm"}, {"type": "text", "text": "1"}]
        >>> answer_text(ANTHROPIC, orjson.dumps({"content": blocks}))
        '1'
        >>> answer_text(OPENAI_CHAT, b'{"choices": [{"message": {"content": null, "refusal": "no"}}]}') is None
        True
    """
    texts = _texts(protocol, body)
    return texts[0] if texts else None


def _texts(protocol: str, body: bytes) -> list[str]:
    """Every answer's text in the body: one per chat choice, one for the others; none without text."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    if type(answer) is not dict:
        return []
    if protocol == OPENAI_CHAT:
        choices = answer.get("choices")
        texts = [_chat_text(choice) for choice in choices] if type(choices) is list else []
        return [text for text in texts if text is not None]
    if protocol == ANTHROPIC:
        # a refusal's text (also a chat refusal the gateway translated) is no answer to check
        text = None if answer.get("stop_reason") == "refusal" else _anthropic_text(answer.get("content"))
    elif protocol == RESPONSES:
        text = _responses_text(answer.get("output"))
    else:
        return []
    return [] if text is None else [text]


def _chat_text(choice: Any) -> str | None:
    message = choice.get("message") if type(choice) is dict else None
    content = message.get("content") if type(message) is dict else None
    if type(content) is list:  # some upstreams answer with text parts
        parts = [p["text"] for p in content if type(p) is dict and type(p.get("text")) is str]
        content = "".join(parts) if parts else None
    return content if type(content) is str and content else None


def _anthropic_text(content: Any) -> str | None:
    blocks = [b for b in content if type(b) is dict] if type(content) is list else []
    texts = [b["text"] for b in blocks if b.get("type") == "text" and type(b.get("text")) is str]
    if texts:
        return "".join(texts)  # one answer, split around citations
    for block in blocks:
        if block.get("type") == "tool_use" and block.get("name") == JSON_TOOL:
            return orjson.dumps(block.get("input") or {}).decode()
    return None


def _responses_text(output: Any) -> str | None:
    texts = [
        part["text"]
        for item in (output if type(output) is list else ())
        if type(item) is dict and item.get("type") == "message" and type(item.get("content")) is list
        for part in item["content"]
        if type(part) is dict and part.get("type") == "output_text" and type(part.get("text")) is str
    ]
    return "".join(texts) if texts else None


def check(schema: JsonSchema, protocol: str, body: bytes, limit: int = MAX_ERRORS) -> list[tuple[str, str]] | None:
    """The answer's violations of ``schema``: ``[]`` valid; at most ``limit`` ``(JSON pointer, message)`` invalid
    (a text that is not JSON: one error at ``""``; a chat answer's second choice on: the message starts with
    ``choices[i]: ``); ``None`` not checked: no text (see :func:`answer_text`) or over the check's work budget.

    Example:
        >>> schema = JsonSchema(b'{"type": "integer"}')
        >>> check(schema, ANTHROPIC, b'{"content": [{"type": "text", "text": "42"}]}')
        []
        >>> part = {"type": "output_text", "text": "4 2"}
        >>> check(schema, RESPONSES, orjson.dumps({"output": [{"type": "message", "content": [part]}]}))
        [('', 'the answer is not JSON: trailing characters at line 1 column 3')]
    """
    texts = _texts(protocol, body)
    if not texts:
        return None
    found: list[tuple[str, str]] = []
    try:
        for i, text in enumerate(texts):
            errors = schema.errors(text.encode(), limit)
            found.extend(errors if i == 0 else [(at, f"choices[{i}]: {message}") for at, message in errors])
            if len(found) >= limit:
                break
    except SchemaError:
        return None
    return found[: max(limit, 1)]
