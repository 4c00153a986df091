"""Hot reload: the worker's running configuration follows the configuration file and the admin API's routing
overrides, without a restart and without dropping requests in flight.

:class:`ConfigReloader` owns the running :class:`~ferrogate.config.model.Config` (:attr:`~ConfigReloader.config`):
the file's, with the stored overrides merged in (:func:`~ferrogate.routing.merge.merge`). Whenever either changes
it builds the new configuration, validates it whole and hands it to the router (``Router.reload``, which swaps its
table in one assignment; requests in flight finish on the providers they started with). What changes it:

- the file (and ``routing.rules_file``), watched with ``watchfiles`` (:meth:`~ConfigReloader.watch`; off with
  ``routing.watch: false``, and without a file). An edit that does not load (YAML, schema, a reference, a routing
  rule) is logged with its YAML path and the running configuration stays; an edit to a section read at start
  only (``server``, ``guardrails``, ...) is logged as needing a restart (its upstreams, model groups and routing
  still apply at once).
- an admin change: at once in the worker that made it (:meth:`~ConfigReloader.apply_admin_change`), which also
  publishes the store's new version on the Redis channel :data:`CHANNEL`; within milliseconds in every worker of
  every instance subscribed to it (:meth:`~ConfigReloader.listen`); within ``poll_s`` (0.5 s) everywhere, Redis or
  not, by reading the store's version (:meth:`~ConfigReloader.poll`), as ``guardrails.sync`` does.

A store fault keeps the running configuration; so does a set of overrides that does not merge (logged once per
store version). The admin API validates a change against the newest stored overrides before storing it
(:meth:`~ConfigReloader.propose`), and stores it only on top of the version it validated against.

Example:
    >>> class Router:
    ...     def reload(self, config): print(len(config.model_groups), "groups")
    >>> reloader = ConfigReloader(None, store=None, router=Router(), redis_url=None)  # type: ignore[arg-type]
    >>> [g.name for g in reloader.config.model_groups][:1], reloader.version
    (['mock'], None)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ferrogate.config import Config, ConfigError, default_config, load_config
from ferrogate.config.routing import RoutingSettings
from ferrogate.routing.merge import live_part, merge, restart_sections
from ferrogate.store.health import STORE_FAULTS
from ferrogate.store.routing import Kind, RoutingOverrides

if TYPE_CHECKING:
    from ferrogate.store import Store

log = logging.getLogger("ferrogate.routing")

#: The Redis pub/sub channel; a message is the store's new routing version (decimal text).
CHANNEL = "ferrogate:routing"
#: How often every worker reads the store's routing version (seconds).
POLL_S = 0.5


class Reloadable(Protocol):
    """What the running configuration is handed to: the worker's router."""

    def reload(self, config: Config) -> None:
        """Route by ``config`` from now on; raises (``ConfigError``) before changing anything when it cannot."""
        ...


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    """This worker's view: the file, the store version applied, the last reload and the last refusal."""

    file: str | None
    watching: bool
    version: int | None
    reloaded_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    restart_needed: tuple[str, ...]


class ConfigReloader:
    """Keeps ``router`` on the file's configuration with the stored routing overrides merged in.

    Args:
        path: the configuration file (``None``: the built-in default, never watched).
        store: the store holding the overrides (``store.routing``).
        router: what each new configuration is handed to (``Router.reload``).
        redis_url: ``FERROGATE_REDIS_URL`` (``None``: polling only).
        config: the file's configuration, already loaded (default: loaded from ``path`` now).
        check_rules: compiles a configuration's routing rules, raising ``ConfigError`` naming the line
            (``RoutingRules.load``): run on every candidate before it is stored or applied (``None``: the router's
            ``reload`` alone refuses bad rules).
        poll_s: how often the store version is read.
        timeout_s: the longest one store read may take.
        channel: the Redis channel (every instance sharing the store must use the same).
        env: where ``${ENV_VAR}`` references are resolved (default: the process environment).
    """

    def __init__(
        self,
        path: str | Path | None,
        store: Store,
        router: Reloadable,
        redis_url: str | None,
        *,
        config: Config | None = None,
        check_rules: Callable[[RoutingSettings], object] | None = None,
        poll_s: float = POLL_S,
        timeout_s: float = 2.0,
        channel: str = CHANNEL,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.store = store
        self.router = router
        self.redis_url = redis_url
        self.check_rules = check_rules
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.channel = channel
        self.env = env
        if config is None:
            config = load_config(self.path, env) if self.path is not None else default_config(env)
        #: The configuration the worker started with (its sections read at start only stay in force).
        self.started = config
        #: The file's configuration as last loaded (those sections as started).
        self.file_config = config
        #: The stored overrides last read (merged into :attr:`config` unless refused).
        self.overrides = RoutingOverrides()
        #: The running configuration: the file's with the overrides merged in.
        self.config = config
        #: The store version whose overrides are applied (``None``: none read yet).
        self.version: int | None = None
        #: Called with each new running configuration, after the router (e.g. to rebuild a price table).
        self.on_reload: list[Callable[[Config], object]] = []
        self.watching = False
        self.reloaded_at: datetime | None = None
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self.restart_needed: tuple[str, ...] = ()
        self._refused: int | None = None  # a store version whose overrides did not merge (not retried)
        self._lock = asyncio.Lock()
        self._store_down = False
        self._redis: Any = None

    # ---- building and applying ----

    def effective(self, file: Config | None = None, overrides: RoutingOverrides | None = None) -> Config:
        """``file`` (default: the file's) with ``overrides`` (default: those last read) merged in, validated whole
        and its routing rules compiled.

        Raises:
            ConfigError: every problem, with its YAML path (a rule's with its line).
        """
        file = self.file_config if file is None else file
        overrides = self.overrides if overrides is None else overrides
        source = str(self.path) if self.path is not None else "the built-in configuration"
        if overrides.upstreams or overrides.model_groups or overrides.rules is not None:
            source += f" with the admin API's overrides (store version {overrides.version})"
        config = merge(file, overrides, env=self.env, source=source)
        if self.check_rules is not None:
            self.check_rules(config.routing)
        return config

    def _apply(self, file: Config, overrides: RoutingOverrides, what: str) -> bool:
        """Make ``file`` + ``overrides`` the running configuration; ``False`` (logged, the running one stays) when
        it does not build or the router refuses it."""
        try:
            new = self.effective(file, overrides)
            if new != self.config:
                self.router.reload(new)
        except Exception as exc:  # ConfigError, or a router that refuses: the running configuration stays
            self._failed(f"{what} not applied (the running configuration stays): {exc}")
            return False
        changed, self.config, self.file_config, self.overrides = new != self.config, new, file, overrides
        self.reloaded_at = datetime.now(UTC)
        self.last_error = self.last_error_at = None
        if changed:
            for hook in self.on_reload:
                try:
                    hook(new)
                except Exception:
                    log.exception("a reload hook failed")
        return True

    def _failed(self, message: str) -> None:
        log.error("%s", message)
        self.last_error, self.last_error_at = message, datetime.now(UTC)

    def reload_file(self) -> bool:
        """Read the file again and apply it with the overrides last read; whether it now runs (``False``: the edit
        is refused, logged with its YAML path, and the running configuration stays). Sections read at start only
        that differ from the running ones are logged as needing a restart (once per distinct set)."""
        if self.path is None:
            return False
        try:
            new = load_config(self.path, self.env)
        except ConfigError as exc:
            self._failed(f"configuration file {self.path} not reloaded (the running configuration stays): {exc}")
            return False
        restart = tuple(restart_sections(self.started, new))
        if restart and restart != self.restart_needed:
            log.warning(
                "configuration file %s: %s changed; that needs a restart (upstreams, model_groups and routing are"
                " reloaded now)",
                self.path,
                ", ".join(restart),
            )
        self.restart_needed = restart
        if not self._apply(live_part(self.started, new), self.overrides, f"configuration file {self.path}"):
            return False
        self._refused = None  # stored overrides refused with the previous file may merge with this one: retry
        return True

    async def load(self, *, seen: int | None = None) -> bool:
        """Read the store's version, then its overrides, and apply them unless that version is applied already;
        whether the worker now runs the store's overrides (``False``: a store fault or a refusal, logged; the
        running configuration stays).

        ``seen``: a version just read (by the poll or a Redis message): skipped when it is the one applied.

        Example:
            >>> # loop.run_until_complete(reloader.load())  # at worker start, before the first request
        """
        if seen is not None and seen == self.version:
            return True
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout_s):
                    version = await self.store.routing.version()
                    if version == self.version:
                        return True
                    if version == self._refused:
                        return False
                    overrides = await self.store.routing.overrides()
            except STORE_FAULTS as exc:
                self._fault(exc)
                return False
            self._recovered()
            if not self._apply(self.file_config, overrides, f"routing overrides of store version {overrides.version}"):
                self._refused = overrides.version
                return False
            self.version = overrides.version
            return True

    async def propose(
        self, kind: Kind, name: str, doc: Mapping[str, Any] | None, *, drop: bool = False
    ) -> tuple[Config, RoutingOverrides]:
        """The configuration one admin change would make: the newest stored overrides with the change (see
        :meth:`RoutingOverrides.with_change`), merged into the file's and validated. Store the change with
        ``expect_version=overrides.version`` so it lands only on top of what was validated.

        Raises:
            ConfigError: the change does not make a valid configuration (nothing is stored).
            StoreError: the store cannot be read.
        """
        async with asyncio.timeout(self.timeout_s):
            stored = await self.store.routing.overrides()
        candidate = stored.with_change(kind, name, doc, drop=drop)
        return self.effective(self.file_config, candidate), stored

    async def apply_admin_change(self) -> None:
        """After this worker stored a change: apply the store's overrides now, then tell the others.

        Example:
            >>> # await store.routing.put("upstream", "eu", doc, actor); await reloader.apply_admin_change()
        """
        await self.load()
        if self.redis_url is not None and self.version is not None:
            try:
                await self._client().publish(self.channel, str(self.version))
            except Exception as exc:  # the others catch up by polling within poll_s
                log.warning("could not publish a routing change to Redis: %s", exc)

    def status(self) -> ReloadStatus:
        """This worker's reload state, for ``GET /admin/v1/llm/status``."""
        return ReloadStatus(
            file=str(self.path) if self.path is not None else None,
            watching=self.watching,
            version=self.version,
            reloaded_at=self.reloaded_at,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            restart_needed=self.restart_needed,
        )

    # ---- background tasks ----

    def _watched(self) -> set[Path]:
        """The files a change of which reloads: the configuration file and the routing rules file."""
        if self.path is None:
            return set()
        files = {self.path.absolute()}
        if self.file_config.routing.rules_file:
            files.add(Path(self.file_config.routing.rules_file).absolute())
        return files

    async def watch(self, *, debounce_ms: int = 200, step_ms: int = 50) -> None:
        """Reload whenever the file (or the rules file) changes (runs until cancelled; returns at once without a
        file or with ``routing.watch: false``). Their directories are watched, not the files, so an editor's save
        by rename is seen too."""
        if self.path is None or not self.file_config.routing.watch:
            return
        from watchfiles import awatch  # loaded, and its watcher's thread started, only with a file to watch

        while self.path is not None and self.file_config.routing.watch:
            files = self._watched()
            names = {str(f) for f in files}

            def ours(_change: object, path: str, names: set[str] = names) -> bool:
                return path in names

            dirs = sorted({str(f.parent) for f in files})
            self.watching = True
            try:
                async for _ in awatch(
                    *dirs,
                    watch_filter=ours,
                    debounce=debounce_ms,
                    step=step_ms,
                    recursive=False,
                ):
                    try:
                        self.reload_file()
                    except Exception:  # never let one bad reload stop the watcher
                        log.exception("configuration reload failed")
                    if self._watched() != files or not self.file_config.routing.watch:
                        break  # the rules file moved, or watching was turned off: watch again (or stop)
                else:
                    return  # the watcher ended (its stop event)
            except (FileNotFoundError, PermissionError) as exc:
                self._failed(f"cannot watch {', '.join(dirs)}: {exc}; the configuration is not reloaded on edits")
                return
            finally:
                self.watching = False

    async def poll(self) -> None:
        """Read the store's version every ``poll_s`` seconds and load the overrides when it moved (runs until
        cancelled)."""
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                async with asyncio.timeout(self.timeout_s):
                    version = await self.store.routing.version()
            except STORE_FAULTS as exc:
                self._fault(exc)
                continue
            self._recovered()
            if version != self.version and version != self._refused:
                await self.load(seen=version)

    async def listen(self) -> None:
        """Load the overrides when another worker publishes a change; reconnects after Redis outages (runs until
        cancelled; returns at once without Redis)."""
        if self.redis_url is None:
            return
        lost = False
        while True:
            try:
                pubsub = self._client().pubsub()
                await pubsub.subscribe(self.channel)
                lost = False
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        data = message["data"]
                        text = data.decode() if isinstance(data, bytes) else str(data)
                        await self.load(seen=int(text) if text.isdigit() else None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not lost:  # once per loss; meanwhile the poll keeps the configuration current
                    log.warning("routing change listener lost Redis (%s); retrying every 1 s", exc)
                    lost = True
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        """Close the Redis connection."""
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    def _client(self) -> Any:
        if self._redis is None:
            assert self.redis_url is not None
            import redis.asyncio as aioredis  # only with Redis configured

            self._redis = aioredis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=2)
        return self._redis

    def _fault(self, exc: BaseException) -> None:
        if not self._store_down:  # once per outage, not twice a second
            log.warning("routing overrides: the store cannot be read (%s); the running configuration stays", exc)
            self._store_down = True

    def _recovered(self) -> None:
        if self._store_down:
            log.warning("routing overrides: the store answers again")
            self._store_down = False
