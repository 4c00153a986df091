"""Routing rules: Cedar policies that make a model group's deployments eligible for a request, and score them.

The rules come from ``routing.rules_file`` (a Cedar policy file; a relative path is relative to the working
directory) and ``routing.rules`` (policies written in the configuration), compiled together into one
``_core.RoutePolicy`` (docs/routing.md, "Routing rules"). A deployment is eligible unless a ``forbid`` matches;
every matching ``permit`` with ``@priority("N")`` adds N to its score, and the router re-orders the eligible
deployments by score, highest first (ties keep the strategy's order).

A rule that does not parse, does not validate against the routing schema, or has a bad ``@id``/``@priority``
raises :class:`~ferrogate.config.errors.ConfigError` naming the source and the line: ``rules.cedar`` /
``line 4, column 10`` (the line of the inline rules' text for ``routing.rules``).

Example:
    >>> rules = RoutingRules.from_text(
    ...     '@id("open") forbid(principal, action, resource) when { resource.circuit == "open" };'
    ... )
    >>> d = rules.deployment(key="up/m", provider="openai", upstream="up", model="m", group="fast")
    >>> rules.decide(RequestFacts(model="fast"), [candidate(d, circuit="open")]).verdicts
    (Verdict(deployment=0, eligible=False, score=0, rules=('open',)),)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ferrogate import _core
from ferrogate.config.errors import ConfigError
from ferrogate.config.prices import Price
from ferrogate.config.routing import RoutingSettings

#: The source name of the configuration's inline rules (``routing.rules``) in errors.
INLINE_SOURCE = "routing.rules"

#: A candidate as the core takes it: (deployment id, latency_ms, ttft_ms, error_rate_pct, circuit, in_flight).
Candidate = tuple[int, int, int, int, str, int]

_PROBLEM = re.compile(r"(\d+):(\d+): (.*)")
_CIRCUIT = ("closed", "open", "half_open")


class TargetLike(Protocol):
    """What the rules read of a deployment of the routing table (``routing.plan.Target``)."""

    key: str
    upstream_kind: str
    upstream: str
    model: str
    group: str
    tags: tuple[str, ...]
    slot: int
    rule_id: int


class CircuitsLike(Protocol):
    """What the rules read of the circuit table (``_core.Circuits``)."""

    def facts(self, slots: Sequence[int]) -> list[tuple[int, int, float, float, float]]: ...


T = TypeVar("T", bound=TargetLike)


class Paired(Protocol):
    """A target as the router's one-call order reads it: ``rule_pair`` is ``(rule id, circuit slot)``."""

    @property
    def rule_pair(self) -> tuple[int, int]: ...


P = TypeVar("P", bound=Paired)


#: What the rules know of a request (``principal`` and ``context`` attributes, docs/routing.md): a core object,
#: built once per request in a few hundred nanoseconds and read by every decision without conversion.
#:
#: Attributes (all keyword arguments, with these defaults): ``team`` (the key's team id, ``""``: none), ``key``
#: (the key's id, the principal's entity id), ``user`` (the end user the request names), ``classification``
#: (``""``: none), ``sla_ms`` (the latency SLA from the SLA header, 0: none), ``budget_left_cents`` (the budget
#: left on the key's chain in US cents, -1: no budget), ``model`` (the model group asked for), ``stream``
#: (``False``), ``ingress`` (the protocol the request came in, ``"openai"``).
RequestFacts = _core.RouteRequest


def described_facts(facts: Mapping[str, Any]) -> RequestFacts:
    """The facts of a described request (the dry run's body: ``team``, ``key``, ``user``, ``classification``,
    ``sla_ms``, ``budget_left_usd`` or ``budget_left_cents``, ``model``, ``stream``, ``ingress``).

    Example:
        >>> described_facts({"model": "fast", "budget_left_usd": 4.5, "sla_ms": 800}).budget_left_cents
        450
    """
    cents = facts.get("budget_left_cents")
    if cents is None:
        cents = budget_cents(facts.get("budget_left_usd"))
    return RequestFacts(
        team=facts.get("team") or "",
        key=facts.get("key") or "",
        user=facts.get("user") or "",
        classification=facts.get("classification") or "",
        sla_ms=int(facts.get("sla_ms") or 0),
        budget_left_cents=int(cents),
        model=facts.get("model") or "",
        stream=bool(facts.get("stream")),
        ingress=facts.get("ingress") or "openai",
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the rules say of one candidate: eligible or not, its score, and the rules that decided (the forbids
    that matched when not eligible, else the permits that matched)."""

    deployment: int
    eligible: bool
    score: int
    rules: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdicts of one request's candidates, in the candidates' order."""

    verdicts: tuple[Verdict, ...]

    def order(self) -> list[int]:
        """The eligible deployments' ids, highest score first, ties in candidate order.

        Example:
            >>> Decision((Verdict(0, True, 0, ()), Verdict(1, False, 0, ("x",)), Verdict(2, True, 5, ()))).order()
            [2, 0]
        """
        eligible = [v for v in self.verdicts if v.eligible]
        return [v.deployment for v in sorted(eligible, key=lambda v: -v.score)]


def candidate(
    deployment: int,
    *,
    latency_ms: int = -1,
    ttft_ms: int = -1,
    error_rate_pct: int = 0,
    circuit: str = "closed",
    in_flight: int = 0,
) -> Candidate:
    """A candidate tuple (``-1``: a latency not known yet; ``circuit``: ``closed``, ``open`` or ``half_open``).

    Example:
        >>> candidate(3, latency_ms=120)
        (3, 120, -1, 0, 'closed', 0)
    """
    return (deployment, latency_ms, ttft_ms, error_rate_pct, circuit, in_flight)


def candidates(targets: Sequence[TargetLike], circuits: CircuitsLike) -> list[Candidate]:
    """The candidates of registered ``targets``, their health read from ``circuits`` in one call (an EWMA not
    known yet is ``-1``; the error rate in whole percent).

    Example:
        >>> class Table:
        ...     def facts(self, slots):
        ...         return [(1, 3, 0.25, 0.4, -1.0) for _ in slots]
        >>> class Target:
        ...     rule_id, slot = 0, 7
        >>> candidates([Target()], Table())
        [(0, 400, -1, 25, 'open', 3)]
    """
    rows = circuits.facts([t.slot for t in targets])
    return [
        (
            t.rule_id,
            -1 if latency < 0 else round(latency * 1000),
            -1 if ttft < 0 else round(ttft * 1000),
            round(error_rate * 100),
            _CIRCUIT[state] if 0 <= state <= 2 else "closed",
            in_flight,
        )
        for t, (state, in_flight, error_rate, latency, ttft) in zip(targets, rows, strict=True)
    ]


def budget_cents(left_usd: float | None) -> int:
    """``budget_left_cents`` of a budget's USD left: ``-1`` for no budget, never below 0 otherwise.

    Example:
        >>> budget_cents(None), budget_cents(9.999), budget_cents(-3.0)
        (-1, 999, 0)
    """
    if left_usd is None:
        return -1
    return max(0, math.floor(left_usd * 100 + 1e-9))


def micro_usd(usd_per_million: float | None) -> int:
    """A deployment's price attribute (micro-USD per 1M tokens) of a price in USD per 1M tokens (``None``: 0).

    Example:
        >>> micro_usd(2.5), micro_usd(None)
        (2500000, 0)
    """
    return 0 if usd_per_million is None else round(usd_per_million * 1_000_000)


def _config_error(error: _core.RoutePolicyError, sources: Sequence[str]) -> ConfigError:
    """The :class:`ConfigError` of a core error (one ``<source>:<line>:<col>: <what>`` line per problem)."""
    problems: list[tuple[str, str, str]] = []
    for line in str(error).splitlines():
        origin = next((s for s in sorted(sources, key=len, reverse=True) if line.startswith(f"{s}:")), "")
        match = _PROBLEM.fullmatch(line[len(origin) + 1 :]) if origin else None
        if match is None:
            problems.append((origin or "routing rules", "(rules)", line))
        else:
            problems.append((origin, f"line {match[1]}, column {match[2]}", match[3]))
    origins = {p[0] for p in problems}
    if len(origins) == 1:
        return ConfigError(origins.pop(), [(where, what) for _, where, what in problems])
    return ConfigError("routing rules", [(f"{origin} {where}", what) for origin, where, what in problems])


def _compile(sources: list[tuple[str, str]]) -> _core.RoutePolicy:
    try:
        return _core.RoutePolicy.from_sources(sources)
    except _core.RoutePolicyError as exc:
        raise _config_error(exc, [name for _, name in sources]) from None


def validate_text(text: str, source: str = "admin") -> list[str]:
    """Checks rules given as text (the admin API's ``PUT /admin/v1/llm/rules``); returns their ids.

    Raises:
        ConfigError: a rule does not parse or validate; the problems name ``source`` and the line.

    Example:
        >>> validate_text('@id("a") permit(principal, action, resource);')
        ['a']
        >>> try:
        ...     validate_text("permit(principal, action, resource) when { resource.latnecy_ms > 1 };")
        ... except ConfigError as exc:
        ...     exc.source, exc.problems[0][0]
        ('admin', 'line 1, column 44')
    """
    return _compile([(text, source)]).ids


class RoutingRules:
    """The compiled rules and the deployments registered with them: one per routing table (built again on
    reload). ``register`` (or ``deployment``) every deployment once, then ``order`` per request (the hot path),
    ``decide`` or ``judge`` for the dry run."""

    __slots__ = ("policy", "sources", "uses_budget")

    def __init__(self, policy: _core.RoutePolicy, sources: tuple[str, ...], uses_budget: bool = True) -> None:
        self.policy = policy
        self.sources = sources
        #: Whether a rule reads ``context.budget_left_cents`` (the route phase then reads the budgets first).
        self.uses_budget = uses_budget

    @classmethod
    def load(cls, settings: RoutingSettings, base_dir: str | Path | None = None) -> RoutingRules | None:
        """The rules of ``settings.rules_file`` (relative to ``base_dir``, default the working directory) and of
        ``settings.rules``, in that order; ``None`` when there is no rule.

        Raises:
            ConfigError: the file cannot be read, or a rule is bad (naming the file or ``routing.rules`` and the
                line).
        """
        sources: list[tuple[str, str]] = []
        if settings.rules_file:
            path = Path(settings.rules_file)
            if base_dir is not None and not path.is_absolute():
                path = Path(base_dir) / path
            try:
                sources.append((path.read_text(encoding="utf-8"), settings.rules_file))
            except (OSError, UnicodeDecodeError) as exc:
                message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise ConfigError(settings.rules_file, [("(file)", message)]) from None
        if settings.rules.strip():
            sources.append((settings.rules, INLINE_SOURCE))
        if not sources:
            return None
        policy = _compile(sources)
        if not policy.ids:
            return None
        reads_budget = any("budget_left_cents" in text for text, _ in sources)
        return cls(policy, tuple(name for _, name in sources), reads_budget)

    @classmethod
    def from_text(cls, text: str, source: str = INLINE_SOURCE) -> RoutingRules:
        """The rules of one text (``source`` names it in errors). Raises :class:`ConfigError`."""
        return cls(_compile([(text, source)]), (source,), "budget_left_cents" in text)

    @property
    def ids(self) -> list[str]:
        """The rules' ids, in source order (``@id``, else ``policy<N>``)."""
        return self.policy.ids

    def register(self, target: TargetLike, price: Price | None = None) -> int:
        """Registers a deployment of the routing table (the router calls it once per target and keeps the id in
        ``target.rule_id``); ``price`` in USD per 1M tokens (``None``: 0)."""
        return self.deployment(
            key=target.key,
            provider=target.upstream_kind,
            upstream=target.upstream,
            model=target.model,
            group=target.group,
            tags=target.tags,
            input_price_micro_usd=micro_usd(None if price is None else price.input),
            output_price_micro_usd=micro_usd(None if price is None else price.output),
        )

    def deployment(
        self,
        *,
        key: str,
        provider: str,
        upstream: str,
        model: str,
        group: str,
        tags: Sequence[str] = (),
        input_price_micro_usd: int = 0,
        output_price_micro_usd: int = 0,
    ) -> int:
        """Registers a deployment's fixed attributes (``key`` = ``<upstream>/<model>``; prices in micro-USD per 1M
        tokens, see :func:`micro_usd`); returns its id for candidates. Register it once per group it serves."""
        return self.policy.deployment(
            key, provider, upstream, model, group, list(tags), input_price_micro_usd, output_price_micro_usd
        )

    def decide(self, request: RequestFacts, candidates: list[Candidate]) -> Decision:
        """The verdict of every candidate (the dry run, ``POST /admin/v1/llm/route``).

        Raises:
            ValueError: a candidate's id was not registered, or its circuit is not closed/open/half_open.
        """
        verdicts = self.policy.decide(request, candidates)
        return Decision(tuple(Verdict(d, ok, score, tuple(ids)) for d, ok, score, ids in verdicts))

    def order(self, request: RequestFacts, candidates: list[Candidate]) -> list[int]:
        """The eligible candidates' ids, highest score first, ties in candidate order (the router's hot path:
        one core call, no verdict objects)."""
        return self.policy.order(request, candidates)

    def order_group(
        self,
        request: RequestFacts,
        circuits: _core.Circuits,
        group: _core.RouteTargets[P],
        by: int,
        first: int,
        base: list[int] | None,
    ) -> list[P]:
        """The router's whole ordering of a group in one core call (``routing.plan.ruled_order`` gives
        ``group``, ``by``, ``first`` and ``base``): the strategy's order, then the rules'; the eligible targets,
        highest score first, ties in the strategy's order."""
        return self.policy.order_group(request, circuits, group, by, first, base)

    def judge(
        self, facts: Mapping[str, Any], targets: Sequence[T], circuits: CircuitsLike
    ) -> list[tuple[T, bool, int, list[str]]]:
        """The dry run's verdicts (``Router.explain``): per registered target, in order, ``(target, eligible, score,
        ids of the deciding rules)``, for the described request ``facts`` (:func:`described_facts`)."""
        decision = self.decide(described_facts(facts), candidates(targets, circuits))
        return [(t, v.eligible, v.score, list(v.rules)) for t, v in zip(targets, decision.verdicts, strict=True)]
