"""The RSGI application Granian serves: one :class:`Gateway` per worker process.

Dispatch is one dict lookup on the path, then on the method (405 with ``Allow`` when the path
exists with other methods, 404 when it does not). Every response carries ``x-request-id``: the
client's, when well-formed, or a new one.

Example:
    ``granian --interface rsgi --factory ferrogate.server.app:create_app`` (what ``ferrogate serve`` runs).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from granian.rsgi import HTTPProtocol, Scope

from ferrogate import _core
from ferrogate.admin.api import AdminApi
from ferrogate.admin.mcp_models import McpParts
from ferrogate.admin.service import AdminService
from ferrogate.audit.writer import AuditWriter
from ferrogate.auth.authenticator import Authenticator
from ferrogate.auth.broadcast import Invalidator
from ferrogate.auth.identity import DEV_IDENTITY
from ferrogate.auth.keys import KeyHasher
from ferrogate.budgets.ledger import BudgetLedger
from ferrogate.budgets.notify import WebhookNotifier
from ferrogate.config import Config, default_config, load_config
from ferrogate.errors import ErrorKind, GatewayError, store_unavailable
from ferrogate.guardrails import Guardrails
from ferrogate.guardrails.sync import PolicySync
from ferrogate.journal.requests import RequestJournal
from ferrogate.limits import Limiter, LocalLimiter
from ferrogate.mcp.runtime import McpRuntime, McpWiring, until_gone
from ferrogate.metering import PriceTable, UsageRecorder
from ferrogate.metering.prices import standard_prices
from ferrogate.observability import tracing_enabled
from ferrogate.observability.families import CIRCUIT_STATE, CIRCUIT_TRIPS, STORE_UP
from ferrogate.observability.logs import RequestLog
from ferrogate.observability.metrics import Metrics
from ferrogate.pipeline.chain import COUNT_PHASES, COUNT_TOKENS, INGRESSES, Chain, ChainDeps, write_error
from ferrogate.pipeline.router import Router
from ferrogate.routing.health import Health, deployments_of, open_table
from ferrogate.routing.reload import ConfigReloader
from ferrogate.routing.rules import RoutingRules
from ferrogate.server.respawn import default_stop_signals
from ferrogate.server.settings import Settings
from ferrogate.server.usage import usage_report
from ferrogate.store import Store, StoreError, open_store
from ferrogate.store.health import STORE_FAULTS, StoreHealth

if TYPE_CHECKING:
    from ferrogate.observability.traces import Tracer

log = logging.getLogger("ferrogate.server")

Handler = Callable[[Scope, HTTPProtocol, list[tuple[str, str]], str], Awaitable[None]]

_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
#: The MCP methods that wait on an upstream server (a client hanging up cancels them: mcp.runtime.until_gone).
_MCP_WAITING = frozenset({"tools/call", "resources/read", "prompts/get"})
_JSON = ("content-type", "application/json")


class Gateway:
    """The application: routes, shared state of this worker, and its start/stop hooks."""

    def __init__(self, config: Config, store: Store, settings: Settings, config_path: str | None = None) -> None:
        self.config = config
        self.store = store
        self.settings = settings
        prices = price_table(config)
        #: The instance's circuit breakers (a table every worker maps; Redis carries trips between instances).
        self.circuits = open_table(settings.circuits_path)
        self.router = Router(
            config,
            config.server.default_max_tokens,
            circuits=self.circuits,
            prices=prices,
            load_rules=RoutingRules.load,  # routing.rules and routing.rules_file (Cedar), validated at each load
        )
        #: The circuits' views (admin API, metrics) and their trips across instances (Redis).
        self.upstream_health = Health(self.circuits, settings.redis_url)
        self.upstream_health.track(deployments_of(config))
        #: The worker's one scanner and the policies of every team and key; the admin API's change feed calls
        #: ``guardrails.apply(docs)`` with the stored policy documents.
        self.guardrails = Guardrails(config.guardrails)
        hasher = KeyHasher(settings.master_key.encode())
        self.store_health = StoreHealth()  # this worker's view of the store: probed every second
        self.auth = Authenticator(
            store,
            hasher,
            ttl_s=settings.auth_cache_ttl_s,
            anonymous=DEV_IDENTITY if settings.dev else None,
            stale_s=settings.auth_stale_if_error_s,
            store_timeout_s=settings.store_timeout_s,
            health=self.store_health,
        )
        self.auth.throttle.free = settings.auth_free_failures
        metering = config.metering
        fsync_s = config.server.journal_fsync_ms / 1000.0
        self.recorder = UsageRecorder(
            store,
            Path(config.server.spool_dir),
            batch_size=metering.batch_size,
            interval_s=metering.interval_s,
            fsync_interval_s=fsync_s,
            journal=config.server.journal,
        )
        self.audit = AuditWriter(
            store,
            Path(config.server.spool_dir) / "audit",
            batch_size=config.audit.batch_size,
            interval_s=config.audit.interval_s,
            fsync_interval_s=fsync_s,
            journal=config.server.journal,
        )
        # every request's facts, written once for both writers before its answer's last byte (docs/journal.md)
        self.journal: RequestJournal | None = None
        if config.server.journal and (metering.enabled or config.audit.requests):
            self.journal = RequestJournal(Path(config.server.spool_dir) / "requests", fsync_interval_s=fsync_s)
            if metering.enabled:
                self.recorder.share(self.journal)
            if config.audit.requests:
                self.audit.share(self.journal)
        budgets = config.budgets
        secret = budgets.webhook_secret.get_secret_value() if budgets.webhook_secret else None
        self.notifier = WebhookNotifier(budgets.webhook_url, secret=secret) if budgets.webhook_url else None
        self.ledger = BudgetLedger(
            store, budgets, self.notifier, timeout_s=settings.store_timeout_s, health=self.store_health
        )
        info = logging.getLogger("ferrogate.request").isEnabledFor(logging.INFO)
        self.request_log = RequestLog(config.logging.requests and info)
        if settings.redis_url:  # redis-py is imported only then (limits/__init__.py)
            from ferrogate.limits.redis import RedisLimiter

            self.limiter: Limiter = RedisLimiter.from_url(settings.redis_url)
        else:
            self.limiter = LocalLimiter(settings.limits_path)
        if self.limiter.sync_core is not None:  # the capacity strategy reads the local buckets
            self.router.peek = self.limiter.sync_core.peek
        self.prometheus = Metrics(config, prices, self.recorder, self.audit)  # GET /metrics; flushed every second
        self.prometheus.collectors.append(self._circuit_gauges)
        self.router.tripped = self._tripped
        deps = ChainDeps(
            router=self.router,
            auth=self.auth,
            limiter=self.limiter,
            recorder=self.recorder if metering.enabled else None,
            ledger=self.ledger,
            request_log=self.request_log,
            audit=self.audit if config.audit.requests else None,
            prices=prices,
            metrics=self.prometheus if config.metrics.enabled else None,
            max_body=config.server.max_body_bytes,
            bounds=config.requests,
            default_max_tokens=config.server.default_max_tokens,
            journal=self.journal,
            guardrails=self.guardrails,
        )
        #: One chain per data-plane route, over the same phases (pipeline/chain.py INGRESSES).
        self.chains = {path: Chain(deps, ingress) for path, ingress in INGRESSES.items()}
        self.chat = self.chains["/v1/chat/completions"]
        self.count_tokens = Chain(deps, COUNT_TOKENS, COUNT_PHASES)
        self.invalidator = Invalidator(self.auth.forget, settings.redis_url, self.auth.expire)
        #: The stored policy documents, applied to ``guardrails`` at start and within a second of every change
        #: (a change made here at once; others through Redis and the store's version poll).
        self.policies = PolicySync(
            self.guardrails,
            store,
            settings.redis_url,
            poll_s=settings.guardrails_poll_s,
            timeout_s=settings.store_timeout_s,
        )
        #: The running configuration: the file's (``config_path``, watched) with the admin API's stored routing
        #: overrides; every change goes to ``router.reload`` (docs/routing.md, "Hot reload and the admin API").
        self.reloader = ConfigReloader(
            config_path,
            store,
            self.router,
            settings.redis_url,
            config=config,
            check_rules=self.router.load_rules,  # RoutingRules.load: a bad rule is refused before it is stored
            timeout_s=settings.store_timeout_s,
        )
        self.reloader.on_reload.append(self.routing_reloaded)
        #: The MCP tool gateway: upstream MCP servers, tool policies, pins, the /mcp and /mcp/v1 fronts.
        self.mcp = McpRuntime(
            McpWiring(
                settings=config.mcp,
                store=store,
                limiter=self.limiter,
                guardrails=self.guardrails,
                audit=self.audit if config.audit.requests else None,
                metrics=self.prometheus if config.metrics.enabled else None,
                auth=self.auth,
                master_key=settings.master_key.encode(),
                redis_url=settings.redis_url,
                timeout_s=settings.store_timeout_s,
                poll_s=settings.guardrails_poll_s,
            )
        )
        mcp = self.mcp
        service = AdminService(
            store,
            config,
            hasher,
            self.invalidator,
            self.audit,
            self.policies,
            routing=self.reloader,
            health=self.upstream_health,
            mcp=McpParts(mcp, mcp.pins, mcp.policies, mcp.sealer, mcp.sync),  # mcp: its catalog's status
        )
        self.admin = AdminApi(service, settings.master_key)
        self.tracer: Tracer | None = None  # set per worker in __rsgi_init__ when an OTLP endpoint is configured
        self.in_flight = 0
        self._rid_prefix = os.urandom(6).hex()
        self._seq = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.routes: dict[str, dict[str, Handler]] = {
            **{path: {"POST": chain} for path, chain in self.chains.items()},
            "/v1/messages/count_tokens": {"POST": self.count_tokens},
            "/v1/models": {"GET": self.models},
            "/v1/usage": {"GET": self.usage},
            "/v1/teams/me/usage": {"GET": self.usage},
            "/health": {"GET": self.health},
            "/ready": {"GET": self.ready},
            "/metrics": {"GET": self.metrics},
        }
        if mcp.endpoint is not None:  # the aggregated MCP server (built on first need); /mcp/v1/* by prefix
            self.routes["/mcp"] = {"POST": mcp.endpoint, "GET": mcp.endpoint, "DELETE": mcp.endpoint}

    async def __rsgi__(self, scope: Scope, proto: HTTPProtocol) -> None:
        """Serve one HTTP request (Granian's RSGI entry point)."""
        # The gateway's own id (a random per-process prefix and a counter: unique without a syscall) keys
        # usage records and budget holds; a client's well-formed x-request-id is echoed but never trusted
        # to be unique (a client reusing one must not lose or merge usage).
        self._seq += 1
        rid = f"{self._rid_prefix}{self._seq:012x}"
        client_rid = scope.headers.get("x-request-id")
        if client_rid is not None and _REQUEST_ID.fullmatch(client_rid) is not None:
            headers = [("x-request-id", client_rid)]
        else:
            headers = [("x-request-id", rid)]
        methods = self.routes.get(scope.path)
        handler = methods.get(scope.method) if methods is not None else None
        if handler is None:
            path = scope.path
            if path.startswith("/admin/"):
                handler = self.admin
            elif path.startswith("/mcp/v1/"):
                handler = self.mcp.rest  # None when this worker does not serve MCP
        if handler is None:
            write_error(proto, _no_route(scope, methods), headers)
            return
        self.in_flight += 1
        try:
            if scope.method == "POST" and self._mcp_waits(handler, scope):
                await until_gone(proto, handler(scope, proto, headers, rid))
            else:
                await handler(scope, proto, headers, rid)
        finally:
            self.in_flight -= 1

    def _mcp_waits(self, handler: object, scope: Scope) -> bool:
        """Whether a POST may wait on an upstream MCP server (a tool call, a read, a prompt), so a client hanging
        up cancels it: every REST call, and every ``/mcp`` request but those whose ``Mcp-Method`` names a list or
        a notification (answered at once)."""
        if handler is self.mcp.rest:
            return scope.path.endswith(":call")
        if handler is not self.mcp.endpoint:
            return False
        method = scope.headers.get("mcp-method")
        return method is None or method in _MCP_WAITING

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Worker start, with SIGTERM and SIGINT at their default actions while it runs
        (:func:`~ferrogate.server.respawn.default_stop_signals`: Granian's handlers, set already, would lose a stop
        that comes before the worker serves); they are back before it serves."""
        previous = default_stop_signals()
        try:
            self._start(loop)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Worker start (Granian calls it once per worker, before serving): warm the tokenizers the configured
        models use (o200k_base ~18 MB; another is loaded on first use), load the stored guardrail policies,
        and start the background jobs (among them the policies' version poll and Redis listener)."""
        for encoding in sorted(encodings_used(self.config)):
            _core.count_tokens("warm up", encoding)
        loop.run_until_complete(self.policies.load())  # the stored policies before the first request (or logged)
        loop.run_until_complete(self.reloader.load())  # the stored routing overrides before the first request
        self._tasks.append(loop.create_task(self.reloader.poll()))
        self._tasks.append(loop.create_task(self.reloader.listen()))
        self._tasks.append(loop.create_task(self.reloader.watch()))
        self._tasks.append(loop.create_task(self.upstream_health.listen()))
        if self.config.mcp.enabled:  # each upstream MCP server connects in its own task; nothing waits for them
            self._tasks.extend(loop.run_until_complete(self.mcp.start(loop)))
        self._tasks.append(loop.create_task(self.policies.poll()))
        self._tasks.append(loop.create_task(self.policies.listen()))
        self._tasks.append(loop.create_task(self._every(5.0, self.auth.flush_last_used)))
        self._tasks.append(loop.create_task(self.invalidator.listen()))
        self._tasks.append(loop.create_task(self.recorder.run()))
        self._tasks.append(loop.create_task(self.audit.run()))
        if self.notifier is not None:
            self._tasks.append(loop.create_task(self.notifier.run()))
        self._tasks.append(loop.create_task(self.prometheus.run()))
        self._tasks.append(loop.create_task(self._every(1.0, self.probe_store)))
        if self.request_log.enabled:
            self._tasks.append(loop.create_task(self.request_log.run()))
        if tracing_enabled():  # OpenTelemetry is imported only when traces are exported
            from ferrogate.observability.traces import setup

            self.tracer = setup(self.config.upstreams)
            for chain in (*self.chains.values(), self.count_tokens):
                chain.tracer = self.tracer
        log.info("worker %d ready: %d model groups", os.getpid(), len(self.config.model_groups))

    def _tripped(self, key: str) -> None:
        """An attempt of this worker tripped deployment ``key``'s circuit: counted, and told to other instances."""
        self.upstream_health.tripped(key)
        if self.config.metrics.enabled:
            upstream, _, model = key.partition("/")
            self.prometheus.add(CIRCUIT_TRIPS, (upstream, model))

    def _circuit_gauges(self, metrics: Metrics) -> None:
        """``ferrogate_circuit_state`` of every configured deployment (the metrics flush calls it)."""
        for labels, state in self.upstream_health.gauges():
            metrics.set(CIRCUIT_STATE, labels, float(state))

    def routing_reloaded(self, config: Config) -> None:
        """After a reload of the routing: the deployments the circuit gauges report."""
        self.upstream_health.track(deployments_of(config))

    async def _every(self, period_s: float, job: Callable[[], Awaitable[object]]) -> None:
        """Run ``job`` every ``period_s`` seconds, off the hot path; a failure is logged, not fatal."""
        while True:
            await asyncio.sleep(period_s)
            try:
                await job()
            except STORE_FAULTS as exc:  # an outage: the probe reports it; no traceback every period
                log.warning("background job %s: store unavailable (%s)", getattr(job, "__name__", job), exc)
            except Exception:
                log.exception("background job %s failed", getattr(job, "__name__", job))

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Worker stop: let in-flight requests finish within the grace period, then close pools."""
        loop.run_until_complete(self.drain(self.config.server.grace_period_s))
        # upstream MCP sessions closed, stdio servers ended, pending first-use approvals audited before the writers
        loop.run_until_complete(self.mcp.close())
        loop.run_until_complete(self.recorder.close())  # every usage record written, or spooled
        loop.run_until_complete(self.audit.close())  # every audit event chained, or spooled
        if self.journal is not None:
            self.journal.close()  # after both writers: what either has not stored stays for the successor
        self.prometheus.close()  # a last flush; this worker's live gauges leave the multiprocess directory
        if self.notifier is not None:
            loop.run_until_complete(self.notifier.close())  # queued budget notices get a last try
        self.request_log.flush()
        if self.tracer is not None:
            self.tracer.shutdown()  # the queued spans are exported
        for task in self._tasks:
            task.cancel()
        loop.run_until_complete(self.auth.flush_last_used())
        loop.run_until_complete(self.invalidator.close())
        loop.run_until_complete(self.policies.close())
        loop.run_until_complete(self.reloader.close())
        loop.run_until_complete(self.upstream_health.close())
        loop.run_until_complete(self.router.close())
        loop.run_until_complete(self.store.close())

    async def drain(self, grace_s: float) -> None:
        """Wait until no request is in flight, or ``grace_s`` seconds have passed."""
        deadline = time.monotonic() + grace_s
        # polling, at shutdown only: an Event would cost every request a set/clear
        while self.in_flight and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if self.in_flight:
            log.warning("shutdown: %d requests still in flight after %.1fs", self.in_flight, grace_s)

    async def models(self, scope: Scope, proto: HTTPProtocol, headers: list[tuple[str, str]], rid: str) -> None:
        """``GET /v1/models``: the model groups the calling key may use."""
        try:
            identity = await self.auth.identify(scope)
        except GatewayError as err:
            write_error(proto, err, headers)
            return
        proto.response_bytes(200, [_JSON, *headers], self.router.models_for(identity))

    async def usage(self, scope: Scope, proto: HTTPProtocol, headers: list[tuple[str, str]], rid: str) -> None:
        """``GET /v1/usage`` (and ``/v1/teams/me/usage``): the calling key's team's usage and budget (503
        ``store_unavailable`` while the store cannot be reached)."""
        try:
            identity = await self.auth.identify(scope)
            try:
                async with asyncio.timeout(self.settings.store_timeout_s):
                    body = await usage_report(self.store, self.ledger, identity, scope.query_string)
            except STORE_FAULTS as exc:
                self.store_health.failed(exc)
                raise store_unavailable("Usage cannot be read right now (the store cannot be reached).") from None
        except GatewayError as err:
            write_error(proto, err, headers)
            return
        proto.response_bytes(200, [_JSON, *headers], body)

    async def health(self, scope: Scope, proto: HTTPProtocol, headers: list[tuple[str, str]], rid: str) -> None:
        """``GET /health``: the process is up."""
        proto.response_bytes(200, [_JSON, *headers], b'{"status":"ok"}')

    async def metrics(self, scope: Scope, proto: HTTPProtocol, headers: list[tuple[str, str]], rid: str) -> None:
        """``GET /metrics``: Prometheus metrics of the whole instance (all workers; at most ~1 s stale)."""
        body, content_type = await self.prometheus.render(scope.headers.get("accept"))
        proto.response_bytes(200, [("content-type", content_type), *headers], body)

    async def ready(self, scope: Scope, proto: HTTPProtocol, headers: list[tuple[str, str]], rid: str) -> None:
        """``GET /ready``: configuration loaded and the store reachable (503 otherwise)."""
        problem = await self.probe_store()
        if problem is not None:
            write_error(proto, GatewayError(ErrorKind.NOT_READY, f"store unreachable: {problem}"), headers)
            return
        body = {"status": "ready", "model_groups": len(self.config.model_groups), "store": self.store.kind}
        proto.response_bytes(200, [_JSON, *headers], orjson.dumps(body))

    async def probe_store(self) -> str | None:
        """Ask the store for ``SELECT 1`` within ``store_timeout_s`` (every second, and on ``/ready``): the
        fault, or ``None``; the worker's store health and ``ferrogate_store_up`` follow the answer."""
        timeout = self.settings.store_timeout_s
        try:
            async with asyncio.timeout(timeout):
                problem = await self.store.ping()
        except TimeoutError:
            problem = f"no answer within {timeout:g} s"
        if problem is None:
            self.store_health.ok()
        else:
            self.store_health.failed(StoreError(problem))
        self.prometheus.set(STORE_UP, (), 0.0 if problem else 1.0)
        return problem


def _no_route(scope: Scope, methods: dict[str, Any] | None) -> GatewayError:
    if methods is None:
        return GatewayError(ErrorKind.NOT_FOUND, f"no route for {scope.method} {scope.path}")
    allowed = ", ".join(sorted(methods))
    return GatewayError(
        ErrorKind.METHOD_NOT_ALLOWED,
        f"method {scope.method} is not allowed on {scope.path} (allowed: {allowed})",
        headers=[("allow", allowed)],
    )


def price_table(config: Config) -> PriceTable:
    """The packaged price table, extended or overridden by ``server.prices_file``, with the deployments' own
    prices on top (:func:`~ferrogate.metering.prices.standard_prices`).

    Raises:
        ConfigError: ``server.prices_file`` is named but missing or invalid.
    """
    overrides = {d.model or g.name: d.price for g in config.model_groups for d in g.deployments if d.price}
    return standard_prices(config.server.prices_file, overrides)


def encodings_used(config: Config) -> set[str]:
    """The tokenizer encodings of the configured deployments' models (o200k_base for the built-in mock).

    Example:
        >>> from ferrogate.config import default_config
        >>> encodings_used(default_config())
        {'o200k_base'}
    """
    models = {d.model or g.name for g in config.model_groups for d in g.deployments}
    return {_core.encoding_for_model(m) for m in models} or {"o200k_base"}


def create_app() -> Gateway:
    """Build the application from the environment (Granian's factory target).

    ``FERROGATE_CONFIG`` names the YAML file (the built-in default when unset);
    ``FERROGATE_DATABASE_URL`` the store (a SQLite file by default).
    """
    settings = Settings.from_env()
    path = os.environ.get("FERROGATE_CONFIG")
    config = load_config(path) if path else default_config()
    return Gateway(config, open_store(settings.database_url), settings, config_path=path)
