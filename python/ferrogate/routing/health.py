"""Deployment health shared by every worker and instance: the circuit breakers' table, Redis trips, admin views.

Each worker maps the instance's :class:`~ferrogate._core.Circuits` table (a file under ``/dev/shm``, see
:func:`table_path`), so a breaker tripped in one worker is open in every worker of the instance at once. The
router calls ``admit`` / ``done`` / ``retry_allowed`` on that table directly on the hot path (one Rust call
each, well under a microsecond). :class:`Health` adds what crosses instances and what the admin API shows:

- :meth:`Health.tripped`: after ``done`` returned ``True``, publish ``{key, open_for_s}`` on the Redis channel
  :data:`CHANNEL` (with ``FERROGATE_REDIS_URL``), in the background;
- :meth:`Health.listen`: every worker applies other instances' trips with ``Circuits.trip`` (a trip opens the
  breaker for the tripping instance's cool-down; an open breaker only gets longer), so one instance's trip
  stops the others sending within milliseconds;
- :meth:`Health.snapshot`, :meth:`Health.note_error`: the health of deployments for ``GET /admin/v1/llm/upstreams``;
- :meth:`Health.gauges`: ``ferrogate_circuit_state`` for the metrics exporter.

redis-py is imported only when a Redis URL is given.

Example:
    >>> from ferrogate._core import Circuits
    >>> health = Health(Circuits(None, 64), None)
    >>> slots = health.track([("openai", "gpt-4o")])
    >>> health.snapshot(["openai/gpt-4o"])[0]["state"], health.gauges()
    ('closed', [(('openai', 'gpt-4o'), 0)])
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ferrogate._core import CircuitError, CircuitPolicy, Circuits
from ferrogate.config.routing import CircuitSettings, RetrySettings

if TYPE_CHECKING:
    from ferrogate.config.model import Config

log = logging.getLogger("ferrogate.routing")

#: The Redis pub/sub channel; a message is JSON ``{"key", "open_for_s", "from"}`` (``from``: the instance).
CHANNEL = "ferrogate:circuits"
#: ``view()``'s state number -> the name the admin API shows.
STATES = ("closed", "open", "half_open")
#: The longest ``last_error`` kept per deployment (characters).
MAX_ERROR_CHARS = 500
#: The longest deployment key accepted from a Redis message.
MAX_KEY_CHARS = 512


def deployment_key(upstream: str, model: str) -> str:
    """The deployment key circuit state is kept under: ``f"{upstream}/{model}"``.

    Example:
        >>> deployment_key("openai", "gpt-4o")
        'openai/gpt-4o'
    """
    return f"{upstream}/{model}"


def deployments_of(config: Config) -> list[tuple[str, str]]:
    """Every configured deployment's ``(upstream, model)`` (what :meth:`Health.track` takes).

    Example:
        >>> from ferrogate.config.model import Config
        >>> deployments_of(Config.model_validate({"upstreams": [{"name": "u", "provider": "mock"}],
        ...     "model_groups": [{"name": "g", "deployments": [{"upstream": "u"}, {"upstream": "u", "model": "m"}]}]}))
        [('u', 'g'), ('u', 'm')]
    """
    return [(d.upstream, d.model or g.name) for g in config.model_groups for d in g.deployments]


def table_path(instance: str) -> Path:
    """Where an instance's circuit table lives: ``/dev/shm`` when present (memory only), else the temp dir.

    Args:
        instance: A name unique to the instance on this host (its port), as for the limiter's table.

    Returns:
        The file path (not created here; :func:`open_table` creates it).

    Example:
        >>> table_path("8080").name == f"ferrogate-circuits-{os.getuid()}-8080"
        True
    """
    shm = "/dev/shm"  # noqa: S108 (per-user name, mode 0600, owner checked on open)
    base = Path(shm) if os.path.isdir(shm) else Path(tempfile.gettempdir())
    return base / f"ferrogate-circuits-{os.getuid()}-{instance}"


def open_table(path: str | os.PathLike[str] | None, capacity: int = 4096) -> Circuits:
    """The circuit table at ``path`` (``None``: this process only), refusing a file owned by another user.

    Raises:
        ferrogate._core.CircuitError: The file cannot be created or mapped, has another layout or capacity, or
            belongs to another user.

    Example:
        >>> open_table(None, 64).capacity
        64
    """
    circuits = Circuits(path, capacity)
    if path is not None and (owner := os.stat(path).st_uid) != os.getuid():
        raise CircuitError(f"circuit table {os.fspath(path)!r} belongs to uid {owner}, not to this user")
    return circuits


def circuit_policy(circuit: CircuitSettings, retries: RetrySettings, latency_alpha: float) -> CircuitPolicy:
    """The Rust policy of a model group (built once per group and configuration).

    Example:
        >>> circuit_policy(CircuitSettings(), RetrySettings(), 0.2).window_s
        30.0
    """
    return CircuitPolicy(
        enabled=circuit.enabled,
        window_s=circuit.window_s,
        min_requests=circuit.min_requests,
        error_rate=circuit.error_rate,
        consecutive=circuit.consecutive,
        cooldown_s=circuit.cooldown_s,
        cooldown_max_s=circuit.cooldown_max_s,
        probes=circuit.probes,
        latency_alpha=latency_alpha,
        retry_budget_pct=retries.budget_pct,
        retry_budget_min=retries.budget_min,
        retry_budget_window_s=retries.budget_window_s,
    )


def attempt_outcome(ok: bool, status: int) -> str:
    """The ``outcome`` label of ``ferrogate_upstream_attempts_total`` for an attempt ``done`` was told about.

    Example:
        >>> [attempt_outcome(True, 200), attempt_outcome(False, 0), attempt_outcome(False, 1),
        ...  attempt_outcome(False, 429), attempt_outcome(False, 503)]
        ['ok', 'unreachable', 'timeout', 'rate_limited', 'error']
    """
    if ok:
        return "ok"
    return {0: "unreachable", 1: "timeout", 429: "rate_limited"}.get(status, "error")


class Health:
    """The instance's circuit table plus cross-instance trips and the admin and metrics views.

    Args:
        circuits: the instance's table (every worker maps the same file).
        redis_url: ``FERROGATE_REDIS_URL`` (``None``: trips stay within the instance).
        channel: the Redis channel (every instance sharing Redis must use the same).
        instance: who publishes (its own messages are skipped); default: the host name and the table's path,
            which every worker of an instance shares (a process-local table gets a random id).
    """

    def __init__(
        self,
        circuits: Circuits,
        redis_url: str | None,
        *,
        channel: str = CHANNEL,
        instance: str | None = None,
    ) -> None:
        self.circuits = circuits
        self.redis_url = redis_url
        self.channel = channel
        if instance is None:
            where = circuits.path or uuid.uuid4().hex
            instance = f"{socket.gethostname()}:{where}"
        self.instance = instance
        self._slots: dict[str, int] = {}
        self._labels: dict[str, tuple[str, str]] = {}  # tracked keys -> (upstream, model)
        self._errors: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._redis: Any = None

    def slot(self, key: str) -> int:
        """The table slot of deployment key ``key`` (looked up once, then cached).

        Example:
            >>> # slot = health.slot(deployment_key(dep.upstream, dep.model or group.name))
        """
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = self.circuits.slot(key)
        return slot

    def track(self, deployments: Iterable[tuple[str, str]]) -> dict[str, int]:
        """Make ``(upstream, model)`` pairs the configured deployments (what :meth:`gauges` reports; replaces the
        earlier set, e.g. on reload) and return their slots by deployment key.

        Example:
            >>> # slots = health.track((d.upstream, d.model or g.name) for g in groups for d in g.deployments)
        """
        labels = {deployment_key(u, m): (u, m) for u, m in deployments}
        slots = {key: self.slot(key) for key in labels}
        self._labels = labels
        return slots

    # ---- trips across instances ----------------------------------------------------------------------------
    def tripped(self, key: str) -> None:
        """After ``done`` returned ``True`` for ``key``: tell the other instances (a background publish; nothing
        without Redis or a running event loop).

        Example:
            >>> # if circuits.done(slot, policy, False, ...): health.tripped(key)
        """
        if self.redis_url is None:
            return
        open_for_s = self.circuits.view(self.slot(key))[4]
        if open_for_s <= 0:
            return
        try:
            task = asyncio.get_running_loop().create_task(self.publish(key, open_for_s))
        except RuntimeError:  # no loop (a synchronous caller): the other instances find out by themselves
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def publish(self, key: str, open_for_s: float) -> None:
        """Publish a trip of ``key`` for ``open_for_s`` seconds on :attr:`channel` (a failure is logged)."""
        message = json.dumps({"key": key, "open_for_s": open_for_s, "from": self.instance})
        try:
            await self._client().publish(self.channel, message)
        except Exception as exc:  # the others still trip on their own failures
            log.warning("could not publish a circuit trip of %s to Redis: %s", key, exc)

    def apply(self, data: bytes | str) -> bool:
        """Apply one channel message: open the breaker of its key unless this instance sent it; whether it did.

        Example:
            >>> from ferrogate._core import Circuits
            >>> health = Health(Circuits(None, 16), None, instance="a")
            >>> health.apply('{"key": "openai/gpt-4o", "open_for_s": 30, "from": "b"}')
            True
            >>> health.snapshot(["openai/gpt-4o"])[0]["state"]
            'open'
        """
        try:
            message = json.loads(data)
            key, open_for_s, sender = message["key"], float(message["open_for_s"]), message.get("from")
            if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
                raise ValueError(f"bad key {key!r}")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignored a malformed circuit trip message: %s", exc)
            return False
        if sender == self.instance:
            return False
        try:
            self.circuits.trip(self.slot(key), open_for_s)
        except CircuitError as exc:
            log.warning("could not apply a circuit trip of %s: %s", key, exc)
            return False
        return True

    async def listen(self) -> None:
        """Apply other instances' trips as they are published; reconnects after Redis outages (runs until
        cancelled; returns at once without Redis)."""
        if self.redis_url is None:
            return
        lost = False
        while True:
            try:
                pubsub = self._client().pubsub()
                await pubsub.subscribe(self.channel)
                if lost:
                    log.warning("circuit trip listener: Redis answers again")
                lost = False
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self.apply(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not lost:  # once per loss; meanwhile each instance trips on its own failures
                    log.warning("circuit trip listener lost Redis (%s); retrying every 1 s", exc)
                    lost = True
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        """Wait for pending publishes, then close the Redis connection."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    def _client(self) -> Any:
        if self._redis is None:
            assert self.redis_url is not None
            import redis.asyncio as aioredis  # only with Redis configured

            self._redis = aioredis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=2)
        return self._redis

    # ---- views ---------------------------------------------------------------------------------------------
    def note_error(self, key: str, message: str) -> None:
        """Remember the last error of deployment ``key`` in this worker (shown as ``last_error``; truncated).

        Example:
            >>> # health.note_error(key, f"{exc.code}: {exc}")
        """
        if key in self._errors or len(self._errors) < self.circuits.capacity:
            self._errors[key] = message[:MAX_ERROR_CHARS]

    def snapshot(self, keys: Iterable[str]) -> list[dict[str, Any]]:
        """The health of each deployment key, for the admin API (one dict per key, in order).

        Fields: ``key``, ``state`` (closed, open, half_open), ``error_rate`` and ``requests`` (the sliding
        window), ``consecutive_failures``, ``open_for_s`` (the cool-down left), ``trips_in_a_row``,
        ``in_flight`` (every worker's), ``ttft_ewma_ms`` and ``latency_ewma_ms`` (``None`` before a sample),
        ``last_status`` (HTTP status, 0 connection fault, 1 timeout; ``None``), ``last_failure_age_s``
        (``None``), ``last_error`` (this worker's last message, ``None``).
        """
        out = []
        for key in keys:
            (state, error_rate, requests, consecutive, open_for_s, trips, in_flight, ttft, latency, status, age) = (
                self.circuits.view(self.slot(key))
            )
            out.append(
                {
                    "key": key,
                    "state": STATES[state],
                    "error_rate": round(error_rate, 4),
                    "requests": requests,
                    "consecutive_failures": consecutive,
                    "open_for_s": round(open_for_s, 3),
                    "trips_in_a_row": trips,
                    "in_flight": in_flight,
                    "ttft_ewma_ms": None if ttft < 0 else round(ttft * 1000, 1),
                    "latency_ewma_ms": None if latency < 0 else round(latency * 1000, 1),
                    "last_status": None if status < 0 else status,
                    "last_failure_age_s": None if age < 0 else round(age, 3),
                    "last_error": self._errors.get(key),
                }
            )
        return out

    def gauges(self) -> list[tuple[tuple[str, str], int]]:
        """``ferrogate_circuit_state`` of each tracked deployment: ``((upstream, model), state)``, state 0 closed,
        1 open, 2 half-open (for the metrics exporter's flush).

        Example:
            >>> # for labels, value in health.gauges(): metrics.set(CIRCUIT_STATE, labels, value)
        """
        view = self.circuits.view
        return [(labels, view(self.slot(key))[0]) for key, labels in self._labels.items()]
