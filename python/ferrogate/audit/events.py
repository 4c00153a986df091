"""Audit events: what an admin change or a data-plane request leaves in the audit trail.

:func:`admin_event` records who changed what, with the object before and after the change, secrets
removed (:func:`scrub`); :func:`request_facts` records one data-plane request from its
:class:`~ferrogate.pipeline.context.RequestContext`: key, team, user, model, deployment, status, tokens,
cost and latency (:func:`request_event`: the same as an event with a data dict). Prompt and completion
content is not captured (``"content": false`` in every request record says so).

Example:
    >>> ev = admin_event("master", "key.revoke", "key_1", "team_1", {"key_hash": "ab" * 32, "revoked_at": None},
    ...                  {"key_hash": "ab" * 32, "revoked_at": "2025-01-01T00:00:00.000000Z"})
    >>> ev.data["after"], ev.data["changed"]
    ({'revoked_at': '2025-01-01T00:00:00.000000Z'}, ['revoked_at'])
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from time import perf_counter
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ferrogate.errors import GatewayError
from ferrogate.store.audit import AuditEvent, RequestFacts
from ferrogate.store.fields import stamp
from ferrogate.store.records import new_id

if TYPE_CHECKING:
    from ferrogate.auth.identity import Identity
    from ferrogate.metering.prices import PriceTable
    from ferrogate.pipeline.context import RequestContext

#: Field names that never reach the audit trail, nor their values (compared lower-case, ``-`` read as ``_``).
SECRET_NAMES = frozenset(
    {
        "key",
        "key_hash",
        "previous_hash",
        "secret",
        "api_key",
        "apikey",
        "password",
        "passwd",
        "token",
        "authorization",
        "credential",
        "credentials",
        "private_key",
    }
)
_SECRET_SUFFIXES = ("_hash", "_key", "_secret", "_password", "_token")
_SECRET_PARTS = ("secret", "password")
#: Credentials recognised by their shape in any text value, whatever its field is called: ferrogate virtual
#: keys, OpenAI/Anthropic-style ``sk-`` keys (random: a digit and a capital letter among 20+ characters, so a
#: slug such as ``sk-learn-pipeline`` is kept), AWS access key ids, GitHub and Slack tokens, Google API keys,
#: ``Bearer`` credentials (16+ characters with a digit: not "Bearer Industries") and the user info of a URL
#: with a password (up to its last ``@``: an unencoded ``@`` in the password leaks nothing). Each match
#: becomes ``[redacted]``.
_RANDOM = r"(?=[A-Za-z0-9_-]*[0-9])(?=[A-Za-z0-9_-]*[A-Z])[A-Za-z0-9_-]{20,}"
_SECRET_VALUE = re.compile(
    rf"(?<![A-Za-z0-9_-])(?:fg|sk)-{_RANDOM}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"
    r"|\bxox[abpr]-[A-Za-z0-9-]{10,}"
    r"|\bAIza[0-9A-Za-z_-]{35}"
    r"|(?i:\bbearer\s+)(?=[A-Za-z0-9._~+/=-]*[0-9])[A-Za-z0-9._~+/=-]{16,}"
    r"|(?<=://)[^\s:/@]*:\S*(?=@)"
)
REDACTED = "[redacted]"


def is_secret(name: str) -> bool:
    """Whether a field called ``name`` holds a secret (or a hash of one) and must be left out.

    Example:
        >>> [is_secret(n) for n in ("key_hash", "webhook_secret", "X-Api-Key", "prompt_tokens", "prefix")]
        [True, True, True, False, False]
    """
    norm = name.lower().replace("-", "_")
    return norm in SECRET_NAMES or norm.endswith(_SECRET_SUFFIXES) or any(p in norm for p in _SECRET_PARTS)


def scrub(value: Any) -> Any:
    """``value`` as plain JSON values without any secret field (:func:`is_secret`), at any depth, and with
    every credential-shaped text (an ``sk-``/``fg-`` key, a ``Bearer`` token, a URL's password...) replaced
    by ``[redacted]`` whatever its field is called.

    Dataclasses (store records) and pydantic models become objects; datetimes become fixed-width UTC text;
    enums their value; anything else unknown its ``str``.

    Example:
        >>> scrub({"name": "ci", "api_key": "sk-1", "nested": [{"password": "p", "n": 1}]})
        {'name': 'ci', 'nested': [{'n': 1}]}
        >>> scrub({"note": "old key sk-proj-AbCdEf0123456789xyz", "url": "https://bot:hunter2@hooks.example.com/x"})
        {'note': 'old key [redacted]', 'url': 'https://[redacted]@hooks.example.com/x'}
    """
    if isinstance(value, str):
        return _SECRET_VALUE.sub(REDACTED, value) if _SECRET_VALUE.search(value) else value
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): scrub(v) for k, v in value.items() if not is_secret(str(k))}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(v) for v in value]
    if isinstance(value, datetime):
        return stamp(value) if value.tzinfo is not None else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return scrub(value.value)
    if isinstance(value, BaseModel):
        return scrub(value.model_dump(mode="python"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return scrub({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    return scrub(str(value))


def admin_event(
    actor: str,
    action: str,
    target: str | None,
    team_id: str | None,
    before: Any = None,
    after: Any = None,
    *,
    now: datetime | None = None,
) -> AuditEvent:
    """The audit event of one admin change: ``data`` holds ``before``, ``after`` (scrubbed: secret fields such
    as ``key_hash`` are left out) and ``changed``, the fields whose values differ (for an update; empty for a
    create or delete).

    Args:
        actor: who made the change: an admin key's id, ``"master"`` (the master key) or ``"cli"``.
        action: ``<entity>.<verb>``, e.g. ``team.create``, ``key.rotate``.
        target: the id of the object changed.
        team_id: the team it belongs to (``None`` for objects outside teams).
        before: the object before the change (a store record, a mapping, or ``None`` for a create).
        after: the object after the change (``None`` for a delete).
        now: the time of the change (default: now).

    Example:
        >>> admin_event("master", "team.create", "team_1", "team_1", None, {"name": "ml"}).data
        {'before': None, 'after': {'name': 'ml'}, 'changed': []}
    """
    old, new = scrub(before), scrub(after)
    changed: list[str] = []
    if isinstance(old, dict) and isinstance(new, dict):
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return AuditEvent(
        event_id=new_id("evt"),
        created_at=now or datetime.now(UTC),
        kind="admin",
        actor=actor,
        action=action,
        target=target,
        team_id=team_id,
        data={"before": old, "after": new, "changed": changed},
    )


def _error_code(error: BaseException) -> str | None:
    if isinstance(error, GatewayError):
        return error.wire_code
    return "internal_error"


def request_facts(
    ctx: RequestContext,
    *,
    action: str = "chat.completions",
    cost_usd: float | None = None,
    prices: PriceTable | None = None,
    latency_ms: float | None = None,
    now: datetime | None = None,
) -> RequestFacts:
    """The audit record of one data-plane request, read from its context (the account phase calls it), as
    the tuple the audit writer queues: no dict and no JSON on the hot path (the Rust core encodes a batch).

    ``event_id`` is the gateway's request id (so a replayed record is stored once); ``actor`` the key id
    (``"anonymous"`` for a request without one); ``target`` the requested model; ``team_id`` the key's team.
    The record's ``data`` holds the rest, not repeating those: the client's request id, trace id, user id,
    deployment (upstream and upstream model), status, error code, stream flag, tokens, cost (``cost_usd``,
    else priced with ``prices``, else ``None``: unknown), latency (ms, 3 decimals), and ``"content": false``
    (prompt and completion text are not captured). ``now``: when, an aware UTC datetime (default: now).

    Example:
        >>> from ferrogate.pipeline.context import RequestContext
        >>> facts = request_facts(RequestContext("req_1"), latency_ms=3.0)
        >>> facts.event_id, facts.actor, facts.event().data["content"]
        ('req_1', 'anonymous', False)
    """
    usage = ctx.usage
    tokens: tuple[int, int, int, int, bool] = (0, 0, 0, 0, False)
    if usage is not None:
        tokens = (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.reasoning_tokens,
                  usage.counted)  # fmt: skip
    upstream_model = ctx.upstream_model or None
    if cost_usd is None and prices is not None and usage is not None:
        cost_usd = prices.cost(upstream_model or ctx.model, tokens[0], tokens[1], tokens[2])
    provider = ctx.provider
    if latency_ms is None:
        latency_ms = (perf_counter() - ctx.started) * 1000.0
    upstream = provider.name if provider is not None else None
    now = now or datetime.now(UTC)
    return facts_of(ctx, now, ctx.identity, upstream, upstream_model, tokens, cost_usd, latency_ms, action)


def facts_of(
    ctx: RequestContext,
    now: datetime,
    identity: Identity | None,
    upstream: str | None,
    upstream_model: str | None,
    tokens: tuple[int, int, int, int, bool],
    cost_usd: float | None,
    latency_ms: float,
    action: str = "chat.completions",
) -> RequestFacts:
    """The facts of :func:`request_facts` from values already read (the account phase reads them once for the
    usage record and the audit trail): ``tokens`` are prompt, completion, cached, reasoning and counted.

    Example:
        >>> from ferrogate.pipeline.context import RequestContext
        >>> facts_of(RequestContext("req_1"), datetime(2025, 1, 1, tzinfo=UTC), None, "mock", None,
        ...          (3, 4, 0, 0, False), None, 1.23456).event().data["latency_ms"]
        1.235
    """
    key_id = team_id = user_id = None
    if identity is not None:
        key_id, team_id, user_id = identity.key_id, identity.team_id, identity.user_id
    prompt, completion, cached, reasoning, counted = tokens
    error = ctx.error
    return RequestFacts(
        (
            ctx.request_id,
            now,
            key_id or "anonymous",
            action,
            ctx.model or None,
            team_id,
            ctx.client_request_id,
            ctx.trace_id,
            user_id,
            upstream,
            upstream_model,
            ctx.status,
            None if error is None else _error_code(error),
            ctx.stream,
            prompt,
            completion,
            cached,
            reasoning,
            counted,
            cost_usd,
            round(latency_ms, 3),
        )
    )


def request_event(ctx: RequestContext, **options: Any) -> AuditEvent:
    """The same record as :func:`request_facts` (same options) as an :class:`AuditEvent`, its ``data`` a dict:
    for reading and tests (the account phase queues the facts).

    Example:
        >>> from ferrogate.pipeline.context import RequestContext
        >>> ev = request_event(RequestContext("req_1"), latency_ms=3.0)
        >>> ev.event_id, ev.actor, ev.data["content"]
        ('req_1', 'anonymous', False)
    """
    return request_facts(ctx, **options).event()
