"""Webhook notifications for budget events: a budget crossed its soft-limit percentage, or got exhausted.

``notify()`` runs on the hot path: it gives the event its id, appends it to an in-memory queue and returns (no
await, no I/O). A background task (:meth:`WebhookNotifier.run`) POSTs each event as JSON to the receiver:

- Body: the event's fields plus ``"id"`` (``evt_`` and 16 hex digits, given once in ``notify()``, so every retry
  carries the same id and the receiver can drop duplicates) and ``"sent_at"`` (ISO-8601 UTC, per attempt).
- Headers: ``content-type: application/json``, ``user-agent: ferrogate``, ``x-ferrogate-event-id``, and with a
  secret ``x-ferrogate-signature: sha256=<hex HMAC-SHA256 of the raw body under the secret>``.
- Delivery is at least once: any 2xx is success. Connection errors, timeouts, 408, 429 and 5xx are retried with
  exponential backoff (``backoff_s``, doubling, capped at ``max_backoff_s``; a numeric ``Retry-After`` on a 429 or
  503 is used instead, capped the same way), ``attempts`` tries in all. Any other answer (other 4xx, 3xx: redirects
  are not followed) gives up at once. Giving up logs an error naming the event id and counts ``stats.failed``.

Concurrency: at most :data:`MAX_IN_FLIGHT` (4) requests are in flight at once, and a slot is held only for the
duration of one request (at most ``timeout_s``). An event waiting for its next try sits in a retry schedule, not in
a slot, so the events behind it go on being delivered: a receiver that refuses one event, or that is down, costs the
others at most one request timeout per slot, never an earlier event's whole backoff sequence.

Nothing here raises into the caller or out of :meth:`~WebhookNotifier.run` because of a bad receiver. The secret is
never logged, and neither is the URL's path or query (webhook URLs often embed a token): logs name only
``scheme://host:port``. Events are held in memory only: the queue holds at most ``max_queue`` undelivered events
(queued, waiting for a retry or in flight); beyond it, and once :meth:`~WebhookNotifier.close` has begun, events
are dropped with an error log. Use from the event loop's thread.

Example:
    >>> # notifier = WebhookNotifier("https://hooks.example.com/budgets", secret=settings.webhook_secret)
    >>> # task = asyncio.create_task(notifier.run())
    >>> # notifier.notify({"type": "budget.soft_limit", "budget": "team:ml", "percent": 80, "spent_usd": 80.2})
    >>> # await notifier.close()   # at shutdown: deliver what is queued within the grace period
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import hmac
import itertools
import logging
import math
import secrets
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import DetailedPyreqwestError, TransportError
from pyreqwest.response import Response

log = logging.getLogger("ferrogate.budgets")

MAX_IN_FLIGHT = 4
"""Requests to the receiver in flight at once (a slot is held for one request, never during a backoff)."""

_RETRY_STATUSES = frozenset({408, 429})  # and every 5xx
_RETRY_AFTER_STATUSES = frozenset({429, 503})
_LOGGED_IDS = 20  # undelivered ids named in the shutdown log line at most


@dataclass(slots=True)
class NotifierStats:
    """Counters for metrics. Once :meth:`WebhookNotifier.close` has returned, ``sent + failed + dropped`` equals
    the events notified.

    Attributes:
        sent: events the receiver accepted (a 2xx).
        failed: events given up on: a non-retryable answer, or ``attempts`` tries without success.
        retried: tries scheduled after a failed one (an event tried three times counts two).
        dropped: events never delivered nor given up on: refused above ``max_queue`` or after ``close()`` began,
            or still undelivered when ``close()`` ran out of grace.
    """

    sent: int = 0
    failed: int = 0
    retried: int = 0
    dropped: int = 0


@dataclass(slots=True)
class _Event:
    id: str
    data: dict[str, Any]
    tries: int = 0


class WebhookNotifier:
    """POSTs budget events to one webhook receiver in the background. One per worker process.

    Args:
        url: the receiver; ``None`` turns notifications off (:meth:`notify` is a no-op).
        secret: the HMAC-SHA256 key of the ``x-ferrogate-signature`` header; ``None`` or empty sends no signature.
        attempts: tries per event in all, the first included (at least 1).
        backoff_s: the wait before the second try; it doubles with each further try.
        max_backoff_s: the longest wait between two tries (also caps ``Retry-After``).
        timeout_s: the longest one request may take, connecting included.
        max_queue: undelivered events held at most (queued, waiting for a retry, or in flight).
    """

    def __init__(
        self,
        url: str | None,
        *,
        secret: str | None = None,
        attempts: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        timeout_s: float = 5.0,
        max_queue: int = 1000,
    ) -> None:
        self._url = url
        self._where = _origin(url) if url is not None else "-"
        self._secret = secret.encode() if secret else None
        self._attempts = max(1, attempts)
        self._backoff_s = max(0.0, backoff_s)
        self._max_backoff_s = max(0.0, max_backoff_s)
        self._timeout_s = timeout_s
        self._max_queue = max(1, max_queue)
        self._client: Client | None = None
        self._queue: deque[_Event] = deque()  # new events (and interrupted tries), oldest first
        self._later: list[tuple[float, int, _Event]] = []  # heap of (due, seq, event): events waiting for a retry
        self._seq = itertools.count()
        self._inflight: dict[asyncio.Task[None], _Event] = {}
        self._wake = asyncio.Event()
        self._done = asyncio.Event()
        self._running = False
        self._stopping = False
        self._closed = False
        self._deadline = math.inf
        self.stats = NotifierStats()

    # ---- hot path ------------------------------------------------------------------------------------------
    def notify(self, event: dict[str, Any]) -> None:
        """Queue one event for delivery; never blocks or awaits. A no-op when the notifier has no URL.

        The event is copied; its ``"id"`` and ``"sent_at"`` fields, if any, are replaced on the wire. Above
        ``max_queue`` undelivered events, or once :meth:`close` has begun, the event is dropped (an error log,
        ``stats.dropped``).

        Example:
            >>> # notifier.notify({"type": "budget.exhausted", "budget": "key:k_123", "limit_usd": 50.0})
        """
        if self._url is None:
            return
        ev = _Event("evt_" + secrets.token_hex(8), dict(event))
        if self._stopping:
            self.stats.dropped += 1
            log.error("budget webhook %s: event %s dropped: the notifier is closing", self._where, ev.id)
            return
        if self.pending >= self._max_queue:
            self.stats.dropped += 1
            log.error(
                "budget webhook %s: event %s dropped: %d events already wait for delivery",
                self._where,
                ev.id,
                self.pending,
            )
            return
        self._queue.append(ev)
        self._wake.set()

    @property
    def pending(self) -> int:
        """Events not yet delivered nor given up on: queued, waiting for a retry, or in flight."""
        return len(self._queue) + len(self._later) + len(self._inflight)

    # ---- background loop -----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Deliver events until :meth:`close`. Returns at once when the notifier has no URL or is closing.

        Raises:
            RuntimeError: already running.

        Example:
            >>> # task = asyncio.create_task(notifier.run())
        """
        if self._url is None or self._stopping:
            return
        if self._running:
            raise RuntimeError("WebhookNotifier.run() is already running")
        await self._serve()

    async def close(self, grace_s: float = 5.0) -> None:
        """Stop :meth:`run`, delivering what is queued within ``grace_s``; log (and count as dropped) the rest.

        Also delivers what is queued when :meth:`run` was never started. Tries still due after the grace period
        are not waited for; a request still in flight at its end is abandoned and its event counted as dropped
        (it may reach the receiver all the same: pyreqwest does not abort a cancelled request, which ends at
        ``timeout_s``; the receiver dedups by id). Closes the HTTP client.

        Example:
            >>> # await notifier.close(grace_s=2.0)
        """
        if self._closed:
            return
        if not self._stopping:
            self._stopping = True
            self._deadline = asyncio.get_running_loop().time() + max(0.0, grace_s)
        self._wake.set()
        if self._running:
            await self._done.wait()
        elif self.pending and self._url is not None:
            await self._serve()
        if self._closed:  # a concurrent close() finished first
            return
        self._closed = True
        left = [ev.id for ev in self._queue] + [ev.id for _, _, ev in sorted(self._later)]
        if left:
            self.stats.dropped += len(left)
            more = f" and {len(left) - _LOGGED_IDS} more" if len(left) > _LOGGED_IDS else ""
            log.error(
                "budget webhook %s: %d events undelivered at shutdown: %s%s",
                self._where,
                len(left),
                ", ".join(left[:_LOGGED_IDS]),
                more,
            )
        self._queue.clear()
        self._later.clear()
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # ---- internals -----------------------------------------------------------------------------------------
    async def _serve(self) -> None:
        """Hand due events to free slots until stopped and drained (or past the grace deadline)."""
        self._running = True
        self._done.clear()
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._wake.clear()
                now = loop.time()
                if self._stopping and now >= self._deadline:
                    break
                self._dispatch(now)
                if self._stopping and self._drained():
                    break
                wake_at = self._deadline if self._stopping else math.inf
                if self._later and len(self._inflight) < MAX_IN_FLIGHT:
                    wake_at = min(wake_at, self._later[0][0])
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(None if wake_at == math.inf else wake_at):
                        await self._wake.wait()
        finally:
            try:
                tasks = list(self._inflight)
                for task in tasks:
                    task.cancel()
                if tasks:
                    await asyncio.gather(*tasks, return_exceptions=True)
                for ev in self._inflight.values():  # interrupted tries: queued again
                    self._queue.appendleft(ev)
                self._inflight.clear()
            finally:
                self._running = False
                self._done.set()

    def _drained(self) -> bool:
        """Nothing in flight, nothing queued, and no retry due before the grace deadline."""
        return not self._inflight and not self._queue and (not self._later or self._later[0][0] > self._deadline)

    def _dispatch(self, now: float) -> None:
        while len(self._inflight) < MAX_IN_FLIGHT:
            if self._later and self._later[0][0] <= now:
                ev = heapq.heappop(self._later)[2]
            elif self._queue:
                ev = self._queue.popleft()
            else:
                return
            task = asyncio.create_task(self._attempt(ev), name=f"budget-webhook-{ev.id}")
            self._inflight[task] = ev
            task.add_done_callback(self._attempt_done)

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        ev = self._inflight.pop(task, None)
        self._wake.set()
        if ev is None:
            return
        if task.cancelled():  # interrupted (run() cancelled): tried again later, or reported by close()
            self._queue.appendleft(ev)
        elif (exc := task.exception()) is not None:  # not expected: _attempt handles every Exception
            self.stats.failed += 1
            log.error("budget webhook %s: event %s lost: %s", self._where, ev.id, self._describe(exc))

    async def _attempt(self, ev: _Event) -> None:
        """One try of one event; settles it (sent, failed) or schedules its next try."""
        ev.tries += 1
        try:
            status, retry_after = await self._post(ev)
        except TransportError as exc:  # connection refused or reset, timeouts
            self._retry_or_fail(ev, self._describe(exc), None)
            return
        except Exception as exc:  # an unusable URL, an event orjson cannot encode, ...: trying again will not help
            self._give_up(ev, self._describe(exc))
            return
        if 200 <= status < 300:
            self.stats.sent += 1
        elif status in _RETRY_STATUSES or status >= 500:
            self._retry_or_fail(ev, f"HTTP {status}", retry_after)
        else:
            self._give_up(ev, f"the receiver answered HTTP {status}")

    async def _post(self, ev: _Event) -> tuple[int, float | None]:
        """POST the event; returns the status and, on a 429 or 503, a numeric ``Retry-After`` (capped)."""
        url = self._url
        if url is None:  # not reached: notify() queues nothing without a URL
            raise RuntimeError("the notifier has no URL")
        body = orjson.dumps({**ev.data, "id": ev.id, "sent_at": _utc_now()})
        builder = (
            self._get_client()
            .post(url)
            .header("content-type", "application/json")
            .header("x-ferrogate-event-id", ev.id)
        )
        if self._secret is not None:
            digest = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
            builder = builder.header("x-ferrogate-signature", f"sha256={digest}", is_sensitive=True)
        # Streamed, and the answer's body is never read: only the status and headers matter.
        request = builder.body_bytes(body).streamed_read_buffer_limit(0).build_streamed()
        async with request as resp:
            status = resp.status
            retry_after = self._retry_after(resp) if status in _RETRY_AFTER_STATUSES else None
        return status, retry_after

    def _retry_after(self, resp: Response) -> float | None:
        value = resp.get_header("retry-after")
        if value is None:
            return None
        try:
            seconds = float(value)
        except ValueError:  # an HTTP date: the usual backoff applies
            return None
        if not math.isfinite(seconds) or seconds < 0:
            return None
        return min(seconds, self._max_backoff_s)

    def _retry_or_fail(self, ev: _Event, reason: str, retry_after: float | None) -> None:
        if ev.tries >= self._attempts:
            self._give_up(ev, f"{reason} (after {ev.tries} attempts)")
            return
        if retry_after is None:
            delay = min(self._backoff_s * 2.0 ** min(ev.tries - 1, 60), self._max_backoff_s)
        else:
            delay = retry_after
        self.stats.retried += 1
        due = asyncio.get_running_loop().time() + delay
        heapq.heappush(self._later, (due, next(self._seq), ev))
        log.info(
            "budget webhook %s: event %s: %s; try %d of %d in %.2fs",
            self._where,
            ev.id,
            reason,
            ev.tries + 1,
            self._attempts,
            delay,
        )

    def _give_up(self, ev: _Event, reason: str) -> None:
        self.stats.failed += 1
        log.error("budget webhook %s: giving up on event %s: %s", self._where, ev.id, reason)

    def _get_client(self) -> Client:
        client = self._client
        if client is None:  # built on first use, inside the running loop
            timeout = timedelta(seconds=self._timeout_s)
            client = (
                ClientBuilder()
                .user_agent("ferrogate")
                .follow_redirects(False)
                .gzip(False)
                .brotli(False)
                .zstd(False)
                .deflate(False)
                .connect_timeout(timeout)
                .timeout(timeout)
                .max_connections(MAX_IN_FLIGHT)
                .pool_idle_timeout(timedelta(seconds=60))
                .build()
            )
            self._client = client
        return client

    def _describe(self, exc: BaseException) -> str:
        """The error's kind and innermost cause, with the URL reduced to its origin (paths may hold tokens)."""
        text = type(exc).__name__
        if isinstance(exc, DetailedPyreqwestError):
            causes = exc.details.get("causes") or []
            if causes:
                text += f": {causes[-1]['message']}"
        elif str(exc):
            text += f": {exc}"
        if self._url:
            text = text.replace(self._url, self._where)
        return text


def _origin(url: str) -> str:
    """``scheme://host:port`` of ``url``: what logs may show of it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    host = parts.netloc.rpartition("@")[2]  # never the userinfo
    return f"{parts.scheme}://{host}" if parts.scheme and host else "<invalid url>"


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
