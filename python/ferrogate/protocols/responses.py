"""OpenAI Responses (``POST /v1/responses``): the receive phase's checks and the translation through chat.

A Responses request served by a chat-only upstream (or by Anthropic, through chat) is translated to a chat
request (:func:`to_chat`) and the chat.completion answer back to a Response object (:func:`reply_from_chat`);
streams are translated in the Rust core. :func:`validate_responses_request` checks what the gateway and the
translation read, in the style of :mod:`ferrogate.pipeline.validate`: each refusal is a 400 ``invalid_value``
naming the JSON path, a bool is not an integer, a ``null`` optional field counts as absent and unknown fields
pass (to a native upstream) untouched.

:data:`CHAT_RULES` maps each top-level field to its chat form:

=======================  ============================================================================
Responses field          chat request
=======================  ============================================================================
instructions             the first message, ``{"role": "system", "content": instructions}``
input                    messages: a string is one user message; a message item keeps its role
                         (``developer`` too), ``input_text``/``output_text`` become text parts (one
                         alone: a string), ``input_image`` an ``image_url`` part (detail ``original``
                         reads as ``high``), ``input_file`` a ``file`` part, ``refusal`` a refusal part;
                         ``function_call`` items become ``tool_calls`` of an assistant message (merged
                         into the turn's assistant text and with each other), ``function_call_output``
                         a ``tool`` message; ``reasoning`` items are dropped; other items refused
max_output_tokens        ``max_completion_tokens``
temperature, top_p,      kept
parallel_tool_calls,
user, metadata,
service_tier,
safety_identifier,
prompt_cache_key
tools                    function tools -> ``{"type": "function", "function": {...}}``; others refused
tool_choice              a string kept; ``{type: function, name}`` -> ``{type: function, function:
                         {name}}``; ``allowed_tools`` of function tools mapped; others refused
text                     ``format`` -> ``response_format`` (``json_schema``: ``{type, json_schema:
                         {name, schema, description?, strict?}}``), ``verbosity`` kept
reasoning                ``effort`` -> ``reasoning_effort``
stream                   kept; true adds ``stream_options: {"include_usage": true}``
previous_response_id,    refused: the gateway stores no responses or conversations for chat upstreams
conversation, prompt
=======================  ============================================================================

Every other field (``store``, ``truncation``, ``include``, ``background``, ``max_tool_calls``...) is dropped.

Example:
    >>> payload = {"model": "m", "instructions": "Be brief.", "input": "hi", "max_output_tokens": 64}
    >>> validate_responses_request(payload, RequestBounds())
    >>> to_chat(payload)["messages"], to_chat(payload)["max_completion_tokens"]
    ([{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'hi'}], 64)
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, Final

import orjson

from ferrogate.config.model import RequestBounds
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.protocols.checks import array as _list
from ferrogate.protocols.checks import bad as _bad
from ferrogate.protocols.checks import boolean as _bool
from ferrogate.protocols.checks import kind as _kind
from ferrogate.protocols.checks import number as _number
from ferrogate.protocols.checks import obj as _dict
from ferrogate.protocols.checks import string as _string
from ferrogate.protocols.checks import tokens as _tokens

__all__ = [
    "CHAT_RULES",
    "prompt_text",
    "reply_from_chat",
    "to_chat",
    "usage_of_response",
    "validate_responses_request",
]

#: Longest ``model``, ``user`` and ids (the gateway keys caches, logs and records by them).
_MAX_MODEL = 256
_MAX_USER = 512
_MAX_ID = 512
#: The most a token count can be and still be plausible (the store's limit, as pipeline/phases.py reads it).
_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_ROLES = frozenset({"user", "assistant", "system", "developer"})
_DETAILS = frozenset({"auto", "low", "high", "original"})
_TOOL_CHOICES = frozenset({"none", "auto", "required"})
_FORMATS = frozenset({"text", "json_object", "json_schema"})
_VERBOSITY = frozenset({"low", "medium", "high"})
_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh", "max"})
_SUMMARIES = frozenset({"auto", "concise", "detailed"})
_TRUNCATION = frozenset({"auto", "disabled"})
#: Stateful fields: without ``input`` the request continues a stored response, conversation or prompt.
_STATEFUL = ("previous_response_id", "conversation", "prompt")


# ---- validation ----------------------------------------------------------------------------------


def validate_responses_request(payload: Any, bounds: RequestBounds) -> None:
    """Check a parsed ``/v1/responses`` body; ``bounds`` are the configured ceilings.

    Raises:
        GatewayError: 400 ``invalid_value`` naming the first bad field in ``param``.

    Example:
        >>> try:
        ...     validate_responses_request({"model": "m", "input": [{"role": "bot", "content": ""}]}, RequestBounds())
        ... except GatewayError as err:
        ...     print(err.param)
        input[0].role
    """
    if type(payload) is not dict:
        raise _bad("", "the request body must be a JSON object")
    model = payload.get("model")
    if type(model) is not str or not model:
        raise _bad("model", "'model' is required and must be a non-empty string")
    _string("model", model, _MAX_MODEL)
    if payload.get("input") is None and all(payload.get(field) is None for field in _STATEFUL):
        raise _bad("input", "'input' is required (a string or an array of input items)")
    for field, value in payload.items():
        check = _CHECKS.get(field)
        if check is not None and value is not None:
            check(value, bounds)


def _one_of(field: str, value: Any, allowed: frozenset[str]) -> None:
    if type(value) is not str or value not in allowed:
        raise _bad(field, f"'{field}' must be one of {', '.join(sorted(allowed))}")


def _name(field: str, value: Any) -> None:
    if type(value) is not str or not _NAME.fullmatch(value):
        got = repr(value[:80]) if type(value) is str else _kind(value)
        raise _bad(field, f"'{field}' must match ^[a-zA-Z0-9_-]{{1,64}}$, got {got}")


def _optional(where: str, part: dict[str, Any], *fields: str) -> None:
    for field in fields:
        if part.get(field) is not None:
            _string(f"{where}.{field}", part[field])


def _text_part(where: str, part: dict[str, Any]) -> None:
    _string(f"{where}.text", part.get("text"))


def _refusal_part(where: str, part: dict[str, Any]) -> None:
    _string(f"{where}.refusal", part.get("refusal"))


def _image_part(where: str, part: dict[str, Any]) -> None:
    if part.get("image_url") is None and part.get("file_id") is None:
        raise _bad(f"{where}.image_url", f"'{where}' needs an 'image_url' or a 'file_id'")
    _optional(where, part, "image_url", "file_id")
    if part.get("detail") is not None:
        _one_of(f"{where}.detail", part["detail"], _DETAILS)


def _file_part(where: str, part: dict[str, Any]) -> None:
    _optional(where, part, "file_id", "file_data", "file_url", "filename")


_PartCheck = Callable[[str, dict[str, Any]], None]
_INPUT_PARTS: dict[str, _PartCheck] = {"input_text": _text_part, "input_image": _image_part, "input_file": _file_part}
_MESSAGE_PARTS: dict[str, _PartCheck] = {**_INPUT_PARTS, "output_text": _text_part, "refusal": _refusal_part}


def _parts(where: str, value: Any, checks: dict[str, _PartCheck]) -> None:
    """``value`` a string or an array of parts whose types ``checks`` knows."""
    if type(value) is str:
        return
    if type(value) is not list:
        raise _bad(where, f"'{where}' must be a string or an array of content parts, got {_kind(value)}")
    for j, part in enumerate(value):
        at = f"{where}[{j}]"
        part = _dict(at, part)
        typ = part.get("type")
        check = checks.get(typ) if type(typ) is str else None
        if check is None:
            raise _bad(f"{at}.type", f"'{at}.type' must be one of {', '.join(checks)}")
        check(at, part)


def _item(where: str, item: Any) -> None:
    item = _dict(where, item)
    typ = item.get("type")
    if typ is None or typ == "message":
        role = item.get("role")
        if type(role) is not str or role not in _ROLES:
            raise _bad(f"{where}.role", f"'{where}.role' must be one of assistant, developer, system, user")
        _parts(f"{where}.content", item.get("content"), _MESSAGE_PARTS)
    elif typ == "function_call":
        _string(f"{where}.call_id", item.get("call_id"), _MAX_ID)
        _name(f"{where}.name", item.get("name"))
        _string(f"{where}.arguments", item.get("arguments"))
    elif typ == "function_call_output":
        _string(f"{where}.call_id", item.get("call_id"), _MAX_ID)
        _parts(f"{where}.output", item.get("output"), _INPUT_PARTS)
    elif type(typ) is not str:
        raise _bad(f"{where}.type", f"'{where}.type' must be a string, got {_kind(typ)}")


def _input(value: Any, bounds: RequestBounds) -> None:
    if type(value) is str:
        return
    if type(value) is not list:
        raise _bad("input", f"'input' must be a string or an array of input items, got {_kind(value)}")
    if len(value) > bounds.max_messages:
        raise _bad("input", f"'input' must hold at most {bounds.max_messages} items, got {len(value)}")
    for i, item in enumerate(value):
        _item(f"input[{i}]", item)


def _max_output_tokens(value: Any, bounds: RequestBounds) -> None:
    if type(value) is not int or not 16 <= value <= bounds.max_output_tokens:
        got = f"got {value}" if type(value) in (int, float) else f"got {_kind(value)}"
        raise _bad(
            "max_output_tokens",
            f"'max_output_tokens' must be an integer between 16 and {bounds.max_output_tokens}, {got}",
        )


def _tools(value: Any, bounds: RequestBounds) -> None:
    for i, tool in enumerate(_list("tools", value, bounds.max_tools)):
        where = f"tools[{i}]"
        tool = _dict(where, tool)
        typ = tool.get("type")
        if typ == "function":
            _name(f"{where}.name", tool.get("name"))
            _optional(where, tool, "description")
            if tool.get("parameters") is not None:
                _dict(f"{where}.parameters", tool["parameters"])
            if tool.get("strict") is not None:
                _bool(f"{where}.strict", tool["strict"])
        elif type(typ) is not str:
            raise _bad(f"{where}.type", f"'{where}.type' must be a string, got {_kind(typ)}")


def _tool_choice(value: Any, bounds: RequestBounds) -> None:
    if type(value) is str:
        if value not in _TOOL_CHOICES:
            raise _bad("tool_choice", "'tool_choice' must be 'none', 'auto', 'required' or an object")
        return
    typ = _dict("tool_choice", value).get("type")
    if typ == "function":
        _name("tool_choice.name", value.get("name"))
    elif type(typ) is not str:
        raise _bad("tool_choice.type", f"'tool_choice.type' must be a string, got {_kind(typ)}")


def _metadata(value: Any, bounds: RequestBounds) -> None:
    if len(_dict("metadata", value)) > 16:
        raise _bad("metadata", f"'metadata' must hold at most 16 pairs, got {len(value)}")
    for key, item in value.items():
        if len(key) > 64:
            raise _bad("metadata", f"'metadata' keys must be at most 64 characters, got {key[:40]!r}...")
        _string(f"metadata.{key}", item, 512)


def _text(value: Any, bounds: RequestBounds) -> None:
    text = _dict("text", value)
    if text.get("verbosity") is not None:
        _one_of("text.verbosity", text["verbosity"], _VERBOSITY)
    if text.get("format") is None:
        return
    fmt = _dict("text.format", text["format"])
    _one_of("text.format.type", fmt.get("type"), _FORMATS)
    if fmt["type"] == "json_schema":
        _name("text.format.name", fmt.get("name"))
        _dict("text.format.schema", fmt.get("schema"))
        _optional("text.format", fmt, "description")
        if fmt.get("strict") is not None:
            _bool("text.format.strict", fmt["strict"])


def _reasoning(value: Any, bounds: RequestBounds) -> None:
    reasoning = _dict("reasoning", value)
    if reasoning.get("effort") is not None:
        _one_of("reasoning.effort", reasoning["effort"], _EFFORTS)
    if reasoning.get("summary") is not None:
        _one_of("reasoning.summary", reasoning["summary"], _SUMMARIES)


#: The checked top-level fields (``model`` is checked first, always); a check's result is ignored.
_CHECKS: dict[str, Callable[[Any, RequestBounds], object]] = {
    "input": _input,
    "instructions": lambda value, _: _string("instructions", value),
    "max_output_tokens": _max_output_tokens,
    "temperature": lambda value, _: _number("temperature", value, 0, 2),
    "top_p": lambda value, _: _number("top_p", value, 0, 1),
    "stream": lambda value, _: _bool("stream", value),
    "stream_options": lambda value, _: _dict("stream_options", value),
    "tools": _tools,
    "tool_choice": _tool_choice,
    "parallel_tool_calls": lambda value, _: _bool("parallel_tool_calls", value),
    "metadata": _metadata,
    "user": lambda value, _: _string("user", value, _MAX_USER),
    "store": lambda value, _: _bool("store", value),
    "previous_response_id": lambda value, _: _string("previous_response_id", value, _MAX_ID),
    "text": _text,
    "reasoning": _reasoning,
    "truncation": lambda value, _: _one_of("truncation", value, _TRUNCATION),
}


# ---- translation to chat -------------------------------------------------------------------------


def to_chat(payload: dict[str, Any]) -> dict[str, Any]:
    """The chat request for a validated Responses request, by :data:`CHAT_RULES`.

    Raises:
        GatewayError: 400 naming a field chat upstreams cannot serve (a hosted tool, ``previous_response_id``).

    Example:
        >>> chat = to_chat({"model": "m", "input": "hi", "stream": True, "store": False})
        >>> chat["messages"], chat["stream_options"], "store" in chat
        ([{'role': 'user', 'content': 'hi'}], {'include_usage': True}, False)
    """
    chat: dict[str, Any] = {"model": payload["model"], "messages": []}
    for field, value in payload.items():
        rule = CHAT_RULES.get(field)
        if rule is not None and value is not None:
            rule(value, chat)
    if not chat["messages"]:
        raise _bad("input", "'input' holds no message for a chat-completions upstream to answer")
    return chat


def _keep(name: str) -> Callable[[Any, dict[str, Any]], None]:
    def rule(value: Any, chat: dict[str, Any]) -> None:
        chat[name] = value

    return rule


def _refuse(field: str, why: str) -> Callable[[Any, dict[str, Any]], None]:
    def rule(value: Any, chat: dict[str, Any]) -> None:
        raise _bad(field, f"'{field}' is not supported by chat-completions upstreams: {why}")

    return rule


def _instructions(value: str, chat: dict[str, Any]) -> None:
    chat["messages"].insert(0, {"role": "system", "content": value})


def _chat_part(where: str, part: dict[str, Any], role: str) -> dict[str, Any]:
    typ = part["type"]
    if typ in ("input_text", "output_text"):
        return {"type": "text", "text": part["text"]}
    if typ == "refusal" and role == "assistant":
        return {"type": "refusal", "refusal": part["refusal"]}
    if role != "user" or typ == "refusal":
        raise _bad(f"{where}.type", f"'{where}.type' {typ!r} is not supported in {role} messages by chat upstreams")
    if typ == "input_image":
        if part.get("image_url") is None:
            raise _bad(f"{where}.file_id", "images by 'file_id' are not supported by chat-completions upstreams")
        detail = part.get("detail")
        image = {"url": part["image_url"], "detail": "high" if detail == "original" else detail or "auto"}
        return {"type": "image_url", "image_url": image}
    if part.get("file_url") is not None:
        raise _bad(f"{where}.file_url", "files by 'file_url' are not supported by chat-completions upstreams")
    file = {key: part[key] for key in ("file_id", "file_data", "filename") if part.get(key) is not None}
    return {"type": "file", "file": file}


def _content(where: str, content: Any, role: str) -> Any:
    if type(content) is str:
        return content
    parts = [_chat_part(f"{where}[{j}]", part, role) for j, part in enumerate(content)]
    if not parts:
        return ""
    return parts[0]["text"] if len(parts) == 1 and parts[0]["type"] == "text" else parts


def _tool_output(where: str, output: Any) -> Any:
    if type(output) is str:
        return output
    for j, part in enumerate(output):
        if part["type"] != "input_text":
            raise _bad(f"{where}[{j}].type", "function call outputs can only be text for chat-completions upstreams")
    return [{"type": "text", "text": part["text"]} for part in output]


def _input_messages(value: Any, chat: dict[str, Any]) -> None:
    messages: list[dict[str, Any]] = chat["messages"]
    if type(value) is str:
        messages.append({"role": "user", "content": value})
        return
    for i, item in enumerate(value):
        typ = item.get("type")
        if typ is None or typ == "message":
            role = item["role"]
            messages.append({"role": role, "content": _content(f"input[{i}].content", item["content"], role)})
        elif typ == "function_call":
            fn = {"name": item["name"], "arguments": item["arguments"]}
            call = {"id": item["call_id"], "type": "function", "function": fn}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":  # the turn's text, or the calls before this one
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif typ == "function_call_output":
            output = _tool_output(f"input[{i}].output", item["output"])
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": output})
        elif typ != "reasoning":
            raise _bad(
                f"input[{i}].type", f"input items of type {typ!r} are not supported by chat-completions upstreams"
            )


def _chat_tools(value: list[dict[str, Any]], chat: dict[str, Any]) -> None:
    tools = []
    for i, tool in enumerate(value):
        if tool["type"] != "function":
            raise _bad(
                f"tools[{i}].type",
                f"'tools[{i}].type' {tool['type']!r} is not supported by chat-completions upstreams "
                "(only function tools are)",
            )
        fn = {key: tool[key] for key in ("name", "description", "parameters", "strict") if tool.get(key) is not None}
        tools.append({"type": "function", "function": fn})
    if tools:
        chat["tools"] = tools


def _chat_tool_choice(value: Any, chat: dict[str, Any]) -> None:
    if type(value) is str:
        chat["tool_choice"] = value
        return
    typ = value["type"]
    if typ == "function":
        chat["tool_choice"] = {"type": "function", "function": {"name": value["name"]}}
        return
    tools = value.get("tools")
    if (
        typ == "allowed_tools"
        and value.get("mode") in ("auto", "required")
        and type(tools) is list
        and all(type(t) is dict and t.get("type") == "function" and type(t.get("name")) is str for t in tools)
    ):
        allowed = [{"type": "function", "function": {"name": t.get("name")}} for t in tools]
        chat["tool_choice"] = {"type": "allowed_tools", "allowed_tools": {"mode": value.get("mode"), "tools": allowed}}
        return
    raise _bad("tool_choice.type", f"'tool_choice' of type {typ!r} is not supported by chat-completions upstreams")


def _chat_text(value: dict[str, Any], chat: dict[str, Any]) -> None:
    if value.get("verbosity") is not None:
        chat["verbosity"] = value["verbosity"]
    fmt = value.get("format")
    if fmt is None:
        return
    if fmt["type"] != "json_schema":
        chat["response_format"] = {"type": fmt["type"]}
        return
    schema = {key: fmt[key] for key in ("name", "description", "schema", "strict") if fmt.get(key) is not None}
    chat["response_format"] = {"type": "json_schema", "json_schema": schema}


def _chat_reasoning(value: dict[str, Any], chat: dict[str, Any]) -> None:
    if value.get("effort") is not None:
        chat["reasoning_effort"] = value["effort"]


def _chat_stream(value: bool, chat: dict[str, Any]) -> None:
    chat["stream"] = value
    if value:
        chat["stream_options"] = {"include_usage": True}


_STATELESS = "the gateway does not store responses for them; send the whole conversation in 'input'"

#: Responses field -> the rule that writes its chat form (the table in the module docstring); a field not
#: listed is dropped.
CHAT_RULES: Final[dict[str, Callable[[Any, dict[str, Any]], None]]] = {
    "instructions": _instructions,
    "input": _input_messages,
    "max_output_tokens": _keep("max_completion_tokens"),
    **{
        field: _keep(field)
        for field in (
            "temperature",
            "top_p",
            "parallel_tool_calls",
            "user",
            "metadata",
            "service_tier",
            "safety_identifier",
            "prompt_cache_key",
        )
    },
    "tools": _chat_tools,
    "tool_choice": _chat_tool_choice,
    "text": _chat_text,
    "reasoning": _chat_reasoning,
    "stream": _chat_stream,
    "previous_response_id": _refuse("previous_response_id", _STATELESS),
    "conversation": _refuse("conversation", _STATELESS),
    "prompt": _refuse("prompt", "the gateway does not store prompt templates; send the prompt in 'input'"),
}


# ---- the answer ----------------------------------------------------------------------------------

#: chat ``finish_reason`` -> the ``incomplete_details.reason`` of an incomplete Response.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
#: Request fields a Response object echoes (when the caller passes the request).
_ECHOED = ("instructions", "max_output_tokens", "metadata", "temperature", "top_p", "user", "text", "truncation")


def reply_from_chat(body: bytes, request_id: str, model: str, *, request: dict[str, Any] | None = None) -> bytes:
    """The Response object for a chat.completion answer (a non-streamed Responses request served over chat).

    ``request`` (the client's Responses request), when given, supplies the fields a Response echoes (tools,
    tool_choice, temperature...); without it they take OpenAI's defaults.

    Raises:
        GatewayError: 502 ``upstream_bad_response`` when ``body`` is not a chat.completion.

    Example:
        >>> chat = b'{"created": 7, "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]}'
        >>> out = orjson.loads(reply_from_chat(chat, "r1", "m"))
        >>> out["id"], out["status"], out["output"][0]["content"][0]["text"]
        ('resp_r1', 'completed', 'hi')
    """
    try:
        answer = orjson.loads(body)
        choice = answer["choices"][0]
        message = choice["message"]
        if type(message) is not dict:
            raise TypeError(message)
    except (orjson.JSONDecodeError, LookupError, TypeError) as exc:
        raise GatewayError(
            ErrorKind.UPSTREAM_PROTOCOL, "the upstream's answer is not a chat completion with a choice"
        ) from exc
    finish = choice.get("finish_reason")
    incomplete = _INCOMPLETE.get(finish) if type(finish) is str else None
    status = "completed" if incomplete is None else "incomplete"
    output: list[dict[str, Any]] = []
    content = _answer_parts(message)
    if content:
        item = {"id": f"msg_{request_id}_0", "type": "message", "status": status, "role": "assistant"}
        output.append({**item, "content": content})
    for call in message.get("tool_calls") or ():
        fn = call.get("function") if type(call) is dict else None
        if type(fn) is dict:
            call_id = str(call.get("id") or "")
            output.append(
                {
                    "id": f"fc_{request_id}_{len(output)}",  # numbered by output index, as the stream's are
                    "type": "function_call",
                    "status": "completed",
                    "call_id": call_id,
                    "name": str(fn.get("name") or ""),
                    "arguments": str(fn.get("arguments") or ""),
                }
            )
    created = answer.get("created")
    req = request or {}
    response: dict[str, Any] = {
        "id": f"resp_{request_id}",
        "object": "response",
        "created_at": created if type(created) is int else int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": None if incomplete is None else {"reason": incomplete},
        "model": answer_model if type(answer_model := answer.get("model")) is str and answer_model else model,
        "output": output,
        "parallel_tool_calls": req.get("parallel_tool_calls") is not False,
        "tool_choice": req.get("tool_choice") or "auto",
        "tools": req.get("tools") or [],
        "usage": _chat_usage(answer.get("usage")),
        **{field: req.get(field) for field in _ECHOED},
    }
    return orjson.dumps(response)


def _answer_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The output_text (and refusal) parts of a chat answer's message."""
    content = message.get("content")
    if type(content) is list:  # some upstreams answer with text parts
        content = "".join(p["text"] for p in content if type(p) is dict and type(p.get("text")) is str)
    parts: list[dict[str, Any]] = []
    if type(content) is str and content:
        parts.append({"type": "output_text", "text": content, "annotations": []})
    refusal = message.get("refusal")
    if type(refusal) is str and refusal:
        parts.append({"type": "refusal", "refusal": refusal})
    return parts


def _chat_usage(usage: Any) -> dict[str, Any] | None:
    if type(usage) is not dict:
        return None
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    cached = _tokens(prompt_details.get("cached_tokens")) if type(prompt_details) is dict else 0
    reasoning = _tokens(completion_details.get("reasoning_tokens")) if type(completion_details) is dict else 0
    prompt = _tokens(usage.get("prompt_tokens"))
    completion = _tokens(usage.get("completion_tokens"))
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }


def usage_of_response(body: bytes) -> tuple[int, int, int, int] | None:
    """``(prompt, completion, cached, reasoning)`` tokens of a whole Response object, if it has usage (a count
    that is not a plausible token count reads as 0).

    Example:
        >>> usage_of_response(b'{"usage": {"input_tokens": 9, "output_tokens": -1, '
        ...                   b'"input_tokens_details": {"cached_tokens": 4}}}')
        (9, 0, 4, 0)
    """
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    usage = answer.get("usage") if type(answer) is dict else None
    if type(usage) is not dict:
        return None
    input_details = usage.get("input_tokens_details")
    output_details = usage.get("output_tokens_details")
    return (
        _tokens(usage.get("input_tokens")),
        _tokens(usage.get("output_tokens")),
        _tokens(input_details.get("cached_tokens")) if type(input_details) is dict else 0,
        _tokens(output_details.get("reasoning_tokens")) if type(output_details) is dict else 0,
    )


# ---- counting ------------------------------------------------------------------------------------


def prompt_text(payload: dict[str, Any]) -> str:
    """The text of a validated Responses request that costs input tokens, for the caller to count:
    instructions, every input text, function call arguments and outputs, tool definitions and the
    ``text.format`` schema.

    Example:
        >>> prompt_text({"instructions": "Be brief.", "input": [{"role": "user", "content": "hi"}]})
        'Be brief.\\nhi'
    """
    texts: list[str] = []
    if type(payload.get("instructions")) is str:
        texts.append(payload["instructions"])
    value = payload.get("input")
    if type(value) is str:
        texts.append(value)
    elif type(value) is list:
        for item in value:
            typ = item.get("type")
            if typ is None or typ == "message":
                _part_texts(item.get("content"), texts)
            elif typ == "function_call":
                texts.extend((item["name"], item["arguments"]))
            elif typ == "function_call_output":
                _part_texts(item.get("output"), texts)
    for tool in payload.get("tools") or ():
        if tool.get("type") == "function":
            texts.append(tool["name"])
            if type(tool.get("description")) is str:
                texts.append(tool["description"])
            if tool.get("parameters") is not None:
                texts.append(orjson.dumps(tool["parameters"]).decode())
        else:
            texts.append(orjson.dumps(tool).decode())
    fmt = (payload.get("text") or {}).get("format")
    if type(fmt) is dict and fmt.get("schema") is not None:
        texts.append(orjson.dumps(fmt["schema"]).decode())
    return "\n".join(texts)


def _part_texts(content: Any, texts: list[str]) -> None:
    if type(content) is str:
        texts.append(content)
    elif type(content) is list:
        for part in content:
            text = part.get("text", part.get("refusal"))
            if type(text) is str:
                texts.append(text)
