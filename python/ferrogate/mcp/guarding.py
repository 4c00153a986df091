"""The guardrails of MCP calls: a tool's arguments before they leave, and what an MCP server answers.

The same scanner and per-(team, key) policies as the chat guard phase (:mod:`ferrogate.pipeline.guard`):

- arguments are scanned as ``{"arguments": ...}`` with the request policy: a block rule refuses the call (400
  ``content_policy_violation`` naming the rule and ``arguments/...``, never the text); redact rules mask what
  goes upstream; log rules only count;
- an answer (a tool's result, a resource's contents, a prompt's messages) is scanned whole with the answers
  policy when the key's answers are scanned (block rules then mask like redact rules), else with the request
  policy: so prompt-injection patterns and deny patterns in what a server returns are caught. A block makes a
  tool's result an ``isError`` result naming the rule (the caller raises for other answers).

Every finding is counted in ``ferrogate_guardrail_findings_total`` and kept (rule, category, action, path) for
the call's audit record; :meth:`Guarded.header` is the ``x-ferrogate-guardrails`` value of the answer.

Example:
    >>> pointer("arguments.files[0].path")
    'arguments/files/0/path'
    >>> Guarded().header()
    ('x-ferrogate-guardrails', 'off')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.guardrails.policy import ACTION_NAMES
from ferrogate.mcp.errors import ERROR_META_KEY
from ferrogate.observability.families import GUARDRAIL_FINDINGS
from ferrogate.pipeline.guard import GUARD_HEADER, summary

if TYPE_CHECKING:
    from ferrogate._core import GuardPolicy, ScanResult
    from ferrogate.auth.identity import Identity
    from ferrogate.mcp.calls import McpDeps

_STEP = re.compile(r"\[(\d+)\]|\.")
_BLOCK = 3


@dataclass(slots=True)
class Guarded:
    """What the scans of one call found: findings (rule, category, action, path), counts by action byte,
    whether any policy ran, and the first block (rule, category, path)."""

    findings: list[tuple[str, str, str, str]] = field(default_factory=list)
    counts: dict[int, int] = field(default_factory=dict)
    scanned: bool = False
    blocked: tuple[str, str, str] | None = None

    def header(self) -> tuple[str, str]:
        """The ``x-ferrogate-guardrails`` header: ``off``, ``scanned``, ``scanned; redacted=N; logged=M``, or
        ``scanned; blocked=N``."""
        if not self.scanned:
            return GUARD_HEADER, "off"
        if self.blocked is not None:
            return GUARD_HEADER, f"scanned; blocked={self.counts.get(_BLOCK, 1)}"
        return GUARD_HEADER, summary(self.counts)

    def note(self, result: ScanResult, deps: McpDeps) -> None:
        """Count and keep the findings of one scan."""
        metrics = deps.metrics
        for rule, category, action, path, _, _ in result.findings:
            self.counts[action] = self.counts.get(action, 0) + 1
            name = ACTION_NAMES[action]
            self.findings.append((rule, category, name, path))
            if metrics is not None:
                metrics.add(GUARDRAIL_FINDINGS, (rule, category, name))


def pointer(path: str) -> str:
    """A scanner path (``arguments.a[0].b``) as the slash-separated field name errors use (``arguments/a/0/b``).

    Example:
        >>> pointer("arguments")
        'arguments'
    """
    return _STEP.sub(lambda m: "/" + (m.group(1) or ""), path).replace("//", "/")


def _policies(deps: McpDeps, identity: Identity) -> tuple[GuardPolicy | None, GuardPolicy | None]:
    """The key's (request policy, answer policy); ``(None, None)`` without guardrails."""
    guardrails = deps.guardrails
    if guardrails is None:
        return None, None
    policy, _, _, answers = guardrails.effective(identity.team_id, identity.key_id)
    return policy, answers or policy


def guard_arguments(deps: McpDeps, identity: Identity, arguments: dict[str, Any], raw: bytes, g: Guarded) -> Any:
    """The arguments to send upstream (``arguments`` itself when nothing was redacted); ``raw`` is their JSON.

    Raises:
        GatewayError: 400 ``content_policy_violation`` naming the rule and the field (a block rule matched).
    """
    policy, _ = _policies(deps, identity)
    if policy is None:
        return arguments
    g.scanned = True
    result = policy.scan_json(b'{"arguments":' + raw + b"}")
    if result is None:
        return arguments
    g.note(result, deps)
    blocked = result.blocked
    if blocked is not None:
        rule, category, _, path, _, _ = blocked
        g.blocked = (rule, category, pointer(path))
        raise GatewayError(
            ErrorKind.CONTENT_POLICY,
            f"The tool call was refused by the guardrails: rule '{rule}' ({category}) matched at {pointer(path)}.",
            param=pointer(path),
            headers=[g.header()],
        )
    if result.body is not None:
        return orjson.loads(result.body)["arguments"]
    return arguments


def guard_result(
    deps: McpDeps, identity: Identity, result: dict[str, Any], g: Guarded, *, block: bool = True
) -> dict[str, Any]:
    """An answer (JSON) after its scan: masked where redact rules matched; on a block, an ``isError`` tool
    result naming the rule when ``block`` (tool calls), else unchanged with ``g.blocked`` set (the caller
    refuses it)."""
    _, policy = _policies(deps, identity)
    if policy is None:
        return result
    g.scanned = True
    found = policy.scan_json(orjson.dumps(result))
    if found is None:
        return result
    g.note(found, deps)
    blocked = found.blocked
    if blocked is not None:
        rule, category, _, path, _, _ = blocked
        g.blocked = (rule, category, path)
        if not block:
            return result
        return {
            "content": [{"type": "text", "text": f"[blocked by guardrails: rule {rule}]"}],
            "isError": True,
            "_meta": {ERROR_META_KEY: "content_policy_violation"},
        }
    if found.body is not None:
        masked: dict[str, Any] = orjson.loads(found.body)
        return masked
    return result
