"""Anthropic Messages (``POST /v1/messages``): ingress checks, and the JSON bodies to and from the OpenAI chat hub.

An Anthropic request is checked once (:func:`validate_messages_request`, :func:`validate_count_tokens_request`),
sent as it is to an Anthropic upstream, and translated (:func:`to_chat`) for an OpenAI-format one; an OpenAI
chat request for an Anthropic upstream goes the other way (:func:`from_chat`). Whole answers are translated by
:func:`reply_to_chat` and :func:`reply_from_chat` (streams are the Rust core's). Every refusal is a 400
``invalid_value`` naming the JSON path, e.g. ``messages[1].content[0].source.media_type``; a bool is not an
integer; a ``null`` optional field counts as absent; unknown fields and block types pass (Anthropic adds them
often); ``cache_control`` may sit on any block, tool or the request (``{type: "ephemeral", ttl?: "5m"|"1h"}``).

Beyond the OpenAI chat checks: ``stop_sequences`` may hold up to ``max(requests.max_stop, 256)`` strings
(OpenAI's 4 is not Anthropic's limit); ``thinking`` also takes the SDK's ``adaptive`` and ``between_tools``;
a ``system`` role inside ``messages`` (the SDK's ``SystemMessageParam``) takes text only.

Anthropic -> OpenAI (:func:`to_chat`): ``system`` becomes one system message (text blocks joined by a blank
line, as are a user turn's text blocks); ``tool_result`` blocks become ``tool`` messages before the rest of
their turn (images in them move to that rest), ``is_error`` prefixes the content with ``"Error: "``;
``output_config.format`` becomes ``response_format`` json_schema; a tool's ``strict`` is kept; a ``system``
turn stays a system message where it is; a turn left empty by the drops is skipped. ``stop_sequences`` and
``temperature`` go as they are (an OpenAI upstream may refuse more than 4 stop sequences). A block or tool
with no chat form (server tools and their results, file sources, URL documents) is refused. Dropped
(:data:`DROPPED_TO_OPENAI`):

========================================  ==================================================================
field                                     why
========================================  ==================================================================
top_k                                     OpenAI chat has no top-k sampling
thinking                                  budgeted extended thinking is Anthropic's
cache_control                             explicit cache breakpoints: OpenAI caches prefixes itself
service_tier                              Anthropic's tiers (auto, standard_only) are not OpenAI's
output_config.effort                      Anthropic's effort levels; not every OpenAI model reasons
container, mcp_servers                    Anthropic-hosted tools and code containers
context_management, inference_geo, speed  Anthropic-side controls
thinking / redacted_thinking blocks       signed by Anthropic: no other model can read them
citations, document title and context     Anthropic's citation machinery
========================================  ==================================================================

Any other top-level field (Anthropic's newer ones) is dropped too: :func:`to_chat` copies only what it maps.

OpenAI -> Anthropic (:func:`from_chat`), one rule per field (:data:`ANTHROPIC_RULES`): **map** ``messages``
(system/developer to ``system``; tool messages to ``tool_result`` blocks of a user turn; same-role turns
merged, a user turn's tool results first), ``max_tokens``/``max_completion_tokens`` (else the upstream's
default), ``stop``, ``temperature`` (above 1 refused: Anthropic's range is 0..1), ``top_p``, ``user`` (to
``metadata.user_id``), ``tools``, ``tool_choice``, ``parallel_tool_calls``, ``response_format`` (JSON mode by
the forced tool :data:`JSON_TOOL`), ``stream``, ``reasoning_effort`` (thinking budgets in
:data:`THINKING_BUDGETS`; ``none``/``minimal`` ask for none); **refuse** (400 "not supported by Anthropic
upstreams") ``n`` above 1, ``logprobs`` true, ``top_logprobs`` above 0, a non-empty ``logit_bias``, ``audio``,
``modalities`` other than text, ``prediction``, ``web_search_options``, the legacy ``functions`` and
``function_call``; **drop** ``frequency_penalty``, ``presence_penalty``, ``seed``, ``service_tier``, ``store``,
``metadata``, ``stream_options``, and any field not in the table. A tool's ``strict`` is dropped (older
Anthropic-format servers refuse it); an empty tool-call ``arguments`` string reads as ``{}``; empty text parts,
and turns left empty, are skipped (Anthropic refuses empty text blocks).

Example:
    >>> chat = to_chat({"model": "m", "max_tokens": 9, "system": "be brief", "top_k": 5,
    ...                 "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
    >>> chat["messages"], "top_k" in chat
    ([{'role': 'system', 'content': 'be brief'}, {'role': 'user', 'content': 'hi'}], False)
    >>> back, json_mode = from_chat(chat, "claude-x", 1024)
    >>> back["system"], back["messages"], json_mode
    ('be brief', [{'role': 'user', 'content': 'hi'}], False)
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, Final, Literal

import orjson

from ferrogate import _core
from ferrogate.config.model import RequestBounds
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.protocols.checks import array as _list
from ferrogate.protocols.checks import bad as _bad
from ferrogate.protocols.checks import boolean as _bool
from ferrogate.protocols.checks import integer as _int
from ferrogate.protocols.checks import kind as _kind
from ferrogate.protocols.checks import number as _number
from ferrogate.protocols.checks import obj as _dict
from ferrogate.protocols.checks import tokens as _tokens

__all__ = [
    "ANTHROPIC_RULES",
    "DROPPED_TO_OPENAI",
    "JSON_TOOL",
    "count_prompt",
    "from_chat",
    "reply_from_chat",
    "reply_to_chat",
    "to_chat",
    "usage_of_message",
    "validate_count_tokens_request",
    "validate_messages_request",
]

#: The tool an Anthropic upstream is forced to call for an OpenAI JSON-mode request; its input is the answer.
JSON_TOOL: Final = "json_response"

DROPPED_TO_OPENAI: Final[dict[str, str]] = {
    "top_k": "OpenAI chat has no top-k sampling",
    "thinking": "budgeted extended thinking is Anthropic's",
    "cache_control": "explicit cache breakpoints: OpenAI caches prefixes itself",
    "service_tier": "Anthropic's tiers (auto, standard_only) are not OpenAI's",
    "output_config.effort": "Anthropic's effort levels; not every OpenAI model reasons",
    "container": "an Anthropic code-execution container",
    "mcp_servers": "Anthropic-hosted MCP connections",
    "context_management": "an Anthropic-side control",
    "inference_geo": "an Anthropic-side control",
    "speed": "an Anthropic-side control",
    "thinking / redacted_thinking blocks": "signed by Anthropic: no other model can read them",
    "citations": "Anthropic's citation machinery",
    "document title and context": "Anthropic's citation machinery",
}

Rule = Literal["drop", "refuse", "map"]
ANTHROPIC_RULES: Final[dict[str, Rule]] = {
    "model": "map",
    "messages": "map",
    "max_tokens": "map",
    "max_completion_tokens": "map",
    "stop": "map",
    "temperature": "map",
    "top_p": "map",
    "user": "map",
    "tools": "map",
    "tool_choice": "map",
    "parallel_tool_calls": "map",
    "response_format": "map",
    "stream": "map",
    "reasoning_effort": "map",
    "n": "refuse",
    "logprobs": "refuse",
    "top_logprobs": "refuse",
    "logit_bias": "refuse",
    "audio": "refuse",
    "modalities": "refuse",
    "prediction": "refuse",
    "web_search_options": "refuse",
    "functions": "refuse",
    "function_call": "refuse",
    "frequency_penalty": "drop",
    "presence_penalty": "drop",
    "seed": "drop",
    "service_tier": "drop",
    "store": "drop",
    "metadata": "drop",
    "stream_options": "drop",
}

#: When a "refuse" field actually asks for something (``n: 1`` or ``logprobs: false`` ask nothing).
_ASKS: dict[str, Callable[[Any], bool]] = {
    "n": lambda v: v != 1,
    "logprobs": lambda v: v is True,
    "top_logprobs": lambda v: v != 0,
    "logit_bias": bool,
    "modalities": lambda v: type(v) is not list or any(m != "text" for m in v),
}


def _always(value: Any) -> bool:
    """Any non-null value of the other "refuse" fields asks for what Anthropic cannot give."""
    return True


#: ``reasoning_effort`` -> Anthropic ``thinking.budget_tokens`` (``none``/``minimal``: no thinking).
THINKING_BUDGETS: Final[dict[str, int]] = {"low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768}

#: Estimates :func:`count_prompt` adds: per message (role and turn markers, as OpenAI's 3), for the reply's
#: priming, per image or non-text document (Anthropic's ~1.15 megapixel ceiling is about 1,600 tokens), and
#: Anthropic's tool-use system prompt when tools are given (346 tokens on its current models).
MESSAGE_TOKENS: Final = 3
REPLY_TOKENS: Final = 3
IMAGE_TOKENS: Final = 1600
TOOLS_TOKENS: Final = 346

_MAX_MODEL = 256
_MAX_USER = 512
_MAX_STOP = 256
_INT64 = 2**63
_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+);base64,(.*)", re.DOTALL)


def _str(field: str, value: Any, most: int | None = None, empty: bool = True) -> None:
    if type(value) is not str:
        raise _bad(field, f"'{field}' must be a string, got {_kind(value)}")
    if most is not None and len(value) > most:
        raise _bad(field, f"'{field}' must be at most {most} characters, got {len(value)}")
    if not empty and not value:
        raise _bad(field, f"'{field}' must not be empty")


def _one_of(field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if type(value) is not str or value not in allowed:
        raise _bad(field, f"'{field}' must be one of {', '.join(allowed)}")
    return value


# ---- ingress checks ------------------------------------------------------------------------------


def validate_messages_request(payload: Any, bounds: RequestBounds) -> None:
    """Check a parsed ``/v1/messages`` body; ``bounds`` are the configured ceilings.

    Raises:
        GatewayError: 400 ``invalid_value`` naming the first bad field in ``param``.

    Example:
        >>> ok = {"model": "claude", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
        >>> validate_messages_request(ok, RequestBounds())
        >>> try:
        ...     validate_messages_request({**ok, "max_tokens": True}, RequestBounds())
        ... except GatewayError as err:
        ...     print(err.param)
        max_tokens
    """
    _validate(payload, bounds, counting=False)


def validate_count_tokens_request(payload: Any, bounds: RequestBounds) -> None:
    """Check a parsed ``/v1/messages/count_tokens`` body: a Messages request without ``max_tokens`` and ``stream``.

    Example:
        >>> validate_count_tokens_request({"model": "claude", "messages": [{"role": "user", "content": "hi"}]},
        ...                               RequestBounds())
    """
    _validate(payload, bounds, counting=True)


def _validate(payload: Any, bounds: RequestBounds, counting: bool) -> None:
    if type(payload) is not dict:
        raise _bad("", "the request body must be a JSON object")
    model = payload.get("model")
    if type(model) is not str or not model:
        raise _bad("model", "'model' is required and must be a non-empty string")
    _str("model", model, _MAX_MODEL)
    if not counting:
        _int("max_tokens", payload.get("max_tokens"), 1, bounds.max_output_tokens)
    messages = payload.get("messages")
    if type(messages) is not list:
        what = "missing" if messages is None else _kind(messages)
        raise _bad("messages", f"'messages' must be an array of message objects, got {what}")
    if not messages:
        raise _bad("messages", "'messages' must contain at least one message")
    if len(messages) > bounds.max_messages:
        raise _bad("messages", f"'messages' must hold at most {bounds.max_messages} messages, got {len(messages)}")
    for i, msg in enumerate(messages):
        _message(i, msg)
    for field, value in payload.items():
        check = _CHECKS.get(field)
        if check is not None and value is not None and not (counting and field in ("max_tokens", "stream")):
            check(value, bounds, payload)


def _message(i: int, msg: Any) -> None:
    where = f"messages[{i}]"
    if type(msg) is not dict:
        raise _bad(where, f"'{where}' must be a message object, got {_kind(msg)}")
    role = _one_of(f"{where}.role", msg.get("role"), ("user", "assistant", "system"))
    content = msg.get("content")
    if type(content) is str:
        return
    if type(content) is not list:
        raise _bad(f"{where}.content", f"'{where}.content' must be a string or an array of content blocks")
    if not content:
        raise _bad(f"{where}.content", f"'{where}.content' must hold at least one content block")
    for j, block in enumerate(content):
        _block(f"{where}.content[{j}]", block, role)


def _block(at: str, block: Any, role: str) -> None:
    if type(block) is not dict:
        raise _bad(at, f"'{at}' must be a content block object, got {_kind(block)}")
    typ = block.get("type")
    if type(typ) is not str:
        raise _bad(f"{at}.type", f"'{at}.type' must be a string, got {_kind(typ)}")
    only = _ROLE_OF.get(typ)
    if (only is not None and role != only) or (role == "system" and typ != "text"):
        allowed = f"{only} messages" if only is not None and role != only else "text blocks in a system message"
        raise _bad(f"{at}.type", f"'{at}.type' {typ!r} is only allowed as {allowed}")
    check = _BLOCKS.get(typ)
    if check is not None:
        check(at, block)
    if block.get("cache_control") is not None:
        _cache_control(f"{at}.cache_control", block["cache_control"])


def _cache_control(at: str, value: Any) -> None:
    cc = _dict(at, value)
    _one_of(f"{at}.type", cc.get("type"), ("ephemeral",))
    if cc.get("ttl") is not None:
        _one_of(f"{at}.ttl", cc["ttl"], ("5m", "1h"))


def _text(at: str, block: dict[str, Any]) -> None:
    _str(f"{at}.text", block.get("text"))


def _image(at: str, block: dict[str, Any]) -> None:
    source = _dict(f"{at}.source", block.get("source"))
    typ = _one_of(f"{at}.source.type", source.get("type"), ("base64", "url", "file"))
    if typ == "base64":
        _one_of(f"{at}.source.media_type", source.get("media_type"), tuple(sorted(_MEDIA_TYPES)))
        _str(f"{at}.source.data", source.get("data"))
    elif typ == "url":
        _str(f"{at}.source.url", source.get("url"), empty=False)
    else:
        _str(f"{at}.source.file_id", source.get("file_id"), empty=False)


def _tool_use(at: str, block: dict[str, Any]) -> None:
    _str(f"{at}.id", block.get("id"), 512, empty=False)
    _str(f"{at}.name", block.get("name"), 128, empty=False)
    _dict(f"{at}.input", block.get("input"))


def _tool_result(at: str, block: dict[str, Any]) -> None:
    _str(f"{at}.tool_use_id", block.get("tool_use_id"), 512, empty=False)
    if block.get("is_error") is not None:
        _bool(f"{at}.is_error", block["is_error"])
    content = block.get("content")
    if content is None or type(content) is str:
        return
    if type(content) is not list:
        raise _bad(f"{at}.content", f"'{at}.content' must be a string or an array of content blocks")
    for k, inner in enumerate(content):
        _block(f"{at}.content[{k}]", inner, "user")


def _thinking(at: str, block: dict[str, Any]) -> None:
    _str(f"{at}.thinking", block.get("thinking"))
    _str(f"{at}.signature", block.get("signature"))


def _redacted(at: str, block: dict[str, Any]) -> None:
    _str(f"{at}.data", block.get("data"))


_BLOCKS: dict[str, Callable[[str, dict[str, Any]], None]] = {
    "text": _text,
    "image": _image,
    "tool_use": _tool_use,
    "tool_result": _tool_result,
    "thinking": _thinking,
    "redacted_thinking": _redacted,
}
_ROLE_OF = {"tool_use": "assistant", "tool_result": "user"}

Check = Callable[[Any, RequestBounds, dict[str, Any]], None]


def _system(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    if type(value) is str:
        return
    if type(value) is not list:
        raise _bad("system", f"'system' must be a string or an array of text blocks, got {_kind(value)}")
    for j, block in enumerate(value):
        _block(f"system[{j}]", block, "system")


def _stop_sequences(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    for i, seq in enumerate(_list("stop_sequences", value, max(bounds.max_stop, _MAX_STOP))):
        _str(f"stop_sequences[{i}]", seq)


def _metadata(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    user = _dict("metadata", value).get("user_id")
    if user is not None:
        _str("metadata.user_id", user, _MAX_USER)


def _tools(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    for i, tool in enumerate(_list("tools", value, bounds.max_tools)):
        where = f"tools[{i}]"
        tool = _dict(where, tool)
        if tool.get("type") not in (None, "custom"):  # a server tool (web_search_..., bash_...): Anthropic checks it
            _str(f"{where}.type", tool["type"])
            continue
        name = tool.get("name")
        if type(name) is not str or not _TOOL_NAME.fullmatch(name):
            got = repr(name[:80]) if type(name) is str else _kind(name)
            raise _bad(f"{where}.name", f"'{where}.name' must match ^[a-zA-Z0-9_-]{{1,128}}$, got {got}")
        if tool.get("description") is not None:
            _str(f"{where}.description", tool["description"])
        _dict(f"{where}.input_schema", tool.get("input_schema"))
        if tool.get("strict") is not None:
            _bool(f"{where}.strict", tool["strict"])
        if tool.get("cache_control") is not None:
            _cache_control(f"{where}.cache_control", tool["cache_control"])


def _tool_choice(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    choice = _dict("tool_choice", value)
    typ = _one_of("tool_choice.type", choice.get("type"), ("auto", "any", "tool", "none"))
    if typ == "tool":
        _str("tool_choice.name", choice.get("name"), 128, empty=False)
    if choice.get("disable_parallel_tool_use") is not None:
        _bool("tool_choice.disable_parallel_tool_use", choice["disable_parallel_tool_use"])


def _thinking_config(value: Any, bounds: RequestBounds, payload: dict[str, Any]) -> None:
    config = _dict("thinking", value)
    typ = _one_of("thinking.type", config.get("type"), ("enabled", "disabled", "adaptive", "between_tools"))
    if typ == "enabled":
        _int("thinking.budget_tokens", config.get("budget_tokens"), 1024, _INT64 - 1)
        most = payload.get("max_tokens")
        if type(most) is int and config["budget_tokens"] >= most:
            raise _bad("thinking.budget_tokens", f"'thinking.budget_tokens' must be less than max_tokens ({most})")
    if config.get("display") is not None:
        _one_of("thinking.display", config["display"], ("summarized", "omitted"))


def _output_config(value: Any, bounds: RequestBounds, _: dict[str, Any]) -> None:
    config = _dict("output_config", value)
    if config.get("effort") is not None:
        _str("output_config.effort", config["effort"])
    if config.get("format") is not None:
        fmt = _dict("output_config.format", config["format"])
        _one_of("output_config.format.type", fmt.get("type"), ("json_schema",))
        _dict("output_config.format.schema", fmt.get("schema"))


_CHECKS: dict[str, Check] = {
    "system": _system,
    "stop_sequences": _stop_sequences,
    "temperature": lambda v, b, p: _number("temperature", v, 0, 1),
    "top_p": lambda v, b, p: _number("top_p", v, 0, 1),
    "top_k": lambda v, b, p: _int("top_k", v, 0, _INT64 - 1),
    "stream": lambda v, b, p: _bool("stream", v),
    "metadata": _metadata,
    "tools": _tools,
    "tool_choice": _tool_choice,
    "thinking": _thinking_config,
    "service_tier": lambda v, b, p: _str("service_tier", v),
    "cache_control": lambda v, b, p: _cache_control("cache_control", v),
    "output_config": _output_config,
}


# ---- Anthropic -> OpenAI chat --------------------------------------------------------------------


def to_chat(payload: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI chat form of a validated Anthropic request (for an OpenAI-format upstream).

    Raises:
        GatewayError: 400 naming a block or tool that has no chat form (a server tool, a file source...).

    Example:
        >>> out = to_chat({"model": "m", "max_tokens": 5, "stream": True, "messages": [
        ...     {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
        ...     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "2"}]}]})
        >>> out["messages"][0]["tool_calls"][0]["function"], out["messages"][1], out["stream_options"]
        ({'name': 'f', 'arguments': '{"a":1}'}, {'role': 'tool', 'tool_call_id': 't1', 'content': '2'}, \
{'include_usage': True})
    """
    messages: list[dict[str, Any]] = []
    system = payload.get("system")
    if system:
        messages.append({"role": "system", "content": _joined(system)})
    for i, msg in enumerate(payload["messages"]):
        messages.extend(_chat_turn(i, msg))
    out: dict[str, Any] = {"model": payload["model"], "messages": messages}
    if payload.get("max_tokens") is not None:
        out["max_tokens"] = payload["max_tokens"]
    if payload.get("stop_sequences"):
        out["stop"] = payload["stop_sequences"]
    for field in ("temperature", "top_p"):
        if payload.get(field) is not None:
            out[field] = payload[field]
    user = (payload.get("metadata") or {}).get("user_id")
    if user is not None:
        out["user"] = user
    tools = payload.get("tools")
    if tools:
        out["tools"] = [_chat_tool(i, tool) for i, tool in enumerate(tools)]
        choice = payload.get("tool_choice")
        if choice is not None:
            out["tool_choice"] = _chat_choice(choice)
            if choice.get("disable_parallel_tool_use") is not None:
                out["parallel_tool_calls"] = not choice["disable_parallel_tool_use"]
    fmt = (payload.get("output_config") or {}).get("format")
    if fmt is not None:
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": JSON_TOOL, "schema": fmt["schema"]}}
    if payload.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _joined(content: str | list[dict[str, Any]]) -> str:
    """A string, or the text of text blocks joined by a blank line."""
    if isinstance(content, str):
        return content
    return "\n\n".join(block["text"] for block in content if block.get("type") == "text")


def _chat_turn(i: int, msg: dict[str, Any]) -> list[dict[str, Any]]:
    """``messages[i]`` as chat messages: none (all its blocks dropped), one, or a user turn's tool messages first."""
    role, content = msg["role"], msg["content"]
    if type(content) is str:
        return [{"role": role, "content": content}]
    if role == "system":
        return [{"role": "system", "content": _joined(content)}]
    if role == "assistant":
        return _chat_assistant(i, content)
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"messages[{i}].content[{j}]"
        if block["type"] == "tool_result":
            tools.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": _result(at, block, parts)})
        else:
            part = _chat_part(at, block)
            if part is not None:
                parts.append(part)
    if parts:
        if all(part["type"] == "text" for part in parts):
            tools.append({"role": "user", "content": "\n\n".join(part["text"] for part in parts)})
        else:
            tools.append({"role": "user", "content": parts})
    return tools


def _chat_assistant(i: int, content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        typ = block["type"]
        if typ == "text":
            texts.append(block["text"])
        elif typ == "tool_use":
            arguments = orjson.dumps(block["input"]).decode()
            calls.append(
                {"id": block["id"], "type": "function", "function": {"name": block["name"], "arguments": arguments}}
            )
        elif typ not in ("thinking", "redacted_thinking"):
            raise _no_chat_form(f"messages[{i}].content[{j}].type", typ)
    if not texts and not calls:
        return []
    out: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(texts) if texts else None}
    if calls:
        out["tool_calls"] = calls
    return [out]


def _chat_part(at: str, block: dict[str, Any]) -> dict[str, Any] | None:
    """A user block as a chat content part (``None`` for a dropped block)."""
    typ = block["type"]
    if typ == "text":
        return {"type": "text", "text": block["text"]}
    if typ == "image":
        source = block["source"]
        if source["type"] == "base64":
            return {"type": "image_url", "image_url": {"url": f"data:{source['media_type']};base64,{source['data']}"}}
        if source["type"] == "url":
            return {"type": "image_url", "image_url": {"url": source["url"]}}
        raise _no_chat_form(f"{at}.source.type", source["type"])
    if typ == "document":  # unchecked at ingress (Anthropic checks it): read defensively
        found = block.get("source")
        doc: dict[str, Any] = found if type(found) is dict else {}
        kind, data = doc.get("type"), doc.get("data")
        if kind == "text" and type(data) is str:
            return {"type": "text", "text": data}
        if kind == "base64" and type(data) is str and doc.get("media_type") == "application/pdf":
            title = block.get("title")
            name = title if type(title) is str and title else "document.pdf"
            return {"type": "file", "file": {"filename": name, "file_data": f"data:application/pdf;base64,{data}"}}
        raise _no_chat_form(f"{at}.source.type", kind)
    if typ in ("thinking", "redacted_thinking"):
        return None
    raise _no_chat_form(f"{at}.type", typ)


def _result(at: str, block: dict[str, Any], parts: list[dict[str, Any]]) -> str:
    """A tool_result's content as a tool message's text; its images go to ``parts`` (the rest of the turn)."""
    content = block.get("content")
    if content is None:
        text = ""
    elif type(content) is str:
        text = content
    else:
        texts = []
        for k, inner in enumerate(content):
            part = _chat_part(f"{at}.content[{k}]", inner)
            if part is None:
                continue
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                parts.append(part)
        text = "\n\n".join(texts)
    return f"Error: {text}" if block.get("is_error") is True else text


def _no_chat_form(param: str, what: Any) -> GatewayError:
    return _bad(param, f"'{param}' {what!r} has no OpenAI chat form: the upstream for this model speaks OpenAI chat")


def _chat_tool(i: int, tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type") not in (None, "custom"):
        raise _no_chat_form(f"tools[{i}].type", tool["type"])
    fn: dict[str, Any] = {"name": tool["name"]}
    if tool.get("description") is not None:
        fn["description"] = tool["description"]
    fn["parameters"] = tool["input_schema"]
    if tool.get("strict") is not None:
        fn["strict"] = tool["strict"]
    return {"type": "function", "function": fn}


def _chat_choice(choice: dict[str, Any]) -> str | dict[str, Any]:
    typ = choice["type"]
    if typ == "tool":
        return {"type": "function", "function": {"name": choice["name"]}}
    return {"auto": "auto", "any": "required", "none": "none"}[typ]


# ---- OpenAI chat -> Anthropic --------------------------------------------------------------------


def from_chat(payload: dict[str, Any], upstream_model: str, default_max_tokens: int) -> tuple[dict[str, Any], bool]:
    """The Anthropic Messages form of a validated chat request, and whether it asked for JSON mode.

    JSON mode (``response_format`` json_object or json_schema) forces the tool :data:`JSON_TOOL`, whose input
    schema is the requested one; :func:`reply_to_chat` turns its call back into the answer's content.

    Raises:
        GatewayError: 400 naming a field the Messages API cannot honour (see :data:`ANTHROPIC_RULES`).

    Example:
        >>> out, json_mode = from_chat({"model": "gpt", "seed": 1, "response_format": {"type": "json_object"},
        ...                             "messages": [{"role": "developer", "content": "be terse"},
        ...                                          {"role": "user", "content": "hi"}]}, "claude-x", 512)
        >>> out["model"], out["max_tokens"], out["system"], out["tool_choice"], json_mode, "seed" in out
        ('claude-x', 512, 'be terse', {'type': 'tool', 'name': 'json_response'}, True, False)
    """
    for field, value in payload.items():
        if value is not None and ANTHROPIC_RULES.get(field) == "refuse" and _ASKS.get(field, _always)(value):
            raise _bad(field, f"'{field}' is not supported by Anthropic upstreams")
    system, messages = _turns(payload["messages"])
    most = payload.get("max_completion_tokens") or payload.get("max_tokens") or default_max_tokens
    out: dict[str, Any] = {"model": upstream_model, "max_tokens": most, "messages": messages}
    if system:
        out["system"] = system
    stop = payload.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if type(stop) is str else stop
    temperature = payload.get("temperature")
    if temperature is not None:
        if temperature > 1:
            raise _bad(
                "temperature", f"'temperature' must be between 0 and 1 on Anthropic upstreams, got {temperature}"
            )
        out["temperature"] = temperature
    if payload.get("top_p") is not None:
        out["top_p"] = payload["top_p"]
    if type(payload.get("user")) is str:
        out["metadata"] = {"user_id": payload["user"]}
    tools = [_anthropic_tool(i, tool) for i, tool in enumerate(payload.get("tools") or ())]
    choice = _anthropic_choice(payload.get("tool_choice")) if tools else None
    json_mode = _json_schema(payload.get("response_format"))
    if json_mode is not None:
        tools.append({"name": JSON_TOOL, "description": "Answer with this tool's input.", "input_schema": json_mode})
        choice = {"type": "tool", "name": JSON_TOOL}
    if payload.get("parallel_tool_calls") is False and tools:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if tools:
        out["tools"] = tools
    if choice is not None:
        out["tool_choice"] = choice
    effort = payload.get("reasoning_effort")
    if effort is not None and effort not in ("none", "minimal"):
        out["thinking"] = _thinking_of(effort, most, choice)
    if payload.get("stream") is True:
        out["stream"] = True
    return out, json_mode is not None


def _thinking_of(effort: Any, most: int, choice: dict[str, Any] | None) -> dict[str, Any]:
    budget = THINKING_BUDGETS.get(effort) if type(effort) is str else None
    if budget is None:
        raise _bad(
            "reasoning_effort", f"'reasoning_effort' must be one of none, minimal, {', '.join(THINKING_BUDGETS)}"
        )
    if budget >= most:
        raise _bad(
            "reasoning_effort",
            f"'reasoning_effort' {effort!r} asks for {budget} thinking tokens, which must be fewer than max_tokens "
            f"({most}) on Anthropic upstreams",
        )
    if choice is not None and choice["type"] in ("any", "tool"):
        raise _bad(
            "reasoning_effort",
            "'reasoning_effort' cannot be combined with a forced tool (tool_choice 'required' or a named function, "
            "or a JSON response_format) on Anthropic upstreams",
        )
    return {"type": "enabled", "budget_tokens": budget}


def _turns(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The ``system`` text and the alternating turns of chat ``messages``."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        role = msg["role"]
        content: str | list[dict[str, Any]]
        if role in ("system", "developer"):
            text = _part_text(msg["content"])
            if text:
                system.append(text)
            continue
        if role == "user":
            content = _user_blocks(i, msg["content"])
        elif role == "assistant":
            content = _assistant_blocks(i, msg)
        elif role == "tool":
            content, role = [_tool_result_block(msg)], "user"
        else:
            raise _bad(f"messages[{i}].role", f"'messages[{i}].role' {role!r} is not supported by Anthropic upstreams")
        if not content:
            continue
        last = turns[-1] if turns else None
        if last is None or last["role"] != role:
            turns.append({"role": role, "content": content})
            continue
        blocks = _as_blocks(last["content"]) + _as_blocks(content)
        if role == "user":  # Anthropic wants a turn's tool results before its other blocks
            blocks = [b for b in blocks if b["type"] == "tool_result"] + [
                b for b in blocks if b["type"] != "tool_result"
            ]
        last["content"] = blocks
    return "\n\n".join(system), turns


def _as_blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _part_text(content: Any) -> str:
    """A chat content (string, parts or null) as text: the text (and refusal) parts joined by a blank line."""
    if content is None or type(content) is str:
        return content or ""
    return "\n\n".join(p.get("text") or p.get("refusal") or "" for p in content if p.get("type") in ("text", "refusal"))


def _user_blocks(i: int, content: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        at = f"messages[{i}].content[{j}]"
        typ = part["type"]
        if typ == "text":
            if part["text"]:
                blocks.append({"type": "text", "text": part["text"]})
        elif typ == "image_url":
            blocks.append({"type": "image", "source": _image_source(f"{at}.image_url.url", part["image_url"]["url"])})
        elif typ == "file":
            blocks.append(_document(at, part["file"]))
        else:
            raise _bad(f"{at}.type", f"'{at}.type' {typ!r} is not supported by Anthropic upstreams")
    return blocks


def _image_source(at: str, url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        found = _DATA_URL.fullmatch(url)
        if found is None or found[1] not in _MEDIA_TYPES:
            raise _bad(
                at, f"'{at}' must be a base64 data URL of image/jpeg, image/png, image/gif or image/webp on Anthropic"
            )
        return {"type": "base64", "media_type": found[1], "data": found[2]}
    if url.startswith(("https://", "http://")):
        return {"type": "url", "url": url}
    raise _bad(at, f"'{at}' must be an http(s) URL or a base64 data URL on Anthropic upstreams")


def _document(at: str, file: dict[str, Any]) -> dict[str, Any]:
    data = file.get("file_data")
    found = _DATA_URL.fullmatch(data) if type(data) is str else None
    if found is None or found[1] != "application/pdf":
        raise _bad(
            f"{at}.file", f"'{at}.file' must carry a PDF as a base64 data URL (file_data) on Anthropic upstreams"
        )
    return {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": found[2]}}


def _assistant_blocks(i: int, msg: dict[str, Any]) -> str | list[dict[str, Any]]:
    if msg.get("function_call") is not None:
        where = f"messages[{i}].function_call"
        raise _bad(where, f"'{where}' (legacy function calling) is not supported by Anthropic upstreams")
    text = _part_text(msg.get("content"))
    calls = msg.get("tool_calls")
    if not calls:
        return text
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for j, call in enumerate(calls):
        at = f"messages[{i}].tool_calls[{j}]"
        if call.get("type") != "function":
            raise _bad(f"{at}.type", f"'{at}.type' {call.get('type')!r} is not supported by Anthropic upstreams")
        fn = call["function"]
        arguments = fn["arguments"]
        try:
            args = orjson.loads(arguments) if arguments.strip() else {}
        except orjson.JSONDecodeError:
            args = None
        if type(args) is not dict:
            where = f"{at}.function.arguments"
            raise _bad(where, f"'{where}' must be a JSON object for an Anthropic upstream")
        blocks.append({"type": "tool_use", "id": call["id"], "name": fn["name"], "input": args})
    return blocks


def _tool_result_block(msg: dict[str, Any]) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": msg["tool_call_id"]}
    content = msg.get("content")
    if type(content) is list:
        texts = [{"type": "text", "text": p["text"]} for p in content if p.get("type") == "text" and p.get("text")]
        if texts:
            block["content"] = texts
    elif content:
        block["content"] = content
    return block


def _anthropic_tool(i: int, tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type") != "function":
        where = f"tools[{i}].type"
        raise _bad(where, f"'{where}' {tool.get('type')!r} is not supported by Anthropic upstreams")
    fn = tool["function"]
    out: dict[str, Any] = {"name": fn["name"]}
    if fn.get("description") is not None:
        out["description"] = fn["description"]
    out["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
    return out


def _anthropic_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if type(choice) is str:
        return {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]}
    if choice.get("type") != "function":
        raise _bad(
            "tool_choice.type", f"'tool_choice.type' {choice.get('type')!r} is not supported by Anthropic upstreams"
        )
    return {"type": "tool", "name": choice["function"]["name"]}


def _json_schema(fmt: Any) -> dict[str, Any] | None:
    """The JSON tool's input schema for a JSON ``response_format`` (``None`` for text or none)."""
    typ = fmt.get("type") if type(fmt) is dict else None
    if typ == "json_object":
        return {"type": "object"}
    if typ != "json_schema":
        return None
    schema = fmt["json_schema"].get("schema") or {"type": "object"}
    if schema.get("type", "object") != "object":
        where = "response_format.json_schema.schema"
        raise _bad(where, f"'{where}' must describe an object on Anthropic upstreams (JSON mode is a tool's input)")
    return {"type": "object", **schema}


# ---- whole answers -------------------------------------------------------------------------------

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def _answer(body: bytes, what: str) -> dict[str, Any]:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = None
    if type(answer) is not dict:
        raise GatewayError(ErrorKind.UPSTREAM_PROTOCOL, f"the upstream's answer is not {what}")
    return answer


def reply_to_chat(body: bytes, request_id: str, model: str, json_mode: bool = False) -> bytes:
    """The chat.completion for an Anthropic Message answer (an OpenAI chat client served by an Anthropic upstream).

    With ``json_mode`` the :data:`JSON_TOOL` call's input is the answer's content. A message's text blocks
    are joined as they are (they are one answer, split around citations); thinking blocks become
    ``reasoning_content``; ``reasoning_tokens`` is ``usage.output_tokens_details.thinking_tokens`` when the
    upstream gives it, else 0.

    Raises:
        GatewayError: 502 ``upstream_bad_response`` when ``body`` is not a JSON object.

    Example:
        >>> msg = b'{"model": "claude-x", "content": [{"type": "text", "text": "hi"}], "stop_reason": "max_tokens",'
        >>> msg += b' "usage": {"input_tokens": 5, "output_tokens": 2, "cache_read_input_tokens": 4}}'
        >>> out = orjson.loads(reply_to_chat(msg, "r1", "m"))
        >>> out["id"], out["choices"][0]["message"]["content"], out["choices"][0]["finish_reason"], out["usage"]
        ('chatcmpl-r1', 'hi', 'length', {'prompt_tokens': 9, 'completion_tokens': 2, 'total_tokens': 11, \
'prompt_tokens_details': {'cached_tokens': 4}, 'completion_tokens_details': {'reasoning_tokens': 0}})
    """
    answer = _answer(body, "an Anthropic message")
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    json_content: str | None = None
    content = answer.get("content")
    for block in content if type(content) is list else ():
        typ = block.get("type") if type(block) is dict else None
        if typ == "text" and type(block.get("text")) is str:
            texts.append(block["text"])
        elif typ == "thinking" and type(block.get("thinking")) is str:
            thoughts.append(block["thinking"])
        elif typ == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            if json_mode and block.get("name") == JSON_TOOL:
                json_content = arguments
                continue
            fn = {"name": str(block.get("name") or ""), "arguments": arguments}
            calls.append({"id": str(block.get("id") or ""), "type": "function", "function": fn})
    message: dict[str, Any] = {
        "role": "assistant",
        "content": json_content if json_content is not None else "".join(texts) if texts else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)  # as a stream's thinking deltas add up
    reason = answer.get("stop_reason")
    finish = "stop" if json_content is not None else _FINISH.get(reason, "stop") if type(reason) is str else "stop"
    prompt, completion, cached, reasoning, _ = _usage(answer)
    answer_model = answer.get("model")
    chat = {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer_model if type(answer_model) is str and answer_model else model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        },
    }
    return orjson.dumps(chat)


def reply_from_chat(body: bytes, request_id: str, model: str) -> bytes:
    """The Anthropic Message for a chat.completion answer (an Anthropic client served by an OpenAI-format upstream).

    ``reasoning_content`` is dropped (a thinking block needs Anthropic's signature); a tool call whose
    arguments are not a JSON object gets ``{}`` as input; a refusal becomes a text block.

    Raises:
        GatewayError: 502 ``upstream_bad_response`` when ``body`` is not a chat completion with a choice.

    Example:
        >>> chat = b'{"choices": [{"message": {"content": "hi"}, "finish_reason": "length"}],'
        >>> chat += b' "usage": {"prompt_tokens": 9, "completion_tokens": 2,'
        >>> chat += b' "prompt_tokens_details": {"cached_tokens": 4}}}'
        >>> out = orjson.loads(reply_from_chat(chat, "r1", "claude-x"))
        >>> out["id"], out["content"], out["stop_reason"], out["usage"]
        ('msg_r1', [{'type': 'text', 'text': 'hi'}], 'max_tokens', {'input_tokens': 5, 'output_tokens': 2, \
'cache_read_input_tokens': 4, 'cache_creation_input_tokens': 0})
    """
    answer = _answer(body, "a chat completion")
    choices = answer.get("choices")
    choice: dict[str, Any] = choices[0] if type(choices) is list and choices and type(choices[0]) is dict else {}
    message = choice.get("message")
    if type(message) is not dict:
        raise GatewayError(ErrorKind.UPSTREAM_PROTOCOL, "the upstream's answer is not a chat completion with a choice")
    content: list[dict[str, Any]] = []
    text = message.get("content")
    text = _part_text(text) if type(text) is list else text
    if type(text) is str and text:
        content.append({"type": "text", "text": text})
    refusal = message.get("refusal")
    if type(refusal) is str and refusal:
        content.append({"type": "text", "text": refusal})
    for call in message.get("tool_calls") or ():
        fn = call.get("function") if type(call) is dict else None
        if type(fn) is not dict:
            continue
        try:
            args = orjson.loads(fn.get("arguments") or "{}")
        except (orjson.JSONDecodeError, TypeError):
            args = {}
        name = str(fn.get("name") or "")
        content.append({"type": "tool_use", "id": str(call.get("id") or ""), "name": name, "input": _object(args)})
    finish = choice.get("finish_reason")
    stop = _STOP.get(finish, "end_turn") if type(finish) is str else "end_turn"
    if any(block["type"] == "tool_use" for block in content) and stop == "end_turn":
        stop = "tool_use"  # some servers say "stop" after tool calls
    if type(refusal) is str and refusal and stop == "end_turn":
        stop = "refusal"
    usage = answer.get("usage")
    usage = usage if type(usage) is dict else {}
    details = usage.get("prompt_tokens_details")
    details = details if type(details) is dict else {}
    prompt, cached = _tokens(usage.get("prompt_tokens")), _tokens(details.get("cached_tokens"))
    written = _tokens(details.get("cache_write_tokens"))
    answer_model = answer.get("model")
    message_out = {
        "id": f"msg_{request_id}",
        "type": "message",
        "role": "assistant",
        "model": answer_model if type(answer_model) is str and answer_model else model,  # the upstream's, as streams
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {
            "input_tokens": max(prompt - cached - written, 0),
            "output_tokens": _tokens(usage.get("completion_tokens")),
            "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": written,
        },
    }
    return orjson.dumps(message_out)


def _object(value: Any) -> dict[str, Any]:
    return value if type(value) is dict else {}


def _usage(answer: dict[str, Any]) -> tuple[int, int, int, int, int]:
    usage = answer.get("usage")
    usage = usage if type(usage) is dict else {}
    details = usage.get("output_tokens_details")
    reasoning = _tokens(details.get("thinking_tokens")) if type(details) is dict else 0
    cached = _tokens(usage.get("cache_read_input_tokens"))
    written = _tokens(usage.get("cache_creation_input_tokens"))
    prompt = _tokens(usage.get("input_tokens")) + cached + written
    return prompt, _tokens(usage.get("output_tokens")), cached, reasoning, written


def usage_of_message(body: bytes) -> tuple[int, int, int, int, int] | None:
    """``(prompt, completion, cached, reasoning, cache_creation)`` of an Anthropic Message (``None`` without usage).

    ``prompt`` is the whole input (``input_tokens`` + cache reads + cache writes); a count that is not a
    plausible token count reads as 0; ``reasoning`` is ``output_tokens_details.thinking_tokens`` when given.

    Example:
        >>> usage_of_message(b'{"usage": {"input_tokens": 3, "output_tokens": "x", "cache_creation_input_tokens": 2}}')
        (5, 0, 0, 0, 2)
        >>> usage_of_message(b'{"content": []}') is None
        True
    """
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(answer) is not dict or type(answer.get("usage")) is not dict:
        return None
    return _usage(answer)


# ---- counting ------------------------------------------------------------------------------------


def count_prompt(payload: dict[str, Any], encoding: str) -> int:
    """The gateway's estimate of an Anthropic request's input tokens, in ``encoding``.

    The text of ``system``, every text block, tool call (name and input), tool result and text document, and
    of the tool definitions (name, description, schema) is counted at once with the Rust tokenizer; each
    message adds :data:`MESSAGE_TOKENS`, the reply :data:`REPLY_TOKENS`, each image or non-text document
    :data:`IMAGE_TOKENS`, and a request with tools :data:`TOOLS_TOKENS` (Anthropic's tool-use prompt).
    Thinking blocks count nothing (Anthropic strips earlier turns' thinking from the context).

    Example:
        >>> count_prompt({"messages": [{"role": "user", "content": "hello world"}]}, "o200k_base")
        8
    """
    texts: list[str] = []
    extra = REPLY_TOKENS
    system = payload.get("system")
    if system:
        texts.append(_joined(system))
    for msg in payload.get("messages") or ():
        extra += MESSAGE_TOKENS
        content = msg.get("content")
        if type(content) is str:
            texts.append(content)
        elif type(content) is list:
            extra += _block_texts(content, texts)
    tools = payload.get("tools")
    if tools:
        extra += TOOLS_TOKENS
        for tool in tools:
            texts.append(orjson.dumps(tool).decode())
    return (_core.count_tokens("\n".join(texts), encoding) if texts else 0) + extra


def _block_texts(blocks: list[Any], texts: list[str]) -> int:
    """Append the countable text of ``blocks`` to ``texts``; the fixed estimate of their images and documents."""
    extra = 0
    for block in blocks:
        typ = block.get("type") if type(block) is dict else None
        if typ == "text":
            texts.append(block["text"])
        elif typ == "tool_use":
            texts.append(f"{block['name']} {orjson.dumps(block['input']).decode()}")
        elif typ == "tool_result":
            content = block.get("content")
            if type(content) is str:
                texts.append(content)
            elif type(content) is list:
                extra += _block_texts(content, texts)
        elif typ == "document":
            source = block.get("source")
            data = source.get("data") if type(source) is dict and source.get("type") == "text" else None
            if type(data) is str:
                texts.append(data)
            else:
                extra += IMAGE_TOKENS
        elif typ == "image":
            extra += IMAGE_TOKENS
    return extra
