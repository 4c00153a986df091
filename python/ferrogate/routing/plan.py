"""A model group as the route phase uses it (:class:`Group`, :class:`Target`), and the strategies that order its
deployments for one request (:func:`order`).

Built once per configuration by :class:`ferrogate.pipeline.router.Router`: nothing here parses or validates.
The order is the attempt order: the first deployment whose circuit admits the request and that has room serves;
a failed attempt goes to the next (:mod:`ferrogate.pipeline.failover`).
"""

from __future__ import annotations

from bisect import bisect
from itertools import accumulate
from random import random
from typing import TYPE_CHECKING, Any

from ferrogate._core import RouteTargets

if TYPE_CHECKING:
    from ferrogate._core import CircuitPolicy, Circuits
    from ferrogate.config.routing import RetrySettings
    from ferrogate.providers import Provider


class DeploymentLimits:
    """The rate limits of one deployment, with its bucket keys (``d:<group>:<index>:rpm``/``:tpm``).

    Example:
        >>> d = DeploymentLimits("gpt", 0, "openai-eu", rpm=2, tpm=None)
        >>> d.rpm_key, d.subject
        ('d:gpt:0:rpm', "model group 'gpt' (its deployment on upstream 'openai-eu')")
    """

    __slots__ = ("rpm", "rpm_key", "subject", "tpm", "tpm_key")

    def __init__(self, group: str, index: int, upstream: str, rpm: int | None, tpm: int | None) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.rpm_key = f"d:{group}:{index}:rpm"
        self.tpm_key = f"d:{group}:{index}:tpm"
        #: What a refusal names (clients see the group and the upstream, never its URL or key).
        self.subject = f"model group '{group}' (its deployment on upstream '{upstream}')"


class Target:
    """One deployment of one group: where an attempt goes.

    ``key`` (``<upstream>/<model>``) names its health: circuit state, in-flight count and latency EWMAs live in
    ``slot`` of the instance's shared :class:`~ferrogate._core.Circuits` table, shared with every group that
    serves the same upstream model. ``price`` is USD per million input plus output tokens (``None``: unpriced).
    """

    __slots__ = (
        "clearance",
        "group",
        "index",
        "key",
        "limits",
        "model",
        "price",
        "priority",
        "provider",
        "rule_id",
        "rule_pair",
        "slot",
        "tags",
        "upstream",
        "upstream_kind",
        "weight",
    )

    def __init__(
        self,
        provider: Provider,
        upstream_kind: str,
        group: str,
        index: int,
        model: str,
        clearance: int,
        limits: DeploymentLimits | None,
        slot: int,
        weight: float = 1.0,
        priority: int = 0,
        price: float | None = None,
        tags: tuple[str, ...] = (),
    ) -> None:
        self.provider = provider
        self.upstream: str = provider.name
        self.upstream_kind = upstream_kind  # the provider: openai, anthropic, mock
        self.group = group
        self.index = index
        self.model = model
        self.key = f"{self.upstream}/{model}"
        self.clearance = clearance
        self.limits = limits
        self.slot = slot
        self.weight = weight
        self.priority = priority
        self.price = price
        self.tags = tags
        self.rule_id = -1  # its id in the routing rules (-1: no rules)
        self.rule_pair = (-1, slot)  # (rule_id, slot): what the rules' one-call order takes

    def __repr__(self) -> str:
        return f"Target({self.key!r} of {self.group!r})"


class Group:
    """A model group: its deployments in ``priority`` order, how to order them for a request, and what to try when
    they all fail."""

    __slots__ = (
        "by_cost",
        "by_priority",
        "cleared",
        "cp_fallbacks",
        "cum_weights",
        "cw_fallbacks",
        "fallbacks",
        "name",
        "policy",
        "retries",
        "ruled",
        "ruled_by_cost",
        "schema_check",
        "slots",
        "strategy",
    )

    def __init__(
        self,
        name: str,
        targets: list[Target],
        strategy: str,
        retries: RetrySettings,
        policy: CircuitPolicy,
        fallbacks: tuple[str, ...] = (),
        cw_fallbacks: tuple[str, ...] = (),
        cp_fallbacks: tuple[str, ...] = (),
        schema_check: str = "off",
    ) -> None:
        self.name = name
        #: Every deployment, by ``priority`` then configuration order (the ``priority`` strategy's order).
        self.by_priority = tuple(sorted(targets, key=lambda t: (t.priority, t.index)))
        #: Per classification rank, the deployments cleared for it (by priority).
        self.cleared = tuple(tuple(t for t in self.by_priority if t.clearance >= rank) for rank in range(5))
        #: Per rank, the cleared deployments' circuit slots (one ``Circuits.facts`` call reads them all).
        self.slots = tuple([t.slot for t in cleared] for cleared in self.cleared)
        #: Per rank, the cleared deployments by price (the ``cost`` strategy: prices do not change per request).
        self.by_cost = tuple(
            [*sorted(cleared, key=lambda t: float("inf") if t.price is None else t.price)] for cleared in self.cleared
        )
        self.cum_weights = tuple(list(accumulate(t.weight for t in cleared)) for cleared in self.cleared)
        #: With routing rules (the targets registered with them): per rank, the cleared deployments by priority
        #: and by price with their ``rule_pair`` read once (``RoutePolicy.order_group``'s input); else ``None``.
        self.ruled: tuple[RouteTargets[Target], ...] | None = None
        self.ruled_by_cost: tuple[RouteTargets[Target], ...] | None = None
        if targets and all(t.rule_id >= 0 for t in targets):
            self.ruled = tuple(RouteTargets(cleared) for cleared in self.cleared)
            self.ruled_by_cost = tuple(RouteTargets(cleared) for cleared in self.by_cost)
        self.strategy = strategy
        self.retries = retries
        self.policy = policy
        self.fallbacks = fallbacks
        self.cw_fallbacks = cw_fallbacks
        self.cp_fallbacks = cp_fallbacks
        self.schema_check = schema_check


def order(group: Group, rank: int, stream: bool, circuits: Circuits, remaining: Any = None) -> list[Target]:
    """The deployments of ``group`` cleared for classification ``rank``, in the attempt order of its strategy.

    ``remaining`` (strategy ``capacity`` only) maps a target to the share of its rpm/tpm left (0..1; a target
    with no limits is taken as 1.0... less than a measured one: it sorts after those with room).

    Example:
        >>> from ferrogate._core import CircuitPolicy, Circuits
        >>> from ferrogate.config.routing import RetrySettings
        >>> class P:
        ...     def __init__(self, name): self.name = name
        >>> c = Circuits(None)
        >>> ts = [Target(P(n), "mock", "g", i, "m", 4, None, c.slot(n + "/m"), price=p) for i, (n, p) in
        ...       enumerate([("a", 5.0), ("b", 1.0)])]
        >>> g = Group("g", ts, "cost", RetrySettings(), None)
        >>> [t.upstream for t in order(g, 0, False, c)]
        ['b', 'a']
    """
    by_cost, by, first, base = _choice(group, rank, stream, remaining)
    items = group.by_cost[rank] if by_cost else group.cleared[rank]
    if first >= 0:  # the first drawn in proportion to the weights; the others (the retry order) by priority
        return [items[first], *items[:first], *items[first + 1 :]]
    if by >= 0:  # one call into the circuit table orders them (ties keep the priority order)
        return [items[i] for i in circuits.rank(group.slots[rank], by)]
    if base is not None:
        return [items[i] for i in base]
    return list(items)


def ruled_order(
    group: Group, rank: int, stream: bool, remaining: Any = None
) -> tuple[RouteTargets[Target], int, int, list[int] | None]:
    """:func:`order` as the routing rules' one call takes it (``RoutePolicy.order_group``): the base targets and
    the strategy's choice (:func:`_choice`). Only for a group whose targets are registered with the rules
    (``group.ruled``)."""
    by_cost, by, first, base = _choice(group, rank, stream, remaining)
    ruled = group.ruled_by_cost if by_cost else group.ruled
    assert ruled is not None
    return ruled[rank], by, first, base


def _choice(group: Group, rank: int, stream: bool, remaining: Any) -> tuple[bool, int, int, list[int] | None]:
    """What the strategy decides for one request, over the cleared deployments of ``rank``: whether the base order
    is by price (``cost``), else by priority; ``by``, the circuit table's ranking key (``least_in_flight``: 0,
    ``latency``: 1, or 2 for a stream's time to first token; an EWMA not known yet sorts first, so that deployment
    gets a sample), or -1; ``first``, the weighted draw's position, or -1; ``base``, positions in the base order
    when the strategy orders them itself (``capacity``: stable, ties keep priority order), else ``None``."""
    cleared = group.cleared[rank]
    strategy = group.strategy
    if strategy == "priority" or len(cleared) < 2:
        return False, -1, -1, None
    if strategy == "weighted":
        cum = group.cum_weights[rank]
        return False, -1, bisect(cum, random() * cum[-1]), None
    if strategy == "cost":
        return True, -1, -1, None
    if strategy in ("least_in_flight", "latency"):
        return False, 0 if strategy == "least_in_flight" else 2 if stream else 1, -1, None
    if strategy == "capacity" and remaining is not None:
        return False, -1, -1, sorted(range(len(cleared)), key=lambda i: -remaining(cleared[i]))
    return False, -1, -1, None
