"""The receive phase's checks of a chat completion request, against OpenAI's documented types and ranges.

Every field the gateway or a provider reads is checked here, once: the sampling numbers, the counts
that size work (bounded by ``requests.*`` in the configuration, :class:`~ferrogate.config.model.RequestBounds`),
and every message by its role, down to each content part and tool call. Unknown fields (top level,
messages, parts) pass upstream untouched: OpenAI adds fields often. A ``null`` optional field counts as
absent. Each refusal is a 400 ``invalid_value`` naming the JSON path (OpenAI's ``param``), e.g.
``messages[1].tool_calls[0].function.arguments``. A bool is not an integer, an integral float is not an
integer, and an integer too large for 64 bits (orjson gives it as a float) is refused with the range.

The checks are plain type tests and one dict lookup per top-level field: about a microsecond for a
typical request (docs/ARCHITECTURE.md, receive).

Example:
    >>> from ferrogate.errors import GatewayError
    >>> validate_chat({"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 2})
    >>> try:
    ...     validate_chat({"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 2**63})
    ... except GatewayError as err:
    ...     print(err.param, err.status)
    n 400
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ferrogate.config.model import RequestBounds
from ferrogate.pipeline.validate_messages import PLAIN_ROLES as _PLAIN
from ferrogate.pipeline.validate_messages import message
from ferrogate.protocols.checks import array as _list
from ferrogate.protocols.checks import bad, kind, string
from ferrogate.protocols.checks import boolean as _bool
from ferrogate.protocols.checks import integer as _int
from ferrogate.protocols.checks import number as _number
from ferrogate.protocols.checks import obj as _dict

__all__ = ["validate_chat"]

_DEFAULT = RequestBounds()
#: Longest ``model`` and ``user`` (the gateway keys caches, logs and records by them).
_MAX_MODEL = 256
_MAX_USER = 512
_INT64 = 2**63
#: Tool, function and JSON-schema names, as OpenAI documents them.
_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_TOOL_CHOICES = frozenset({"none", "auto", "required"})
_FORMATS = frozenset({"text", "json_object", "json_schema"})

Check = Callable[[Any, RequestBounds, dict[str, Any]], None]


def validate_chat(payload: Any, bounds: RequestBounds = _DEFAULT) -> None:
    """Check a parsed ``/v1/chat/completions`` body; ``bounds`` are the configured ceilings.

    Raises:
        GatewayError: 400 ``invalid_value`` naming the first bad field in ``param``.

    Example:
        >>> validate_chat({"model": "mock", "messages": [{"role": "user", "content": "hi"}]})
    """
    if type(payload) is not dict:
        raise bad("", "the request body must be a JSON object")
    model = payload.get("model")
    if type(model) is not str or not model:
        raise bad("model", "'model' is required and must be a non-empty string")
    if len(model) > _MAX_MODEL:
        raise bad("model", f"'model' must be at most {_MAX_MODEL} characters")
    messages = payload.get("messages")
    if type(messages) is not list:
        what = "missing" if messages is None else kind(messages)
        raise bad("messages", f"'messages' must be an array of message objects, got {what}")
    if not messages:
        raise bad("messages", "'messages' must contain at least one message")
    if len(messages) > bounds.max_messages:
        raise bad("messages", f"'messages' must hold at most {bounds.max_messages} messages, got {len(messages)}")
    for i, msg in enumerate(messages):
        if type(msg) is dict and len(msg) == 2:  # the common case inline: role and a string content
            role = msg.get("role")
            if type(role) is str and role in _PLAIN and type(msg.get("content")) is str:
                continue
        message(i, msg)
    checks = _CHECKS
    for field, value in payload.items():
        check = checks.get(field)
        if check is not None and value is not None:
            check(value, bounds, payload)


# ---- numbers -----------------------------------------------------------------------------------


def _max_tokens(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    if type(value) is not int or not 1 <= value <= bounds.max_output_tokens:
        _int("max_tokens", value, 1, bounds.max_output_tokens)


def _max_completion_tokens(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    if type(value) is not int or not 1 <= value <= bounds.max_output_tokens:
        _int("max_completion_tokens", value, 1, bounds.max_output_tokens)


def _n(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    _int("n", value, 1, bounds.max_n)


def _temperature(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    if type(value) not in (int, float) or not 0 <= value <= 2:
        _number("temperature", value, 0, 2)


def _top_p(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    _number("top_p", value, 0, 1)


def _presence_penalty(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    _number("presence_penalty", value, -2, 2)


def _frequency_penalty(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    _number("frequency_penalty", value, -2, 2)


def _seed(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    _int("seed", value, -_INT64, _INT64 - 1)


def _logprobs(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    _bool("logprobs", value)


def _top_logprobs(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    _int("top_logprobs", value, 0, 20)


def _parallel_tool_calls(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    _bool("parallel_tool_calls", value)


def _logit_bias(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    biases = _dict("logit_bias", value)
    if len(biases) > bounds.max_logit_bias:
        raise bad("logit_bias", f"'logit_bias' must hold at most {bounds.max_logit_bias} entries, got {len(biases)}")
    for token, bias in biases.items():
        if not (token.isascii() and token.isdigit() and len(token) <= 10):
            raise bad("logit_bias", f"'logit_bias' keys must be token ids (integer strings), got {token[:40]!r}")
        _number(f"logit_bias.{token}", bias, -100, 100)


# ---- strings and small objects -----------------------------------------------------------------


def _user(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    if type(value) is not str or len(value) > _MAX_USER:
        string("user", value, _MAX_USER)


def _stop(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    if type(value) is str:
        return
    if type(value) is not list:
        raise bad("stop", f"'stop' must be a string or an array of strings, got {kind(value)}")
    if len(value) > bounds.max_stop:
        raise bad("stop", f"'stop' must hold at most {bounds.max_stop} sequences, got {len(value)}")
    for i, seq in enumerate(value):
        if type(seq) is not str:
            raise bad(f"stop[{i}]", f"'stop[{i}]' must be a string, got {kind(seq)}")


def _stream(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    _bool("stream", value)


def _stream_options(value: Any, bounds: RequestBounds, payload: dict[str, Any]) -> None:
    if payload.get("stream") is not True:
        raise bad("stream_options", "'stream_options' is only allowed when 'stream' is true")
    options = _dict("stream_options", value)
    for flag in ("include_usage", "include_obfuscation"):
        if options.get(flag) is not None:
            _bool(f"stream_options.{flag}", options[flag])


def _metadata(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    entries = _dict("metadata", value)
    if len(entries) > 16:
        raise bad("metadata", f"'metadata' must hold at most 16 pairs, got {len(entries)}")
    for key, item in entries.items():
        if len(key) > 64:
            raise bad("metadata", f"'metadata' keys must be at most 64 characters, got {key[:40]!r}...")
        string(f"metadata.{key}", item, 512)


def _name(field: str, value: Any) -> None:
    if type(value) is not str or not _NAME.fullmatch(value):
        got = repr(value[:80]) if type(value) is str else kind(value)
        raise bad(field, f"'{field}' must match ^[a-zA-Z0-9_-]{{1,64}}$, got {got}")


def _function(where: str, value: Any) -> None:
    """A function definition: ``{name, description?, parameters?, strict?}``."""
    fn = _dict(where, value)
    _name(f"{where}.name", fn.get("name"))
    if fn.get("description") is not None:
        string(f"{where}.description", fn["description"])
    if fn.get("parameters") is not None:
        _dict(f"{where}.parameters", fn["parameters"])
    if fn.get("strict") is not None:
        _bool(f"{where}.strict", fn["strict"])


def _tools(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    for i, tool in enumerate(_list("tools", value, bounds.max_tools)):
        where = f"tools[{i}]"
        tool = _dict(where, tool)
        typ = tool.get("type")
        if typ == "function":
            _function(f"{where}.function", tool.get("function"))
        elif typ == "custom":
            custom = _dict(f"{where}.custom", tool.get("custom"))
            _name(f"{where}.custom.name", custom.get("name"))
            if custom.get("description") is not None:
                string(f"{where}.custom.description", custom["description"])
            if custom.get("format") is not None:
                _dict(f"{where}.custom.format", custom["format"])
        else:
            raise bad(f"{where}.type", f"'{where}.type' must be 'function' or 'custom'")


def _functions(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    for i, fn in enumerate(_list("functions", value, bounds.max_tools)):
        _function(f"functions[{i}]", fn)


def _tool_choice(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    if type(value) is str:
        if value not in _TOOL_CHOICES:
            raise bad("tool_choice", "'tool_choice' must be 'none', 'auto', 'required' or an object")
        return
    choice = _dict("tool_choice", value)
    typ = choice.get("type")
    if typ in ("function", "custom"):
        named = _dict(f"tool_choice.{typ}", choice.get(typ))
        _name(f"tool_choice.{typ}.name", named.get("name"))
    elif typ == "allowed_tools":
        allowed = _dict("tool_choice.allowed_tools", choice.get("allowed_tools"))
        if allowed.get("mode") not in ("auto", "required"):
            raise bad("tool_choice.allowed_tools.mode", "'tool_choice.allowed_tools.mode' must be 'auto' or 'required'")
        for i, tool in enumerate(_list("tool_choice.allowed_tools.tools", allowed.get("tools"), bounds.max_tools)):
            _dict(f"tool_choice.allowed_tools.tools[{i}]", tool)
    else:
        raise bad("tool_choice.type", "'tool_choice.type' must be 'function', 'custom' or 'allowed_tools'")


def _function_call(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    if type(value) is str:
        if value not in ("none", "auto"):
            raise bad("function_call", "'function_call' must be 'none', 'auto' or an object")
        return
    _name("function_call.name", _dict("function_call", value).get("name"))


def _response_format(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    fmt = _dict("response_format", value)
    typ = fmt.get("type")
    if type(typ) is not str or typ not in _FORMATS:
        raise bad("response_format.type", "'response_format.type' must be 'text', 'json_object' or 'json_schema'")
    if typ != "json_schema":
        return
    schema = _dict("response_format.json_schema", fmt.get("json_schema"))
    _name("response_format.json_schema.name", schema.get("name"))
    if schema.get("description") is not None:
        string("response_format.json_schema.description", schema["description"])
    if schema.get("schema") is not None:
        _dict("response_format.json_schema.schema", schema["schema"])
    if schema.get("strict") is not None:
        _bool("response_format.json_schema.strict", schema["strict"])


#: The checked top-level fields (``model`` and ``messages`` are checked first, always).
_CHECKS: dict[str, Check] = {
    "max_tokens": _max_tokens,
    "max_completion_tokens": _max_completion_tokens,
    "n": _n,
    "temperature": _temperature,
    "top_p": _top_p,
    "presence_penalty": _presence_penalty,
    "frequency_penalty": _frequency_penalty,
    "seed": _seed,
    "logprobs": _logprobs,
    "top_logprobs": _top_logprobs,
    "logit_bias": _logit_bias,
    "parallel_tool_calls": _parallel_tool_calls,
    "user": _user,
    "stop": _stop,
    "stream": _stream,
    "stream_options": _stream_options,
    "metadata": _metadata,
    "tools": _tools,
    "functions": _functions,
    "tool_choice": _tool_choice,
    "function_call": _function_call,
    "response_format": _response_format,
}
