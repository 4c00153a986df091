"""Keeping every worker's guardrail policies equal to the store's, within a second of a change.

The store holds the policy documents (``store.guardrails``) and a version that rises with every change. A
worker loads them all at start (:meth:`PolicySync.load`), and then again whenever the version differs from
the one it applied:

- at once in the worker that made the change (:meth:`PolicySync.changed`, called by the admin API), which
  also publishes the new version on the Redis channel :data:`CHANNEL` when ``FERROGATE_REDIS_URL`` is set;
- within milliseconds in every worker of every instance subscribed to that channel (:meth:`PolicySync.listen`);
- within ``poll_s`` (0.5 s) everywhere, Redis or not: each worker reads the version (one indexed row) that
  often (:meth:`PolicySync.poll`), so the workers of an instance without Redis converge too, and a message
  lost while Redis was away is made up for.

A store fault keeps the policies in force (never an empty policy because the store blinked); so does a set
of documents the registry refuses (logged once per version, the previous one stays applied).

The same feed serves any store section with a version and a whole read (``source``: an object with async
``version()`` and ``all()``, default ``store.guardrails``): the MCP gateway follows ``store.mcp`` this way, on its
own channel (``PolicySync(target, store, redis_url, source=store.mcp, channel="ferrogate:mcp:changed",
name="MCP settings")``), its target's ``apply`` receiving ``store.mcp.all()``.

Example:
    >>> class Registry:
    ...     def apply(self, docs): print(sorted(docs))
    ...     def validate(self, scope, doc): pass
    >>> sync = PolicySync(Registry(), store=None, redis_url=None)  # type: ignore[arg-type]
    >>> sync.version is None
    True
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ferrogate.store.health import STORE_FAULTS

if TYPE_CHECKING:
    from ferrogate.store import Store

log = logging.getLogger("ferrogate.guardrails")

#: The Redis pub/sub channel; a message is the store's new policy version (decimal text).
CHANNEL = "ferrogate:guardrails:changed"
#: How often every worker reads the store's policy version (seconds).
POLL_S = 0.5


class SyncSource(Protocol):
    """Where the documents are read: a store section with a change counter (``store.guardrails``,
    ``store.mcp``)."""

    async def version(self) -> int:
        """The number of changes made so far."""
        ...

    async def all(self) -> Mapping[str, Any]:
        """Every document (read after :meth:`version`)."""
        ...


class SyncTarget(Protocol):
    """What the documents are applied to."""

    def apply(self, docs: Any) -> object:
        """Replace everything by ``docs`` (the mapping the source's ``all()`` returned); raises when it refuses
        them. It may return an awaitable (an ``async def apply``): the feed awaits it before it counts the version
        as applied."""
        ...


class PolicyTarget(SyncTarget, Protocol):
    """What the guardrail policies are applied to: the worker's guardrails registry."""

    def apply(self, docs: Mapping[str, dict[str, Any]]) -> None:
        """Replace every override by ``docs`` (scope -> document); raises when it refuses them."""
        ...

    def validate(self, scope: str, doc: dict[str, Any]) -> object:
        """Raise, naming the rule or field, when ``doc`` cannot be the document of ``scope``."""
        ...


class PolicySync:
    """Applies the store's guardrail documents (or another section's, ``source``) to ``target`` and follows their
    changes.

    Args:
        target: what the documents are applied to (``Guardrails.apply``).
        store: the store that holds them.
        redis_url: ``FERROGATE_REDIS_URL`` (``None``: polling only).
        poll_s: how often the version is read.
        timeout_s: the longest one store read may take.
        channel: the Redis channel (every instance sharing the store must use the same).
        source: the section read (``None``: ``store.guardrails``, looked up at each read).
        name: what the documents are, in log lines.
    """

    def __init__(
        self,
        target: SyncTarget,
        store: Store,
        redis_url: str | None,
        *,
        poll_s: float = POLL_S,
        timeout_s: float = 2.0,
        channel: str = CHANNEL,
        source: SyncSource | None = None,
        name: str = "guardrail policies",
    ) -> None:
        self.target = target
        self.store = store
        self.source = source
        self.name = name
        self.redis_url = redis_url
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.channel = channel
        #: The store version whose documents are applied (``None``: none loaded yet).
        self.version: int | None = None
        self._refused: int | None = None  # a version whose documents the registry refused (not retried)
        self._lock = asyncio.Lock()
        self._store_down = False
        self._redis: Any = None

    def _source(self) -> SyncSource:
        return self.source if self.source is not None else self.store.guardrails

    async def load(self, *, seen: int | None = None) -> bool:
        """Read the version, then every document, and apply them unless that version is applied already;
        whether the worker now holds the store's policies (``False``: a store fault or a refusal, logged;
        the policies in force stay).

        ``seen``: a version just read (by the poll or a Redis message): skipped when it is the one applied.

        Example:
            >>> # await sync.load()  # at worker start
        """
        if seen is not None and seen == self.version:
            return True
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout_s):
                    source = self._source()
                    version = await source.version()
                    if version == self.version:
                        return True
                    if version == self._refused:
                        return False
                    docs = await source.all()  # after the version: a later change is seen again
            except STORE_FAULTS as exc:
                self._fault(exc)
                return False
            self._recovered()
            try:
                done = self.target.apply(docs)
                if inspect.isawaitable(done):
                    await done
            except Exception as exc:  # a document the registry refuses: the previous policies stay
                self._refused = version
                log.error("%s of version %d not applied (the previous ones stay): %s", self.name, version, exc)
                return False
            self.version = version
            return True

    def validate(self, scope: str, doc: dict[str, Any]) -> None:
        """Check ``doc`` as the document of ``scope`` (the target's ``validate``; raises naming the rule).

        Raises:
            TypeError: the target does not validate documents.
        """
        check = getattr(self.target, "validate", None)
        if check is None:
            raise TypeError(f"{type(self.target).__name__} does not validate documents")
        check(scope, doc)

    async def changed(self) -> None:
        """After this worker changed a document: apply the store's documents now, then tell the others.

        Example:
            >>> # await store.guardrails.put(scope, doc, actor); await sync.changed()
        """
        await self.load()
        if self.redis_url is not None and self.version is not None:
            try:
                await self._client().publish(self.channel, str(self.version))
            except Exception as exc:  # the others catch up by polling within poll_s
                log.warning("could not publish a change of the %s to Redis: %s", self.name, exc)

    async def poll(self) -> None:
        """Read the store's version every ``poll_s`` seconds and load the documents when it moved (runs until
        cancelled)."""
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                async with asyncio.timeout(self.timeout_s):
                    version = await self._source().version()
            except STORE_FAULTS as exc:
                self._fault(exc)
                continue
            self._recovered()
            if version != self.version and version != self._refused:
                await self.load(seen=version)

    async def listen(self) -> None:
        """Load the documents when another worker publishes a change; reconnects after Redis outages (runs until
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
                if not lost:  # once per loss; meanwhile the poll keeps the policies current
                    log.warning("the %s listener lost Redis (%s); retrying every 1 s", self.name, exc)
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
            log.warning("%s: the store cannot be read (%s); the current ones stay", self.name, exc)
            self._store_down = True

    def _recovered(self) -> None:
        if self._store_down:
            log.warning("%s: the store answers again", self.name)
            self._store_down = False
