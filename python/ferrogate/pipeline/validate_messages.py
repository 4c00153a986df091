"""The receive phase's checks of one chat message, by role, as OpenAI documents them.

- ``system`` / ``developer``: ``content`` a string or an array of text parts.
- ``user``: ``content`` a string or an array of ``text``, ``image_url``, ``input_audio`` and ``file`` parts.
- ``assistant``: ``content`` a string, an array of ``text``/``refusal`` parts, or null; ``tool_calls`` an
  array of ``{id, type: "function", function: {name, arguments}}`` (or ``type: "custom"``, ``custom:
  {name, input}``); ``refusal`` a string; ``function_call`` (deprecated) ``{name, arguments}``.
- ``tool``: ``tool_call_id`` a string and ``content`` a string or an array of text parts.
- ``function`` (deprecated): ``name`` a string and ``content`` a string or null.

``name`` is a string on every role. The fields the Rust token counter reads (``role``, ``content``,
``name``, ``tool_call_id``, ``tool_calls``) are checked on every message whatever its role, so a body
that passes here never makes the counter fail on its types. Other message fields pass untouched.

Example:
    >>> from ferrogate.errors import GatewayError
    >>> message(0, {"role": "tool", "tool_call_id": "call_1", "content": "42"})
    >>> try:
    ...     message(1, {"role": "assistant", "tool_calls": [None]})
    ... except GatewayError as err:
    ...     print(err.param)
    messages[1].tool_calls[0]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ferrogate.protocols.checks import bad, kind, string

#: Longest ``name`` and ``tool_call_id``/tool call ``id`` (OpenAI's ids are ~30 characters).
_MAX_ID = 512
_DETAILS = frozenset({"auto", "low", "high"})


def _text_part(where: str, part: dict[str, Any]) -> None:
    string(f"{where}.text", part.get("text"))


def _refusal_part(where: str, part: dict[str, Any]) -> None:
    string(f"{where}.refusal", part.get("refusal"))


def _image_part(where: str, part: dict[str, Any]) -> None:
    image = part.get("image_url")
    if type(image) is not dict:
        raise bad(f"{where}.image_url", f"'{where}.image_url' must be an object with a url, got {kind(image)}")
    string(f"{where}.image_url.url", image.get("url"))
    detail = image.get("detail")
    if detail is not None and (type(detail) is not str or detail not in _DETAILS):
        raise bad(f"{where}.image_url.detail", f"'{where}.image_url.detail' must be 'auto', 'low' or 'high'")


def _audio_part(where: str, part: dict[str, Any]) -> None:
    audio = part.get("input_audio")
    if type(audio) is not dict:
        raise bad(f"{where}.input_audio", f"'{where}.input_audio' must be an object, got {kind(audio)}")
    string(f"{where}.input_audio.data", audio.get("data"))
    string(f"{where}.input_audio.format", audio.get("format"))


def _file_part(where: str, part: dict[str, Any]) -> None:
    file = part.get("file")
    if type(file) is not dict:
        raise bad(f"{where}.file", f"'{where}.file' must be an object, got {kind(file)}")
    for field in ("file_data", "file_id", "filename"):
        if file.get(field) is not None:
            string(f"{where}.file.{field}", file[field])


PartCheck = Callable[[str, dict[str, Any]], None]
_TEXT: dict[str, PartCheck] = {"text": _text_part}
_USER: dict[str, PartCheck] = {
    "text": _text_part,
    "image_url": _image_part,
    "input_audio": _audio_part,
    "file": _file_part,
}
_ASSISTANT: dict[str, PartCheck] = {"text": _text_part, "refusal": _refusal_part}


def _content(where: str, content: Any, parts: dict[str, PartCheck], nullable: bool) -> None:
    """``content``: a string, an array of the ``parts`` kinds (at least one), or null when ``nullable``."""
    if type(content) is str or (content is None and nullable):
        return
    if type(content) is not list:
        raise bad(where, f"'{where}' must be a string or an array of content parts, got {kind(content)}")
    if not content:
        raise bad(where, f"'{where}' must hold at least one content part")
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        if type(part) is not dict:
            raise bad(at, f"'{at}' must be a content part object, got {kind(part)}")
        typ = part.get("type")
        check = parts.get(typ) if type(typ) is str else None
        if check is None:
            raise bad(f"{at}.type", f"'{at}.type' must be one of {', '.join(parts)}")
        check(at, part)
        if typ != "text" and "text" in part:  # the token counter reads a part's text whatever its type
            string(f"{at}.text", part["text"])


def _tool_calls(where: str, calls: Any) -> None:
    if type(calls) is not list:
        raise bad(where, f"'{where}' must be an array of tool calls, got {kind(calls)}")
    for j, call in enumerate(calls):
        at = f"{where}[{j}]"
        if type(call) is not dict:
            raise bad(at, f"'{at}' must be a tool call object, got {kind(call)}")
        string(f"{at}.id", call.get("id"), _MAX_ID)
        typ = call.get("type")
        if typ == "function" or "function" in call:  # the token counter reads `function` whatever the type
            fn = call.get("function")
            if type(fn) is not dict:
                raise bad(f"{at}.function", f"'{at}.function' must be an object, got {kind(fn)}")
            string(f"{at}.function.name", fn.get("name"))
            string(f"{at}.function.arguments", fn.get("arguments"))
        if typ == "custom":
            custom = call.get("custom")
            if type(custom) is not dict:
                raise bad(f"{at}.custom", f"'{at}.custom' must be an object, got {kind(custom)}")
            string(f"{at}.custom.name", custom.get("name"))
            string(f"{at}.custom.input", custom.get("input"))
        elif typ != "function":
            raise bad(f"{at}.type", f"'{at}.type' must be 'function' or 'custom'")


def _extras(where: str, msg: dict[str, Any], role: str) -> None:
    """The optional fields of a message with more than ``role`` and ``content``."""
    name = msg.get("name")
    if name is not None:
        string(f"{where}.name", name, _MAX_ID)
    call_id = msg.get("tool_call_id")
    if call_id is not None:
        string(f"{where}.tool_call_id", call_id, _MAX_ID)
    calls = msg.get("tool_calls")
    if calls is not None:
        _tool_calls(f"{where}.tool_calls", calls)
    if role != "assistant":
        return
    refusal = msg.get("refusal")
    if refusal is not None:
        string(f"{where}.refusal", refusal)
    legacy = msg.get("function_call")
    if legacy is not None:
        if type(legacy) is not dict:
            raise bad(f"{where}.function_call", f"'{where}.function_call' must be an object, got {kind(legacy)}")
        string(f"{where}.function_call.name", legacy.get("name"))
        string(f"{where}.function_call.arguments", legacy.get("arguments"))


def _system(where: str, msg: dict[str, Any]) -> None:
    _content(f"{where}.content", msg.get("content"), _TEXT, False)


def _user(where: str, msg: dict[str, Any]) -> None:
    _content(f"{where}.content", msg.get("content"), _USER, False)


def _assistant(where: str, msg: dict[str, Any]) -> None:
    _content(f"{where}.content", msg.get("content"), _ASSISTANT, True)


def _tool(where: str, msg: dict[str, Any]) -> None:
    string(f"{where}.tool_call_id", msg.get("tool_call_id"), _MAX_ID)
    _content(f"{where}.content", msg.get("content"), _TEXT, False)


def _function(where: str, msg: dict[str, Any]) -> None:
    string(f"{where}.name", msg.get("name"), _MAX_ID)
    _content(f"{where}.content", msg.get("content"), _TEXT, True)


_ROLES: dict[str, Callable[[str, dict[str, Any]], None]] = {
    "system": _system,
    "developer": _system,
    "user": _user,
    "assistant": _assistant,
    "tool": _tool,
    "function": _function,
}
_ROLE_LIST = ", ".join(_ROLES)
#: Roles whose message may be just ``role`` and a string ``content``.
PLAIN_ROLES = frozenset({"system", "developer", "user", "assistant"})


def message(i: int, msg: Any) -> None:
    """Check ``messages[i]``: its role, then the shape that role allows.

    Raises:
        GatewayError: 400 naming the first bad field, e.g. ``messages[1].tool_calls[0].function.arguments``.
    """
    if type(msg) is not dict:
        raise bad(f"messages[{i}]", f"'messages[{i}]' must be a message object, got {kind(msg)}")
    role = msg.get("role")
    check = _ROLES.get(role) if type(role) is str else None
    if check is None or type(role) is not str:
        raise bad(f"messages[{i}].role", f"'messages[{i}].role' must be one of {_ROLE_LIST}")
    where = f"messages[{i}]"
    check(where, msg)
    if len(msg) > 1 + ("content" in msg):  # fields beyond role and content
        _extras(where, msg, role)
