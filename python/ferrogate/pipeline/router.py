"""The route phase's table: model group names and aliases -> :class:`~ferrogate.routing.plan.Group`.

Built from the configuration, and built again by :meth:`Router.reload` when the configuration changes (the
file, or the admin API): the new table replaces the old one in one assignment, so a request sees one table
from its route phase to its end; a request in flight keeps the providers it started with, and a provider the
new table no longer uses is closed after ``grace_s``. Providers whose upstream did not change are kept (their
connection pools stay warm).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import orjson

from ferrogate._core import Circuits
from ferrogate.auth.identity import Identity
from ferrogate.config.model import CLASSIFICATIONS, Config, Upstream
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.providers import Provider, build_provider
from ferrogate.routing.health import circuit_policy
from ferrogate.routing.plan import DeploymentLimits, Group, Target, order, ruled_order

if TYPE_CHECKING:
    from ferrogate.metering import PriceTable
    from ferrogate.routing.rules import RequestFacts, RoutingRules

log = logging.getLogger("ferrogate.routing")

#: A classification's rank: a deployment serves requests ranked at most its clearance's ("": no classification).
RANK: dict[str, int] = {"": 0, **{name: rank for rank, name in enumerate(CLASSIFICATIONS)}}

__all__ = ["RANK", "DeploymentLimits", "Router", "Table"]


class Table:
    """One configuration's routing: groups by name and alias, the providers they use, the ``/v1/models`` list."""

    __slots__ = ("config", "groups", "models", "providers", "rules")

    def __init__(
        self,
        config: Config,
        providers: dict[str, Provider],
        circuits: Circuits,
        prices: PriceTable | None,
        rules: RoutingRules | None,
    ) -> None:
        self.config = config
        self.providers = providers
        self.rules = rules
        routing = config.routing
        kinds = {u.name: u.provider for u in config.upstreams}
        self.groups: dict[str, Group] = {}
        for g in config.model_groups:
            retries = g.retries or routing.retries
            policy = circuit_policy(g.circuit or routing.circuit, retries, routing.latency_alpha)
            targets = []
            for index, dep in enumerate(g.deployments):
                limits = None
                if dep.rpm is not None or dep.tpm is not None:
                    limits = DeploymentLimits(g.name, index, dep.upstream, dep.rpm, dep.tpm)
                model = dep.model or g.name
                price = dep.price or (prices.price_for(model) if prices is not None else None)
                target = Target(
                    providers[dep.upstream],
                    kinds[dep.upstream],
                    g.name,
                    index,
                    model,
                    RANK[dep.clearance],
                    limits,
                    circuits.slot(f"{dep.upstream}/{model}"),
                    weight=dep.weight,
                    priority=dep.priority,
                    price=None if price is None else price.input + price.output,
                    tags=tuple(dep.tags),
                )
                if rules is not None:
                    target.rule_id = rules.register(target, price)
                    target.rule_pair = (target.rule_id, target.slot)
                targets.append(target)
            group = Group(
                g.name,
                targets,
                g.strategy or routing.strategy,
                retries,
                policy,
                tuple(g.fallbacks),
                tuple(g.context_window_fallbacks),
                tuple(g.content_policy_fallbacks),
                g.schema_check,
            )
            for name in (g.name, *g.aliases):
                self.groups[name] = group
        self.models = [
            (name, {"id": name, "object": "model", "created": 0, "owned_by": g.owned_by})
            for g in config.model_groups
            for name in (g.name, *g.aliases)
        ]


class Router:
    """Maps a requested model to its group and the group's deployments; owns the providers and the circuits.

    ``circuits`` is the instance's shared circuit table (``None``: one in this process only); ``prices`` the
    price table the ``cost`` strategy orders by; ``rules`` the routing rules loader (``None``: no rules).
    """

    __slots__ = (
        "_closing",
        "circuits",
        "default_max_tokens",
        "grace_s",
        "load_rules",
        "peek",
        "prices",
        "table",
        "tripped",
    )

    def __init__(
        self,
        config: Config,
        default_max_tokens: int = 4096,
        circuits: Circuits | None = None,
        prices: PriceTable | None = None,
        load_rules: Any = None,
        grace_s: float = 60.0,
    ) -> None:
        self.default_max_tokens = default_max_tokens
        self.circuits = circuits if circuits is not None else Circuits(None)
        self.prices = prices
        #: ``RoutingSettings -> RoutingRules | None`` (raises ConfigError on a bad rule); None: rules off.
        self.load_rules = load_rules
        self.grace_s = grace_s
        #: Called with a deployment key when an attempt tripped its circuit (``Health.tripped``: other instances).
        self.tripped: Any = None
        #: ``(key, limit, period_s) -> (remaining, reset_s)`` of the local limiter (the ``capacity`` strategy);
        #: None: the deployment limits' buckets are in Redis and capacity orders by priority.
        self.peek: Any = None
        self._closing: set[asyncio.Task[None]] = set()
        rules = load_rules(config.routing) if load_rules is not None else None
        providers = {u.name: build_provider(u, default_max_tokens) for u in config.upstreams}
        self.table = Table(config, providers, self.circuits, prices, rules)

    @property
    def providers(self) -> dict[str, Provider]:
        """The current table's providers, by upstream name."""
        return self.table.providers

    def group(self, name: str) -> Group | None:
        """The group ``name`` names (a group name or an alias), in the current table."""
        return self.table.groups.get(name)

    def models_for(self, identity: Identity) -> bytes:
        """The ``/v1/models`` body: the groups (and aliases) ``identity`` may use, in configuration order."""
        return orjson.dumps({"object": "list", "data": [m for name, m in self.table.models if identity.allows(name)]})

    def resolve(
        self, model: str, classification: str, stream: bool, facts: RequestFacts | None = None
    ) -> tuple[Group, list[Target]]:
        """The group ``model`` names and its deployments cleared for ``classification``, in strategy order; with
        ``facts`` (the request as the routing rules know it), as the rules then order them (one core call for
        both, :func:`~ferrogate.routing.plan.ruled_order`).

        Raises:
            GatewayError: 404 ``model_not_found`` when no model group has that name; 403
                ``classification_not_cleared`` when none of its deployments is cleared for the classification;
                403 ``no_deployment_allowed`` when the rules leave none eligible.
        """
        group = self.table.groups.get(model)
        if group is None:
            raise GatewayError(
                ErrorKind.UNKNOWN_MODEL,
                f"The model '{model}' does not exist or you do not have access to it.",
                param="model",
            )
        rank = RANK[classification]
        if not group.cleared[rank]:
            raise GatewayError(
                ErrorKind.CLASSIFICATION_NOT_CLEARED,
                f"No deployment of model '{model}' is cleared for requests classified '{classification}'.",
                param="x-ferrogate-classification",
            )
        remaining = self._remaining if group.strategy == "capacity" else None
        rules = self.table.rules
        if facts is None or rules is None:
            return group, order(group, rank, stream, self.circuits, remaining)
        ordered = rules.order_group(facts, self.circuits, *ruled_order(group, rank, stream, remaining))
        if not ordered:
            raise GatewayError(
                ErrorKind.ROUTE_FORBIDDEN,
                f"The routing rules allow no deployment of model '{model}' for this request.",
                param="model",
            )
        return group, ordered

    def explain(self, facts: dict[str, Any]) -> dict[str, Any]:
        """The dry run of ``POST /admin/v1/llm/route``: for a described request (``model``, ``classification``,
        ``stream``; the routing rules' ``team``, ``key``, ``user``, ``sla_ms``, ``budget_left_usd``), the group's
        deployments in attempt order with their health and the rules' verdict, and the one that would serve.

        Raises:
            GatewayError: 404 for an unknown model, 403 when no deployment is cleared for the classification.
        """
        group, targets = self.resolve(facts["model"], facts.get("classification") or "", bool(facts.get("stream")))
        verdicts = self.judge(facts, targets) if self.table.rules is not None else None
        candidates: list[dict[str, Any]] = []
        for i, target in enumerate(targets):
            view = self.circuits.view(target.slot)
            eligible, score, rules = (True, 0, []) if verdicts is None else verdicts[i][1:]
            state = ("closed", "open", "half_open")[view[0]] if 0 <= view[0] <= 2 else "closed"
            candidates.append(
                {
                    "deployment": target.key,
                    "upstream": target.upstream,
                    "model": target.model,
                    "eligible": eligible,
                    "score": score,
                    "rules": rules,
                    "circuit": state,
                    "error_rate": view[1],
                    "in_flight": view[6],
                    "ttft_ewma_ms": round(view[7] * 1000.0, 3),
                    "latency_ewma_ms": round(view[8] * 1000.0, 3),
                }
            )
        if verdicts is not None:  # the rules' order: eligible first, by score, then the strategy's
            ranks = {id(v[0]): (not v[1], -v[2], i) for i, v in enumerate(verdicts)}
            pairs = sorted(zip(targets, candidates, strict=True), key=lambda p: ranks[id(p[0])])
            candidates = [c for _, c in pairs]
        chosen = next((c["deployment"] for c in candidates if c["eligible"] and c["circuit"] != "open"), None)
        return {
            "model": facts["model"],
            "group": group.name,
            "strategy": group.strategy,
            "candidates": candidates,
            "chosen": chosen,
            "fallbacks": list(group.fallbacks),
        }

    def judge(self, facts: dict[str, Any], targets: list[Target]) -> list[tuple[Target, bool, int, list[str]]]:
        """The routing rules' verdict on each target: ``(target, eligible, score, ids of the deciding rules)``."""
        rules = self.table.rules
        assert rules is not None
        return rules.judge(facts, targets, self.circuits)

    def _remaining(self, target: Target) -> float:
        """The share of a deployment's rpm/tpm left (the ``capacity`` strategy): the tighter of the two; 0.0 without
        limits, or when its buckets are not in this process (``peek`` is None: Redis), so those sort last."""
        limits, peek = target.limits, self.peek
        if limits is None or peek is None:
            return 0.0
        share = 1.0
        if limits.rpm is not None:
            share = min(share, peek(limits.rpm_key, float(limits.rpm), 60.0)[0] / limits.rpm)
        if limits.tpm is not None:
            share = min(share, peek(limits.tpm_key, float(limits.tpm), 60.0)[0] / limits.tpm)
        return share

    def reload(self, config: Config) -> None:
        """Route by ``config`` from now on. Providers of unchanged upstreams are kept; the others are closed after
        ``grace_s`` (requests in flight on them finish first). Rules that do not load raise before anything is
        replaced (the running table stays).

        Raises:
            ferrogate.config.errors.ConfigError: the routing rules of ``config`` do not load.
        """
        rules = self.load_rules(config.routing) if self.load_rules is not None else None
        old = self.table
        known: dict[str, Upstream] = {u.name: u for u in old.config.upstreams}
        providers: dict[str, Provider] = {}
        for upstream in config.upstreams:
            same = known.get(upstream.name)
            if same is not None and same == upstream and upstream.name in old.providers:
                providers[upstream.name] = old.providers[upstream.name]
            else:
                providers[upstream.name] = build_provider(upstream, self.default_max_tokens)
        self.table = Table(config, providers, self.circuits, self.prices, rules)
        kept = {id(p) for p in providers.values()}
        retired = [p for p in old.providers.values() if id(p) not in kept]
        if retired:
            self._close_later(retired)
        log.info(
            "routing reloaded: %d model groups, %d upstreams (%d replaced)",
            len(config.model_groups),
            len(config.upstreams),
            len(retired),
        )

    def _close_later(self, providers: list[Provider]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a reload outside the server): nothing in flight to wait for
            return
        task = loop.create_task(self._close_after(providers))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_after(self, providers: list[Provider]) -> None:
        await asyncio.sleep(self.grace_s)
        for provider in providers:
            with contextlib.suppress(Exception):
                await provider.close()

    async def close(self) -> None:
        """Close every provider's connection pool (and those waiting for their grace period)."""
        for task in list(self._closing):
            task.cancel()
        for provider in self.table.providers.values():
            await provider.close()
