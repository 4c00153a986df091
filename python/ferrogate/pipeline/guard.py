"""The guard phase: the request's body scanned for secrets, PII and deny patterns before it leaves the gateway.

Runs after limit, before route (``count_tokens`` too: its body goes to the upstream as well). The scanner (Rust,
``_core``, the GIL released) walks every string of the JSON body, whatever the ingress: every message role
including ``tool``, multi-part text, tool-call arguments, tool results, system prompts, Anthropic ``tool_use`` /
``tool_result`` blocks, Responses input items, embeddings input. What it finds, by the action of the rule for
the request's team and key (:class:`ferrogate.guardrails.Guardrails`):

- ``block``: 400 ``content_policy_violation`` naming the rule and the JSON path (``param``), never the text;
- ``redact``: the request goes on with each finding replaced by ``[REDACTED:<rule id>]`` (body and payload);
- ``log``: the request goes on unchanged.

Every finding is counted in ``ferrogate_guardrail_findings_total{rule,category,action}`` and listed (rule,
category, action, path) in the request's audit record. The ``x-ferrogate-guardrails`` header says what ran:
``off``, ``scanned``, or ``scanned; redacted=2; logged=1`` (``blocked=1`` on a refusal).

The phase also sets the request's classification: the ``x-ferrogate-classification`` header (public, internal,
confidential, restricted; anything else is a 400 naming the header), else the policy's default; the route
phase only uses deployments cleared for it.

Example:
    >>> summary({1: 1, 2: 2})
    'scanned; redacted=2; logged=1'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ferrogate.config.model import CLASSIFICATIONS
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.guardrails.policy import ACTION_NAMES
from ferrogate.observability.families import GUARDRAIL_FINDINGS

if TYPE_CHECKING:
    from ferrogate._core import GuardPolicy, ScanResult
    from ferrogate.observability.metrics import Metrics
    from ferrogate.pipeline.context import RequestContext
    from ferrogate.pipeline.session import Session

#: The response header that says what the guardrails did.
GUARD_HEADER = "x-ferrogate-guardrails"
#: The request header that classifies a request.
CLASSIFICATION_HEADER = "x-ferrogate-classification"
_CLASSES = frozenset(CLASSIFICATIONS)
_OFF = (GUARD_HEADER, "off")
_SCANNED = (GUARD_HEADER, "scanned")
#: The default classification without guardrails (the configuration's default).
_DEFAULT_CLASS = "internal"


def guard(s: Session, ctx: RequestContext) -> None:
    """Phase 5: classify the request, then scan its body with its policy (block, redact, log).

    Sets ``ctx.classification``, ``ctx.guard_findings`` and ``ctx.answer_guard`` (the policy the answer is masked
    with, when answers are scanned); may replace the request's body (:meth:`Request.replace_body`). Adds the
    ``x-ferrogate-guardrails`` header to every answer of the request.

    Raises:
        GatewayError: 400 naming ``x-ferrogate-classification`` (not a classification); 400
            ``content_policy_violation`` (a block rule found something).
    """
    guardrails = s.chain.deps.guardrails
    given = s.scope.headers.get(CLASSIFICATION_HEADER)
    if guardrails is None:
        ctx.classification = _DEFAULT_CLASS if given is None else classification(given)
        s.headers.append(_OFF)
        return
    identity = ctx.identity
    policy, _, default, answers = guardrails.effective(identity.team_id, identity.key_id)
    ctx.classification = default if given is None else classification(given)
    ctx.answer_guard = answers
    if policy is None:
        s.headers.append(_OFF)
        return
    result = policy.scan_json(ctx.request.body)
    if result is None:  # the fast path: nothing found
        s.headers.append(_SCANNED)
        return
    _act(s, ctx, result, policy)


def _act(s: Session, ctx: RequestContext, result: ScanResult, policy: GuardPolicy) -> None:
    """Count and record the findings, then refuse the request (a block finding) or send its redacted body.

    A secret in the ``model`` field is masked in ``ctx.model`` too (the receive phase took it from the client's
    body): the route's 404, the audit record's target, the usage record, the request log and the span names
    read it there.
    """
    counts: dict[int, int] = {}
    found: list[tuple[str, str, str, str]] = []
    metrics = s.chain.deps.metrics
    for rule, category, action, path, _, _ in result.findings:
        counts[action] = counts.get(action, 0) + 1
        name = ACTION_NAMES[action]
        found.append((rule, category, name, path))
        if metrics is not None:
            metrics.add(GUARDRAIL_FINDINGS, (rule, category, name))
    ctx.guard_findings = tuple(found)
    if any(path == "model" for *_, path in found):
        ctx.model = policy.redact_text(ctx.model)
    blocked = result.blocked
    if blocked is not None:
        s.headers.append((GUARD_HEADER, f"scanned; blocked={counts.get(3, 1)}"))
        rule, category, _, path, _, _ = blocked
        raise GatewayError(
            ErrorKind.CONTENT_POLICY,
            f"The request was refused by the guardrails: rule '{rule}' ({category}) matched at {path}.",
            param=path,
        )
    if result.body is not None:
        ctx.request.replace_body(result.body)
    s.headers.append((GUARD_HEADER, summary(counts)))


def summary(counts: dict[int, int]) -> str:
    """The header value for findings counted by action byte (1 log, 2 redact).

    Example:
        >>> summary({1: 3})
        'scanned; logged=3'
    """
    parts = ["scanned"]
    if counts.get(2):
        parts.append(f"redacted={counts[2]}")
    if counts.get(1):
        parts.append(f"logged={counts[1]}")
    return "; ".join(parts)


def classification(value: str) -> str:
    """The classification a ``x-ferrogate-classification`` header gives (case and spaces ignored).

    Raises:
        GatewayError: 400 naming the header when it is not one of public, internal, confidential, restricted
            (the value is not repeated).

    Example:
        >>> classification(" Confidential")
        'confidential'
    """
    name = value.strip().lower()
    if name not in _CLASSES:
        raise GatewayError(
            ErrorKind.INVALID_FIELD,
            f"the {CLASSIFICATION_HEADER} header must be one of {', '.join(CLASSIFICATIONS)}",
            param=CLASSIFICATION_HEADER,
        )
    return name


def mask_answer(ctx: RequestContext, body: bytes, metrics: Metrics | None) -> tuple[bytes, int]:
    """A whole answer (JSON) masked with ``ctx.answer_guard``: every finding of a redact or block rule replaced,
    log rules counted; returns the body and the number of strings masked. Findings join the audit record.
    """
    result = ctx.answer_guard.scan_json(body)
    if result is None:
        return body, 0
    found = list(ctx.guard_findings)
    masked = 0
    for rule, category, action, path, _, _ in result.findings:
        name = ACTION_NAMES[action]
        masked += action >= 2
        found.append((rule, category, name, f"answer:{path}"))
        if metrics is not None:
            metrics.add(GUARDRAIL_FINDINGS, (rule, category, name))
    ctx.guard_findings = tuple(found)
    return (body if result.body is None else result.body), masked
