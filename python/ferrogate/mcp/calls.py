"""One MCP tool call through the gateway, whatever the front door (REST ``/mcp/v1`` or the ``/mcp`` endpoint).

:meth:`ToolCalls.call` runs the call's phases in order; each may refuse with a
:class:`~ferrogate.errors.GatewayError`, and the account phase always runs (in a ``finally``):

1. authorize: the key's tool policy (:class:`~ferrogate.mcp.policy.Policies`) allows ``server/tool``, else 403
   ``tool_not_allowed``;
2. validate: the arguments are a JSON object of at most ``mcp.max_argument_bytes``, valid against the tool's
   ``inputSchema`` (compiled once per tool definition in the Rust core), else 400 naming the field
   (``arguments/path``); a schema that does not compile is not checked (logged once);
3. limit: the key's tool calls per minute (``mcp:key:<key id>``), else 429 with ``Retry-After``;
4. guard the arguments: the guardrails scanner over ``{"arguments": ...}`` (block: 400
   ``content_policy_violation``; redact: the redacted arguments go upstream);
5. forward: the upstream call within the server's ``timeout_s`` (502 ``mcp_server_unavailable``, 504
   ``mcp_timeout``: the upstream call is cancelled); a tool's own error is an ``isError`` result;
6. guard the result: its text and structured content scanned (the answers policy when the key's answers are
   scanned, else the request policy): block makes it an ``isError`` result naming the rule, redact masks;
7. account: one audit record (``mcp.tools.call``: key, team, server, tool, outcome, duration, the arguments
   redacted and scrubbed of secrets, truncated past 4 KB) and the metrics
   ``ferrogate_mcp_tool_calls_total{server,tool,outcome}`` and ``ferrogate_mcp_tool_call_seconds{server,tool}``.

Resource reads and prompt gets (:meth:`ToolCalls.read_resource`, :meth:`ToolCalls.get_prompt`) forward, guard
and account the same way (``mcp.resources.read``, ``mcp.prompts.get``); the front decides what the key may see.

Example:
    >>> audit_arguments({"path": "/tmp/x", "api_key": "sk-secret"}, 4096)
    {'path': '/tmp/x'}
    >>> audit_arguments({"blob": "x" * 5000}, 4096)
    '[truncated: 5011 bytes]'
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final

import orjson
from pydantic import BaseModel

from ferrogate import _core
from ferrogate.audit.events import scrub
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.mcp.errors import timed_out, unavailable, upstream_refusal
from ferrogate.mcp.guarding import Guarded, guard_arguments, guard_result
from ferrogate.mcp.upstream import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from ferrogate.observability.families import MCP_TOOL_CALL_SECONDS, MCP_TOOL_CALLS
from ferrogate.store.audit import AuditEvent

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import mcp_types

    from ferrogate.audit.writer import AuditWriter
    from ferrogate.auth.authenticator import Authenticator
    from ferrogate.auth.identity import Identity
    from ferrogate.config.mcp import McpSettings
    from ferrogate.guardrails import Guardrails
    from ferrogate.limits import Limiter
    from ferrogate.mcp.catalog import Catalog
    from ferrogate.mcp.policy import Policies
    from ferrogate.mcp.upstream import Upstream
    from ferrogate.observability.metrics import Metrics

log = logging.getLogger("ferrogate.mcp")

#: Arguments larger than this (bytes of JSON) are not kept in the audit record, only their size.
AUDIT_ARGUMENTS_MAX: Final = 4096
#: The limiter's period for tool calls per minute.
_MINUTE: Final = 60.0
#: Compiled input schemas kept at most (one per tool definition; the catalog holds at most 10,000 per server).
_SCHEMAS_MAX: Final = 50_000
#: The outcome of a call whose client hung up before the answer.
CLIENT_CLOSED: Final = "client_closed"
#: How the schema checker's message begins when it could not read the arguments (deeper than its parser goes).
_UNREADABLE: Final = "the answer is not JSON: "


@dataclass(frozen=True, slots=True)
class McpDeps:
    """What the MCP fronts need, built once per worker (``Gateway``)."""

    catalog: Catalog
    policies: Policies
    limiter: Limiter
    guardrails: Guardrails | None  # None: no scanning ("off")
    audit: AuditWriter | None  # None: calls are not audited
    metrics: Metrics | None  # None: metrics off
    settings: McpSettings
    auth: Authenticator
    master_key: bytes  # signs the /mcp endpoint's handshake-era session ids (mcp/session.py)


@dataclass(slots=True)
class ToolOutcome:
    """A call that reached its end: the ``CallToolResult`` JSON (``isError`` true for a tool's error or a
    result the guardrails blocked), the outcome label, and response headers (``x-ferrogate-guardrails``)."""

    result: dict[str, Any]
    outcome: str
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class _Record:
    """What the account phase reads: filled in by the phases as they run."""

    action: str
    server: str
    target: str  # the namespaced tool or prompt, or the resource URI
    started: float
    arguments: Any = None  # what the audit record keeps (redacted, scrubbed, truncated)
    outcome: str = "internal_error"
    error: str | None = "internal_error"
    findings: list[tuple[str, str, str, str]] = field(default_factory=list)


class ToolCalls:
    """The call phases of every MCP front (see the module docstring)."""

    __slots__ = ("_logged", "_schemas", "deps")

    def __init__(self, deps: McpDeps) -> None:
        self.deps = deps
        self._schemas: dict[tuple[str, str], tuple[Any, _core.JsonSchema | None]] = {}
        self._logged: set[tuple[str, str]] = set()

    async def call(
        self, identity: Identity, upstream: Upstream, tool: mcp_types.Tool, arguments: Any, *, request_id: str,
        front: str,
    ) -> ToolOutcome:  # fmt: skip
        """Call ``tool`` of ``upstream`` for ``identity`` with ``arguments`` (the client's JSON value).

        Raises:
            GatewayError: 403 ``tool_not_allowed``; 400 ``invalid_value`` naming the field (``arguments...``);
                429 ``rate_limit_exceeded``; 400 ``content_policy_violation``; 502 ``mcp_server_unavailable``;
                504 ``mcp_timeout``. The call is accounted whatever happens.
        """
        deps = self.deps
        server, name = upstream.id, tool.name
        rec = _Record("mcp.tools.call", server, f"{server}__{name}", perf_counter())
        try:
            if not deps.policies.allows(identity.team_id, identity.key_id)(server, name):
                raise GatewayError(ErrorKind.TOOL_FORBIDDEN, f"The key may not use the MCP tool '{server}__{name}'.")
            raw = self._validate(server, tool, arguments)
            rec.arguments = audit_arguments(arguments, AUDIT_ARGUMENTS_MAX, len(raw))
            await self._limit(identity)
            guarded = Guarded()
            try:
                sent = guard_arguments(deps, identity, arguments, raw, guarded)
            finally:
                rec.findings = guarded.findings
            if sent is not arguments:
                rec.arguments = audit_arguments(sent, AUDIT_ARGUMENTS_MAX)
            logged = sum(1 for f in guarded.findings if f[2] == "log")
            if logged:  # a log rule lets the text go upstream, never into the audit trail in clear
                rec.arguments = f"[withheld: {logged} guardrail findings logged]"
            result = guard_result(deps, identity, await self._forward(upstream, name, sent), guarded)
            if guarded.blocked is not None:
                rec.outcome = rec.error = "content_policy_violation"
            else:
                rec.outcome, rec.error = ("tool_error" if result.get("isError") else "ok"), None
            return ToolOutcome(result, rec.outcome, [guarded.header()])
        except GatewayError as err:
            rec.outcome = rec.error = err.wire_code or err.kind.value
            if err.kind is ErrorKind.CONTENT_POLICY:
                rec.arguments = "[withheld: refused by the guardrails]"
            raise
        except asyncio.CancelledError:  # the client hung up (server/app.py: until_gone); the call is cancelled
            rec.outcome = rec.error = CLIENT_CLOSED
            raise
        finally:
            self._account(identity, rec, request_id, front)

    async def read_resource(
        self, identity: Identity, upstream: Upstream, uri: str, *, request_id: str, front: str
    ) -> dict[str, Any]:
        """``resources/read`` of ``uri`` on ``upstream``: the ``ReadResourceResult`` JSON, guarded and accounted
        (``mcp.resources.read``). The front has checked that the key may read it.

        Raises:
            GatewayError: 502 / 504 (upstream down, timeout); the upstream's own refusal (404 ``not_found`` for
                an unknown resource, else 502 ``upstream_bad_response``); 400 ``content_policy_violation`` when a
                block rule matched the contents.
        """
        rec = _Record("mcp.resources.read", upstream.id, uri, perf_counter())
        rec.arguments = {"uri": uri}
        return await self._answer(identity, upstream, rec, request_id, front, lambda t: upstream.read_resource(uri, t))

    async def get_prompt(
        self, identity: Identity, upstream: Upstream, prompt: str, arguments: dict[str, str] | None, *,
        request_id: str, front: str,
    ) -> dict[str, Any]:  # fmt: skip
        """``prompts/get`` of the upstream's ``prompt``: the ``GetPromptResult`` JSON, guarded and accounted
        (``mcp.prompts.get``). The front has checked that the key may use it.

        Raises:
            GatewayError: as :meth:`read_resource`.
        """
        rec = _Record("mcp.prompts.get", upstream.id, f"{upstream.id}__{prompt}", perf_counter())
        rec.arguments = audit_arguments(arguments, AUDIT_ARGUMENTS_MAX)
        return await self._answer(
            identity, upstream, rec, request_id, front, lambda t: upstream.get_prompt(prompt, arguments, t)
        )

    async def _answer(
        self, identity: Identity, upstream: Upstream, rec: _Record, request_id: str, front: str,
        send: Callable[[float], Awaitable[BaseModel]],
    ) -> dict[str, Any]:  # fmt: skip
        """A read or a prompt: forward (within the server's timeout), guard the answer, account (always)."""
        try:
            timeout = upstream.spec.timeout_s
            try:
                answer = await send(timeout)
            except UpstreamError as exc:
                raise upstream_refusal(upstream.id, exc.code, exc.message) from None
            except UpstreamUnavailable as exc:
                raise unavailable(upstream.id, exc) from None
            except UpstreamTimeout:
                raise timed_out(upstream.id, timeout) from None
            answered = passable(upstream.id, answer.model_dump(by_alias=True, exclude_none=True, mode="json"))
            return self._guarded(identity, rec, answered)
        except GatewayError as err:
            rec.outcome = rec.error = err.wire_code or err.kind.value
            raise
        except asyncio.CancelledError:
            rec.outcome = rec.error = CLIENT_CLOSED
            raise
        finally:
            self._account(identity, rec, request_id, front)

    # ---- phases --------------------------------------------------------------------------------------------
    def _validate(self, server: str, tool: mcp_types.Tool, arguments: Any) -> bytes:
        """Phase 2: the arguments serialised, after their checks (object, size, the tool's input schema)."""
        if not isinstance(arguments, dict):
            raise GatewayError(ErrorKind.INVALID_FIELD, "'arguments' must be a JSON object", param="arguments")
        try:
            raw = orjson.dumps(arguments)
        except orjson.JSONEncodeError:  # deeper than the encoder goes (254 levels): no tool takes that
            raise GatewayError(ErrorKind.INVALID_FIELD, "'arguments' is nested too deeply", param="arguments") from None
        limit = self.deps.settings.max_argument_bytes
        if len(raw) > limit:
            raise GatewayError(
                ErrorKind.INVALID_FIELD, f"'arguments' exceeds the limit of {limit} bytes", param="arguments"
            )
        schema = self._schema(server, tool)
        if schema is not None:
            try:
                errors = schema.errors(raw, 1)
            except _core.SchemaError as exc:  # over the check's work budget: not checked
                self._log_once((server, tool.name), "arguments of MCP tool %s__%s not checked: %s", exc)
                return raw
            if errors:
                pointer, message = errors[0]
                if message.startswith(_UNREADABLE):  # the checker's parser stops at 128 levels
                    detail = message[len(_UNREADABLE) :]
                    raise GatewayError(
                        ErrorKind.INVALID_FIELD, f"'arguments' cannot be checked: {detail}", param="arguments"
                    )
                param = f"arguments{pointer}"
                raise GatewayError(
                    ErrorKind.INVALID_FIELD,
                    f"'{param}' does not match the input schema of '{server}__{tool.name}': {message}",
                    param=param,
                )
        return raw

    def _schema(self, server: str, tool: mcp_types.Tool) -> _core.JsonSchema | None:
        """The tool's compiled input schema, cached per tool definition (``None``: it does not compile)."""
        key = (server, tool.name)
        found = self._schemas.get(key)
        if found is not None and (found[0] is tool.input_schema or found[0] == tool.input_schema):
            return found[1]
        compiled: _core.JsonSchema | None
        try:
            compiled = _core.JsonSchema(orjson.dumps(tool.input_schema))
        except _core.SchemaError as exc:
            self._log_once(key, "input schema of MCP tool %s__%s does not compile; arguments not checked: %s", exc)
            compiled = None
        if len(self._schemas) >= _SCHEMAS_MAX:
            self._schemas.clear()
        self._schemas[key] = (tool.input_schema, compiled)
        return compiled

    async def _limit(self, identity: Identity) -> None:
        """Phase 3: one unit of the key's tool calls per minute, when a limit applies."""
        per_minute = self.deps.policies.calls_per_minute(identity.team_id, identity.key_id)
        if per_minute is None:
            return
        decision = await self.deps.limiter.check(f"mcp:key:{identity.key_id}", float(per_minute), _MINUTE)
        if not decision.allowed:
            wait = decision.retry_after_s
            seconds = int(_MINUTE) if math.isinf(wait) else max(1, math.ceil(wait))
            raise GatewayError(
                ErrorKind.TOOL_CALLS_RATE_LIMITED,
                f"Too many tool calls: this key may make {per_minute} per minute; try again in {seconds} s.",
                headers=[("retry-after", str(seconds))],
            )

    async def _forward(self, upstream: Upstream, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Phase 5: the upstream's ``CallToolResult`` as JSON (an upstream's JSON-RPC refusal is an ``isError``
        result: :meth:`Upstream.call_tool` makes it one)."""
        timeout = upstream.spec.timeout_s
        try:
            result = await upstream.call_tool_json(name, arguments, timeout)
        except UpstreamUnavailable as exc:
            raise unavailable(upstream.id, exc) from None
        except UpstreamTimeout:
            raise timed_out(upstream.id, timeout) from None
        return passable(upstream.id, result)

    def _guarded(self, identity: Identity, rec: _Record, result: dict[str, Any]) -> dict[str, Any]:
        """A resource's or prompt's result through the result guard: a block refuses it."""
        guarded = Guarded()
        checked = guard_result(self.deps, identity, result, guarded, block=False)
        rec.findings = guarded.findings
        if guarded.blocked is not None:
            rule, category, path = guarded.blocked
            raise GatewayError(
                ErrorKind.CONTENT_POLICY,
                f"The answer of MCP server '{rec.server}' was refused by the guardrails: rule '{rule}' ({category}) "
                f"matched at {path}.",
                headers=[guarded.header()],
            )
        rec.outcome, rec.error = "ok", None
        return checked

    def _account(self, identity: Identity, rec: _Record, request_id: str, front: str) -> None:
        """Phase 7 (always): the audit record and the metrics of one call."""
        seconds = perf_counter() - rec.started
        deps = self.deps
        if deps.metrics is not None and rec.action == "mcp.tools.call":
            tool = rec.target[len(rec.server) + 2 :]
            deps.metrics.add(MCP_TOOL_CALLS, (rec.server, tool, rec.outcome))
            deps.metrics.observe_value(MCP_TOOL_CALL_SECONDS, (rec.server, tool), seconds)
        if deps.audit is None:
            return
        data: dict[str, Any] = {
            "server": rec.server,
            "outcome": rec.outcome,
            "duration_ms": round(seconds * 1000.0, 3),
            "arguments": rec.arguments,
            "error": rec.error,
            "request_id": request_id,
            "front": front,
        }
        if rec.action == "mcp.tools.call":
            data["tool"] = rec.target[len(rec.server) + 2 :]
        elif rec.action == "mcp.prompts.get":
            data["prompt"] = rec.target[len(rec.server) + 2 :]
        if rec.findings:
            data["guardrails"] = [list(f) for f in rec.findings]
        event = AuditEvent(
            event_id=request_id,
            created_at=datetime.now(UTC),
            kind="request",
            actor=identity.key_id or "anonymous",
            action=rec.action,
            target=rec.target,
            team_id=identity.team_id,
            data=data,
        )
        try:
            deps.audit.record(event)
        except Exception:  # the call's answer must not fail for its audit record; the writer logs what it refused
            log.exception("audit record of %s %s failed", rec.action, rec.target)

    def _log_once(self, key: tuple[str, str], message: str, exc: Exception) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning(message, key[0], key[1], exc)


def passable(server: str, result: dict[str, Any]) -> dict[str, Any]:
    """``result`` if it can be passed on as JSON; an answer nested deeper than the encoder goes (254 levels, the
    parser takes 1024) is the server's fault: 502.

    Example:
        >>> passable("files", {"content": []})
        {'content': []}
    """
    try:
        orjson.dumps(result)
    except orjson.JSONEncodeError:
        raise GatewayError(
            ErrorKind.UPSTREAM_PROTOCOL, f"MCP server '{server}' answered with JSON nested too deeply to pass on"
        ) from None
    return result


def audit_arguments(arguments: Any, limit: int, size: int | None = None) -> Any:
    """What an audit record keeps of a call's arguments: the value scrubbed of secrets (fields named like one,
    credential-shaped text: :func:`ferrogate.audit.events.scrub`), or a marker when its JSON is over ``limit``
    bytes. ``size``: the JSON's length when known.

    Example:
        >>> audit_arguments({"q": "Bearer abcdefghijklmnop1234"}, 4096)
        {'q': '[redacted]'}
    """
    if arguments is None:
        return None
    if size is None:
        try:
            size = len(orjson.dumps(arguments))
        except TypeError:
            return "[not JSON]"
    if size > limit:
        return f"[truncated: {size} bytes]"
    return scrub(arguments)


__all__ = ["AUDIT_ARGUMENTS_MAX", "CLIENT_CLOSED", "McpDeps", "ToolCalls", "ToolOutcome", "audit_arguments", "passable"]
