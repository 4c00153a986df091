"""Prometheus metrics: cheap in-process aggregates on the hot path, flushed into prometheus-client every second.

The account phase calls :meth:`Metrics.observe` once per request. It only updates plain Python aggregates of
this worker (a dict from a label tuple to a count or sum; a histogram is a list of bucket counts plus the sum):
about a microsecond, no lock, no file. A background task (:meth:`Metrics.run`) moves the aggregates into
prometheus-client's objects every ``period_s`` (1 s), and :meth:`Metrics.close` does a last flush at shutdown,
so ``/metrics`` is at most about a second stale. prometheus-client's own ``inc``/``observe`` in multiprocess
mode write an mmap'd file each (a few µs per call, several per request): they run only in the flush, once
per label set and second, whatever the request rate.

Several workers: with ``PROMETHEUS_MULTIPROC_DIR`` set (``ferrogate serve`` sets a fresh directory per
instance), every worker writes its own files there and :meth:`Metrics.render` (``GET /metrics``, any worker)
merges all of them, so one scrape sees the whole instance. Without it, metrics are this process's only.

Example:
    >>> # metrics = Metrics(config, prices, recorder)        # one per worker, in Gateway.__init__
    >>> # task = loop.create_task(metrics.run())              # worker start: flush every second
    >>> # metrics.observe(ctx, cost)                          # account phase, once per request
    >>> # body, content_type = await metrics.render(accept)   # GET /metrics
    >>> # metrics.close()                                     # worker stop: last flush, mark_process_dead
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from bisect import bisect_left
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ferrogate import _core
from ferrogate.errors import BudgetExhausted, ErrorKind, GatewayError, Source
from ferrogate.observability.families import (
    AUDIT_EVENTS,
    AUDIT_PENDING,
    AUDIT_SPOOL_BYTES,
    AUDIT_STORE_FAILURES,
    BUDGET_REFUSALS,
    COST,
    FAMILIES,
    NONE,
    OTHER,
    OVERHEAD_SECONDS,
    RATE_LIMIT_REFUSALS,
    REQUEST_SECONDS,
    REQUESTS,
    TOKENS,
    TTFT_SECONDS,
    UNPRICED_MODELS,
    UNPRICED_REQUESTS,
    UPSTREAM_ERRORS,
    UPSTREAM_SECONDS,
    USAGE_PENDING,
    USAGE_RECORDS,
    USAGE_SPOOL_BYTES,
    USAGE_STORE_FAILURES,
    Family,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ferrogate.audit.writer import AuditWriter
    from ferrogate.config import Config
    from ferrogate.metering import PriceTable, UsageRecorder
    from ferrogate.pipeline.context import RequestContext

log = logging.getLogger("ferrogate.metrics")

#: The variable that turns on prometheus-client's multiprocess mode (a directory the workers share).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The route label of chat completions (each data-plane route is its own label: the chain passes its path).
CHAT_ROUTE = "/v1/chat/completions"

_RATE_CODES = frozenset(
    {f"{level}_{kind}_exceeded" for level in ("key", "user", "team", "deployment") for kind in ("rpm", "tpm")}
    | {"rate_limit_exceeded"}
)
_SCOPES = frozenset({"key", "user", "team"})
_RATE_KINDS = (ErrorKind.RATE_LIMITED_REQUESTS, ErrorKind.RATE_LIMITED_TOKENS)
_OUTCOMES = ("stored", "spooled", "replayed", "rejected")
_USAGE = (USAGE_RECORDS, USAGE_STORE_FAILURES, USAGE_SPOOL_BYTES, USAGE_PENDING)
_AUDIT = (AUDIT_EVENTS, AUDIT_STORE_FAILURES, AUDIT_SPOOL_BYTES, AUDIT_PENDING)
#: The four latency histograms of a request, in the order of the hot path's rows.
_LATENCY = (REQUEST_SECONDS, UPSTREAM_SECONDS, OVERHEAD_SECONDS, TTFT_SECONDS)

Labels = tuple[Any, ...]


def _row(rows: dict[Labels, list[float]], family: Family, labels: Labels) -> list[float]:
    """The pending row of histogram ``family`` at ``labels``: bucket counts, then the sum in the last slot.

    Rows stay for the life of the worker (label sets are bounded) and are zeroed by each flush, so the hot
    path can keep references to them.
    """
    row = rows.get(labels)
    if row is None:
        row = rows[labels] = [0.0] * (len(family.buckets) + 2)  # the finite buckets, +Inf, the sum
    return row


class _Cell:
    """The hot path's aggregates of one (route, model group, team), kept for the life of the worker.

    ``statuses`` counts requests by HTTP status; ``prompt``/``completion``/``cost`` add up usage; the four
    rows are the model group's rows of the latency histograms (shared by the group's cells). The flush
    moves the counts into the REQUESTS, TOKENS and COST families and zeroes them.
    """

    __slots__ = ("completion", "cost", "overhead", "prompt", "statuses", "total", "ttft", "upstream")

    def __init__(self, total: list[float], upstream: list[float], overhead: list[float], ttft: list[float]) -> None:
        self.statuses: dict[int, int] = {}
        self.total = total
        self.upstream = upstream
        self.overhead = overhead
        self.ttft = ttft
        self.prompt = 0.0
        self.completion = 0.0
        self.cost = 0.0


class Metrics:
    """This worker's metrics: in-process aggregates, their flush into prometheus-client, and the exposition.

    One per worker (it is not thread-safe: the hot path and the flush run on the worker's event loop).

    Args:
        config: the configuration; its model groups, upstreams and deployment models bound the label values.
        prices: the price table (costs of requests the account phase did not price; unpriced models).
        recorder: the usage recorder whose counters and spool size are collected at each flush (None: none).
        audit: the audit writer, collected the same way into the ``ferrogate_audit_*`` families (None: none).
        period_s: seconds between flushes in :meth:`run` (the staleness of ``/metrics``).

    Example:
        >>> # metrics = Metrics(load_config("configs/example.yaml"), price_table(config), recorder)
    """

    __slots__ = (
        "_audit",
        "_bounds",
        "_cells",
        "_families",
        "_max_teams",
        "_models",
        "_pending",
        "_priced_names",
        "_prices",
        "_prom",
        "_recorder",
        "_registry",
        "_seen",
        "_teams",
        "_unpriced",
        "_upstreams",
        "collectors",
        "directory",
        "period_s",
    )

    def __init__(
        self,
        config: Config,
        prices: PriceTable,
        recorder: UsageRecorder | None = None,
        audit: AuditWriter | None = None,
        *,
        period_s: float = 1.0,
    ) -> None:
        self.period_s = period_s
        self.directory = os.environ.get(MULTIPROC_ENV) or None
        self._prices = prices
        self._recorder = recorder
        self._audit = audit
        self._models = frozenset(g.name for g in config.model_groups)
        self._teams: set[str] = {NONE}  # team label values in use: at most max_teams (+ none), then "other"
        self._max_teams = config.metrics.max_teams + 1
        self._upstreams = frozenset(u.name for u in config.upstreams)
        served = sorted({d.model or g.name for g in config.model_groups for d in g.deployments})
        self._priced_names = frozenset(served)
        if self.directory is not None:
            _use_multiprocess(self.directory)
            self._registry: CollectorRegistry | None = None
        else:
            from prometheus_client import CollectorRegistry

            self._registry = CollectorRegistry()
        self._families = tuple(FAMILIES)
        self._prom: dict[str, Any] = {f.name: _build(f, self._registry) for f in self._families}
        #: Per family: label tuple -> pending amount (counters), value (gauges) or row (histograms).
        self._pending: dict[str, dict[Labels, Any]] = {f.name: {} for f in self._families}
        self._unpriced: dict[Labels, float] = self._pending[UNPRICED_REQUESTS.name]
        #: The hot path's aggregates, one cell per (route, model, team): see :class:`_Cell`.
        self._cells: dict[tuple[str, str, str], _Cell] = {}
        self._bounds = tuple(f.buckets for f in _LATENCY)
        #: Called with this object at the start of every flush, to set gauges read elsewhere (the circuits' states).
        self.collectors: list[Callable[[Metrics], None]] = []
        self._seen: dict[str, int] = {}
        for model in prices.missing(served):
            self.set(UNPRICED_MODELS, (model,), 1.0)
        self.flush()

    # ---- hot path ------------------------------------------------------------------------------------------
    def observe(self, ctx: RequestContext, cost: float | None = None, route: str = CHAT_ROUTE) -> None:
        """Account phase, once per request, last: count it, time it, add its tokens and cost (about 1 µs).

        ``cost`` is what the account phase priced (``None``: not priced there, e.g. with metering off; the
        price table is asked here). Latency histograms, tokens and cost count the requests that reached an
        upstream; refusals (also those after routing: a deployment limit, a budget) are counted in
        ``ferrogate_requests_total`` and their refusal family only. Upstream time and time to first token
        come from ``ctx.upstream_s`` and ``ctx.ttft_s`` (seconds; negative or absent: not measured).

        Example:
            >>> # metrics.observe(ctx, cost)   # in account(), once the cost is known
        """
        total = perf_counter() - ctx.started
        model = ctx.model
        if model not in self._models:
            model = OTHER
        identity = ctx.identity
        team = NONE if identity is None else identity.team_id or NONE
        if team not in self._teams:
            team = self._team(team)
        cell = self._cells.get((route, model, team))
        if cell is None:
            cell = self._cell(route, model, team)
        statuses = cell.statuses
        status = ctx.status
        statuses[status] = statuses.get(status, 0) + 1
        error = ctx.error
        if error is not None:
            if self._fault(ctx, error):
                return
        elif status >= 400 and ctx.provider is not None:
            self._upstream_status(ctx)
        if ctx.provider is None:
            return
        b_total, b_upstream, b_overhead, b_ttft = self._bounds
        row = cell.total
        row[bisect_left(b_total, total)] += 1.0  # the first bound >= the value (prometheus' rule); past all: +Inf
        row[-1] += total
        upstream_s = ctx.upstream_s
        if upstream_s >= 0.0:
            row = cell.upstream
            row[bisect_left(b_upstream, upstream_s)] += 1.0
            row[-1] += upstream_s
            overhead = total - upstream_s
            if overhead < 0.0:
                overhead = 0.0
            row = cell.overhead
            row[bisect_left(b_overhead, overhead)] += 1.0
            row[-1] += overhead
        if ctx.stream:
            ttft = ctx.ttft_s
            if ttft >= 0.0:
                row = cell.ttft
                row[bisect_left(b_ttft, ttft)] += 1.0
                row[-1] += ttft
        usage = ctx.usage
        if usage is None:
            return
        prompt, completion = usage.prompt_tokens, usage.completion_tokens
        if cost is None:
            priced = ctx.upstream_model or ctx.model
            cost = self._prices.cost(priced, prompt, completion, usage.cached_tokens)
            if cost is None:
                unpriced = self._unpriced
                name = (priced if priced in self._priced_names else OTHER,)
                unpriced[name] = unpriced.get(name, 0) + 1
                cost = 0.0
        cell.prompt += prompt
        cell.completion += completion
        cell.cost += cost

    def add(self, family: Family, labels: Labels, amount: float = 1.0) -> None:
        """Add ``amount`` to counter ``family`` at ``labels`` (label values in declaration order; bounded).

        Example:
            >>> # metrics.add(RATE_LIMIT_REFUSALS, ("key_rpm_exceeded",))
        """
        pending = self._pending[family.name]
        pending[labels] = pending.get(labels, 0) + amount

    def observe_value(self, family: Family, labels: Labels, value: float) -> None:
        """Observe ``value`` in histogram ``family`` at ``labels``.

        Example:
            >>> # metrics.observe_value(REQUEST_SECONDS, ("gpt-4o",), 0.42)
        """
        row = _row(self._pending[family.name], family, labels)
        row[bisect_left(family.buckets, value)] += 1.0
        row[-1] += value

    def set(self, family: Family, labels: Labels, value: float) -> None:
        """Set gauge ``family`` at ``labels`` to ``value`` (written at the next flush).

        Example:
            >>> # metrics.set(UNPRICED_MODELS, ("my-model",), 1.0)
        """
        self._pending[family.name][labels] = value

    def _team(self, team: str) -> str:
        """The label of a team not seen before: its id while fewer than ``metrics.max_teams`` are in use, else
        ``other`` (label sets stay bounded whatever the number of teams in the store)."""
        if len(self._teams) < self._max_teams:
            self._teams.add(team)
            return team
        return OTHER

    def _cell(self, route: str, model: str, team: str) -> _Cell:
        rows = [_row(self._pending[f.name], f, (model,)) for f in _LATENCY]
        cell = self._cells[route, model, team] = _Cell(*rows)
        return cell

    def _fault(self, ctx: RequestContext, error: BaseException) -> bool:
        """A request that ended with ``error``: count a refusal or an upstream fault (rare: off the common path).

        Returns ``True`` for a refusal of the client's request (its latency is not the upstream's business).
        """
        if isinstance(error, GatewayError):
            kind, info = error.kind, error.info
            if kind in _RATE_KINDS:
                code = error.wire_code
                self.add(RATE_LIMIT_REFUSALS, (code if code in _RATE_CODES else OTHER,))
            elif kind is ErrorKind.INSUFFICIENT_QUOTA:
                scope = error.scope if isinstance(error, BudgetExhausted) else None
                self.add(BUDGET_REFUSALS, (scope if scope in _SCOPES else "unknown",))
            elif info.source is Source.UPSTREAM:
                self.add(UPSTREAM_ERRORS, (self._upstream(ctx), info.code or OTHER))
            return info.source is Source.CLIENT
        if isinstance(error, _core.SseError):  # a malformed stream: the client got upstream_bad_response
            self.add(UPSTREAM_ERRORS, (self._upstream(ctx), "upstream_bad_response"))
        return False

    def _upstream_status(self, ctx: RequestContext) -> None:
        """An error answer of the upstream passed through (the gateway raised nothing)."""
        status = ctx.status
        reason = "status_429" if status == 429 else "status_4xx" if status < 500 else "status_5xx"
        self.add(UPSTREAM_ERRORS, (self._upstream(ctx), reason))

    def _upstream(self, ctx: RequestContext) -> str:
        name = getattr(ctx.provider, "name", None)
        return name if isinstance(name, str) and name in self._upstreams else OTHER

    # ---- off the hot path ----------------------------------------------------------------------------------
    def flush(self) -> None:
        """Move the pending aggregates into prometheus-client (its files, in multiprocess mode); collect the
        usage recorder's counters and gauges first.

        Example:
            >>> # metrics.flush()   # every period_s, in run(); and in render() and close()
        """
        for collect in self.collectors:
            collect(self)
        if self._recorder is not None:
            self._collect(self._recorder, _USAGE)
        if self._audit is not None:
            self._collect(self._audit, _AUDIT)
        self._spill_cells()
        for family in self._families:
            pending = self._pending[family.name]
            if not pending:
                continue
            metric = self._prom[family.name]
            if family.kind == "histogram":  # rows stay (the hot path holds them): written, then zeroed
                for labels, row in pending.items():
                    if any(row):
                        child = metric.labels(*labels) if labels else metric
                        buckets = child._buckets  # non-cumulative counts, as prometheus-client stores them
                        for i, count in enumerate(row[:-1]):
                            if count:
                                buckets[i].inc(count)
                        child._sum.inc(row[-1])
                        row[:] = [0.0] * len(row)
                continue
            items = list(pending.items())
            pending.clear()
            for labels, value in items:
                child = metric.labels(*labels) if labels else metric
                if family.kind == "gauge":
                    child.set(value)
                elif value:
                    child.inc(value)

    def _spill_cells(self) -> None:
        """Move the hot path's cells into the REQUESTS, TOKENS and COST counters (their rows need nothing)."""
        requests, tokens, costs = (self._pending[f.name] for f in (REQUESTS, TOKENS, COST))
        for (route, model, team), cell in self._cells.items():
            for status, count in cell.statuses.items():
                key: Labels = (route, model, team, status)
                requests[key] = requests.get(key, 0) + count
            cell.statuses.clear()
            if cell.prompt:
                tokens[model, team, "input"] = tokens.get((model, team, "input"), 0) + cell.prompt
            if cell.completion:
                tokens[model, team, "output"] = tokens.get((model, team, "output"), 0) + cell.completion
            if cell.cost:
                costs[model, team] = costs.get((model, team), 0) + cell.cost
            cell.prompt = cell.completion = cell.cost = 0.0

    def _collect(self, writer: UsageRecorder | AuditWriter, families: tuple[Family, Family, Family, Family]) -> None:
        """Add what a spooled writer counted since the last flush; set its spool size and queue length."""
        items, failures, spool_bytes, pending = families
        stats, seen = writer.stats, self._seen
        for outcome in _OUTCOMES:
            now, key = getattr(stats, outcome), f"{items.name}:{outcome}"
            if now > seen.get(key, 0):
                self.add(items, (outcome,), now - seen.get(key, 0))
                seen[key] = now
        if stats.store_failures > seen.get(failures.name, 0):
            self.add(failures, (), stats.store_failures - seen.get(failures.name, 0))
            seen[failures.name] = stats.store_failures
        self.set(spool_bytes, (), float(writer.spool_bytes))
        self.set(pending, (), float(writer.pending))

    async def run(self) -> None:
        """Flush every ``period_s`` seconds until cancelled; a failed flush is logged, not fatal.

        Example:
            >>> # task = loop.create_task(metrics.run())   # Gateway.__rsgi_init__
        """
        while True:
            await asyncio.sleep(self.period_s)
            try:
                self.flush()
            except Exception:
                log.exception("metrics flush failed")

    async def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition of the whole instance (every worker's files) and its content type.

        Flushes this worker first; other workers' values are at most ``period_s`` old. ``accept`` picks the
        format (OpenMetrics when asked for, else Prometheus text). The files are read in a thread.

        Example:
            >>> # body, content_type = await metrics.render(scope.headers.get("accept"))
        """
        from prometheus_client.exposition import choose_encoder

        self.flush()
        encoder, content_type = choose_encoder(accept or "")
        body = await asyncio.to_thread(self._render, encoder)
        return body, content_type

    def _render(self, encoder: Callable[[Any], bytes]) -> bytes:
        registry = self._registry
        if registry is None:
            from prometheus_client import CollectorRegistry
            from prometheus_client.multiprocess import MultiProcessCollector

            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.directory)  # type: ignore[no-untyped-call]
        return encoder(registry)

    def close(self) -> None:
        """Worker stop: a last flush, then (multiprocess) drop this worker's live gauges from the directory.

        Counters and histograms of a stopped worker stay in its files: the instance's totals do not go back.

        Example:
            >>> # metrics.close()   # Gateway.__rsgi_del__, after the recorder is closed
        """
        self.flush()
        if self.directory is not None:
            from prometheus_client.multiprocess import mark_process_dead

            mark_process_dead(os.getpid(), self.directory)  # type: ignore[no-untyped-call]


def instance_directory(instance: str) -> str | None:
    """Give this instance a fresh multiprocess directory, unless ``PROMETHEUS_MULTIPROC_DIR`` is already set.

    Called by ``ferrogate serve`` before the workers start (they inherit the variable). The directory is new
    and empty (``mkdtemp``: mode 0700, a name no other process has), in ``/dev/shm`` when there is one (the
    workers' mmap'd files then never touch a disk), else in the temp dir; its name holds ``instance`` (the
    port) and the pid. Prometheus-client itself is not imported here.

    Returns:
        The directory created (the caller removes it at exit), or ``None`` when the variable was set by the
        user (that directory is used as it is: wiping it between runs is then the user's business).

    Example:
        >>> # created = instance_directory("8080")   # -> "/dev/shm/ferrogate-metrics-8080-4242-x1y2z3"
    """
    if os.environ.get(MULTIPROC_ENV):
        return None
    shm = "/dev/shm"  # noqa: S108 (a private mkdtemp directory in it, mode 0700)
    parent = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()
    path = tempfile.mkdtemp(prefix=f"ferrogate-metrics-{instance}-{os.getpid()}-", dir=parent)
    os.environ[MULTIPROC_ENV] = path
    return path


def _use_multiprocess(directory: str) -> None:
    """Make prometheus-client write to ``directory`` even if it was imported before the variable was set
    (it picks its value class once, at import)."""
    from prometheus_client import values

    os.makedirs(directory, exist_ok=True)
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def _build(family: Family, registry: CollectorRegistry | None) -> Any:
    """The prometheus-client object of ``family`` (in ``registry``; none in multiprocess mode)."""
    from prometheus_client import Counter, Gauge, Histogram

    if family.kind == "counter":
        return Counter(family.name, family.help, family.labels, registry=registry)
    if family.kind == "histogram":
        return Histogram(family.name, family.help, family.labels, registry=registry, buckets=family.buckets)
    return Gauge(family.name, family.help, family.labels, registry=registry, multiprocess_mode=family.mode)
