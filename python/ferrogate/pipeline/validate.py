"""The receive phase's checks of a chat completion request: only the fields the gateway needs.

Everything else passes upstream untouched; the upstream judges what it owns. Each refusal
names the field (OpenAI's ``param``), e.g. ``messages[2].role``.
"""

from __future__ import annotations

from typing import Any

from ferrogate.errors import ErrorKind, GatewayError

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def _bad(param: str, message: str) -> GatewayError:
    return GatewayError(ErrorKind.INVALID_FIELD, message, param=param)


def _int_at_least(payload: dict[str, Any], field: str, low: int) -> None:
    value = payload.get(field)
    if value is None:
        return
    if type(value) is not int:
        raise _bad(field, f"'{field}' must be an integer, got {type(value).__name__}")
    if value < low:
        raise _bad(field, f"'{field}' must be >= {low}, got {value}")


def _number_between(payload: dict[str, Any], field: str, low: float, high: float) -> None:
    value = payload.get(field)
    if value is None:
        return
    if type(value) not in (int, float):
        raise _bad(field, f"'{field}' must be a number, got {type(value).__name__}")
    if not low <= value <= high:
        raise _bad(field, f"'{field}' must be between {low:g} and {high:g}, got {value}")


def validate_chat(payload: Any) -> None:
    """Check a parsed ``/v1/chat/completions`` body.

    Raises:
        GatewayError: 400 naming the first bad field.

    Example:
        >>> validate_chat({"model": "mock", "messages": [{"role": "user", "content": "hi"}]})
    """
    if type(payload) is not dict:
        raise _bad("", "the request body must be a JSON object")
    model = payload.get("model")
    if type(model) is not str or not model:
        raise _bad("model", "'model' is required and must be a non-empty string")
    messages = payload.get("messages")
    if type(messages) is not list:
        what = "missing" if messages is None else f"a {type(messages).__name__}"
        raise _bad("messages", f"'messages' must be a list of message objects, got {what}")
    if not messages:
        raise _bad("messages", "'messages' must contain at least one message")
    for i, message in enumerate(messages):
        if type(message) is not dict:
            raise _bad(f"messages[{i}]", f"'messages[{i}]' must be an object")
        role = message.get("role")
        if role not in _ROLES:
            raise _bad(f"messages[{i}].role", f"'messages[{i}].role' must be one of {', '.join(sorted(_ROLES))}")
        content = message.get("content")
        if content is not None and type(content) not in (str, list):
            raise _bad(f"messages[{i}].content", f"'messages[{i}].content' must be a string or a list of parts")
    stream = payload.get("stream")
    if stream is not None and type(stream) is not bool:
        raise _bad("stream", "'stream' must be a boolean")
    options = payload.get("stream_options")
    if options is not None:
        if not stream:
            raise _bad("stream_options", "'stream_options' is only allowed when 'stream' is true")
        if type(options) is not dict:
            raise _bad("stream_options", "'stream_options' must be an object")
        include = options.get("include_usage")
        if include is not None and type(include) is not bool:
            raise _bad("stream_options.include_usage", "'stream_options.include_usage' must be a boolean")
    if len(payload) > 2:  # beyond the two required fields: check the optional ones the gateway relies on
        _int_at_least(payload, "max_tokens", 1)
        _int_at_least(payload, "max_completion_tokens", 1)
        _int_at_least(payload, "n", 1)
        _number_between(payload, "temperature", 0, 2)
        _number_between(payload, "top_p", 0, 1)
