"""The budget webhook notifier against a real in-process HTTP receiver (aiohttp on 127.0.0.1, never a mock)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

import orjson
import pytest
from aiohttp import web

from ferrogate.budgets.notify import MAX_IN_FLIGHT, WebhookNotifier
from tests.support import free_port

pytestmark = pytest.mark.anyio

SECRET = "whsec-Do-Not-Log-Me"  # noqa: S105 (a test key)
PATH = "/hooks/T0KEN-IN-PATH"
EVENT = {"type": "budget.soft_limit", "budget": "team:ml", "percent": 80, "spent_usd": 80.25}


class Timing(TypedDict):
    backoff_s: float
    max_backoff_s: float
    timeout_s: float


FAST: Timing = {"backoff_s": 0.01, "max_backoff_s": 0.05, "timeout_s": 2.0}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Hit:
    """One request the receiver got."""

    at: float
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = orjson.loads(self.raw)
        return body


Answer = tuple[int, dict[str, str], float]  # status, headers, delay before answering


@dataclass
class Receiver:
    """A webhook receiver: answers from ``script`` (in order), then with ``rule`` (default: 200)."""

    hits: list[Hit] = field(default_factory=list)
    script: deque[Answer] = field(default_factory=deque)
    rule: Callable[[Hit], Answer] = lambda hit: (200, {}, 0.0)
    in_flight: int = 0
    max_in_flight: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def answer(self, *answers: int | Answer) -> None:
        self.script.extend(a if isinstance(a, tuple) else (a, {}, 0.0) for a in answers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.1)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        hit = Hit(asyncio.get_running_loop().time(), dict(request.headers), await request.read())
        self.hits.append(hit)
        status, headers, delay = self.script.popleft() if self.script else self.rule(hit)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if delay:
                await asyncio.sleep(delay)
            return web.Response(status=status, headers=headers, text="ok" if status < 300 else "no")
        finally:
            self.in_flight -= 1

    def ids(self) -> list[str]:
        return [hit.headers["X-Ferrogate-Event-Id"] for hit in self.hits]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    await rec.start()
    yield rec
    await rec.stop()


async def until(cond: Callable[[], bool], within: float = 3.0) -> None:
    """Poll ``cond`` every 5 ms; fail the test when it is still false after ``within`` seconds."""
    for _ in range(int(within / 0.005) + 1):
        if cond():
            return
        await asyncio.sleep(0.005)
    pytest.fail(f"still false after {within} s")


@contextlib.asynccontextmanager
async def running(notifier: WebhookNotifier, grace_s: float = 2.0) -> AsyncIterator[WebhookNotifier]:
    """``notifier.run()`` in a task; closed on exit, and the task must end without an exception."""
    task = asyncio.create_task(notifier.run())
    try:
        yield notifier
    finally:
        await notifier.close(grace_s=grace_s)
        await asyncio.wait_for(task, 2.0)


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ferrogate.budgets" and r.levelno >= logging.ERROR]


# ---- delivery ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("secret", [SECRET, None])
async def test_delivers_the_event_with_id_sent_at_headers_and_signature(
    receiver: Receiver, secret: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ferrogate.budgets")
    async with running(WebhookNotifier(receiver.url, secret=secret, **FAST)) as notifier:
        notifier.notify({**EVENT, "id": "caller-id"})
        await until(lambda: notifier.stats.sent == 1)
    [hit] = receiver.hits
    body = hit.body
    assert re.fullmatch(r"evt_[0-9a-f]{16}", body["id"])
    assert {k: v for k, v in body.items() if k not in ("id", "sent_at")} == EVENT
    sent_at = datetime.fromisoformat(body["sent_at"])
    assert sent_at.utcoffset() == timedelta(0) and abs(datetime.now(UTC) - sent_at) < timedelta(seconds=5)
    assert hit.headers["Content-Type"] == "application/json"
    assert hit.headers["User-Agent"] == "ferrogate"
    assert hit.headers["X-Ferrogate-Event-Id"] == body["id"]
    if secret is None:
        assert "X-Ferrogate-Signature" not in hit.headers
    else:
        expected = hmac.new(secret.encode(), hit.raw, hashlib.sha256).hexdigest()
        assert hit.headers["X-Ferrogate-Signature"] == f"sha256={expected}"
    assert (notifier.stats.sent, notifier.stats.failed, notifier.stats.retried, notifier.stats.dropped) == (1, 0, 0, 0)
    assert notifier.pending == 0 and errors(caplog) == []


async def test_each_event_gets_its_own_id(receiver: Receiver) -> None:
    async with running(WebhookNotifier(receiver.url, **FAST)) as notifier:
        for n in range(6):
            notifier.notify({**EVENT, "n": n})
        await until(lambda: notifier.stats.sent == 6)
    assert sorted(hit.body["n"] for hit in receiver.hits) == list(range(6))
    assert len(set(receiver.ids())) == 6


# ---- retries -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_retries_a_transient_answer_with_the_same_event_id(receiver: Receiver, status: int) -> None:
    receiver.answer(status, 200)
    async with running(WebhookNotifier(receiver.url, secret=SECRET, **FAST)) as notifier:
        notifier.notify(EVENT)
        await until(lambda: notifier.stats.sent == 1)
    first, second = receiver.hits
    assert first.body["id"] == second.body["id"] == first.headers["X-Ferrogate-Event-Id"]
    assert second.headers["X-Ferrogate-Event-Id"] == first.body["id"]
    for hit in (first, second):  # each attempt is signed over its own body
        digest = hmac.new(SECRET.encode(), hit.raw, hashlib.sha256).hexdigest()
        assert hit.headers["X-Ferrogate-Signature"] == f"sha256={digest}"
    assert (notifier.stats.sent, notifier.stats.failed, notifier.stats.retried) == (1, 0, 1)


@pytest.mark.parametrize(
    ("retry_after", "max_backoff_s", "low", "high"),
    [
        ("0.3", 30.0, 0.29, 0.9),  # honoured (the backoff alone would be 0.01 s)
        ("60", 0.2, 0.19, 0.9),  # capped at max_backoff_s
        ("Wed, 21 Oct 2015 07:28:00 GMT", 30.0, 0.0, 0.2),  # not numeric: the usual backoff
    ],
)
async def test_retry_after_on_429(
    receiver: Receiver, retry_after: str, max_backoff_s: float, low: float, high: float
) -> None:
    receiver.answer((429, {"Retry-After": retry_after}, 0.0), 200)
    notifier = WebhookNotifier(receiver.url, backoff_s=0.01, max_backoff_s=max_backoff_s, timeout_s=2.0)
    async with running(notifier):
        notifier.notify(EVENT)
        await until(lambda: notifier.stats.sent == 1)
    first, second = receiver.hits
    assert low <= second.at - first.at < high
    assert first.body["id"] == second.body["id"]


async def test_backoff_doubles_up_to_the_cap(receiver: Receiver) -> None:
    receiver.rule = lambda hit: (500, {}, 0.0)
    notifier = WebhookNotifier(receiver.url, attempts=5, backoff_s=0.04, max_backoff_s=0.1, timeout_s=2.0)
    async with running(notifier):
        notifier.notify(EVENT)
        await until(lambda: notifier.stats.failed == 1)
    gaps = [b.at - a.at for a, b in zip(receiver.hits, receiver.hits[1:], strict=False)]
    assert len(gaps) == 4
    for gap, expected in zip(gaps, [0.04, 0.08, 0.1, 0.1], strict=True):
        assert expected - 0.005 <= gap < expected + 0.15


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422, 301])
async def test_gives_up_at_once_on_a_refusal(receiver: Receiver, status: int, caplog: pytest.LogCaptureFixture) -> None:
    receiver.rule = lambda hit: (status, {"Location": "/elsewhere"} if status == 301 else {}, 0.0)
    async with running(WebhookNotifier(receiver.url, secret=SECRET, **FAST)) as notifier:
        notifier.notify(EVENT)
        await until(lambda: notifier.stats.failed == 1)
        await asyncio.sleep(0.05)  # room for a wrong retry
    assert len(receiver.hits) == 1
    assert (notifier.stats.sent, notifier.stats.failed, notifier.stats.retried) == (0, 1, 0)
    [message] = errors(caplog)
    assert receiver.ids()[0] in message and f"HTTP {status}" in message
    assert SECRET not in caplog.text and "T0KEN" not in caplog.text


async def test_gives_up_after_all_attempts_on_a_failing_receiver(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.rule = lambda hit: (500, {}, 0.0)
    async with running(WebhookNotifier(receiver.url, attempts=3, **FAST)) as notifier:
        notifier.notify(EVENT)
        await until(lambda: notifier.stats.failed == 1)
        await asyncio.sleep(0.1)  # room for a wrong fourth attempt
    assert len(receiver.hits) == 3 and len(set(receiver.ids())) == 1
    assert (notifier.stats.sent, notifier.stats.failed, notifier.stats.retried) == (0, 1, 2)
    [message] = errors(caplog)
    assert receiver.ids()[0] in message and "HTTP 500" in message and "3 attempts" in message


async def test_connection_refused_is_retried_then_given_up(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}{PATH}?key=QUERY-T0KEN"  # nothing listens there
    async with running(WebhookNotifier(url, secret=SECRET, attempts=3, **FAST)) as notifier:
        notifier.notify(EVENT)
        await until(lambda: notifier.stats.failed == 1)
    assert (notifier.stats.sent, notifier.stats.failed, notifier.stats.retried) == (0, 1, 2)
    [message] = errors(caplog)
    assert "giving up" in message and "ConnectError" in message and "3 attempts" in message
    assert "T0KEN" not in caplog.text and SECRET not in caplog.text  # logs show the origin only
    assert f"http://127.0.0.1:{url.split(':')[2].split('/')[0]}" in message


async def test_a_timeout_is_retried(receiver: Receiver) -> None:
    receiver.answer((200, {}, 1.0), 200)  # the first answer comes too late
    async with running(WebhookNotifier(receiver.url, backoff_s=0.01, timeout_s=0.2)) as notifier:
        notifier.notify(EVENT)
        await until(lambda: notifier.stats.sent == 1)
    assert len(receiver.hits) == 2 and len(set(receiver.ids())) == 1
    assert (notifier.stats.sent, notifier.stats.failed, notifier.stats.retried) == (1, 0, 1)


# ---- concurrency ---------------------------------------------------------------------------------------------
async def test_failing_events_do_not_hold_back_the_others(receiver: Receiver) -> None:
    # More failing events than slots: a try waiting for its backoff must not keep a slot.
    receiver.rule = lambda hit: (500 if hit.body["budget"] == "poison" else 200, {}, 0.0)
    notifier = WebhookNotifier(receiver.url, attempts=3, backoff_s=0.3, max_backoff_s=1.0, timeout_s=2.0)
    async with running(notifier):
        for _ in range(MAX_IN_FLIGHT + 1):
            notifier.notify({**EVENT, "budget": "poison"})
        for n in range(8):
            notifier.notify({**EVENT, "n": n})
        await until(lambda: notifier.stats.sent == 8, within=0.25)  # long before the poison's 0.9 s of backoff
        assert notifier.stats.failed == 0 and notifier.pending == MAX_IN_FLIGHT + 1
        await until(lambda: notifier.stats.failed == MAX_IN_FLIGHT + 1)
    assert notifier.stats.retried == 2 * (MAX_IN_FLIGHT + 1)


async def test_at_most_max_in_flight_requests_at_once(receiver: Receiver) -> None:
    receiver.rule = lambda hit: (200, {}, 0.1)
    async with running(WebhookNotifier(receiver.url, **FAST)) as notifier:
        for _ in range(10):
            notifier.notify(EVENT)
        await until(lambda: notifier.stats.sent == 10)
    assert receiver.max_in_flight == MAX_IN_FLIGHT == 4


# ---- off, shutdown, overflow ---------------------------------------------------------------------------------
async def test_without_url_notify_is_a_no_op() -> None:
    notifier = WebhookNotifier(None, secret=SECRET)
    notifier.notify(EVENT)
    assert notifier.pending == 0
    await asyncio.wait_for(notifier.run(), 1.0)  # nothing to do: returns at once
    await notifier.close()
    notifier.notify(EVENT)
    assert (notifier.stats.sent, notifier.stats.failed, notifier.stats.retried, notifier.stats.dropped) == (0, 0, 0, 0)


async def test_close_delivers_what_is_queued_without_run(receiver: Receiver) -> None:
    notifier = WebhookNotifier(receiver.url, **FAST)
    for n in range(3):
        notifier.notify({**EVENT, "n": n})
    assert notifier.pending == 3 and receiver.hits == []
    await notifier.close(grace_s=2.0)
    assert sorted(hit.body["n"] for hit in receiver.hits) == [0, 1, 2]
    assert notifier.stats.sent == 3 and notifier.pending == 0
    await asyncio.wait_for(notifier.run(), 1.0)  # closed: returns at once


async def test_close_delivers_what_was_just_queued(receiver: Receiver) -> None:
    notifier = WebhookNotifier(receiver.url, **FAST)
    task = asyncio.create_task(notifier.run())
    await asyncio.sleep(0.01)
    for n in range(6):
        notifier.notify({**EVENT, "n": n})
    await notifier.close(grace_s=2.0)
    await asyncio.wait_for(task, 1.0)  # run() ends, without an exception
    assert sorted(hit.body["n"] for hit in receiver.hits) == list(range(6))
    assert notifier.stats.sent == 6 and notifier.stats.dropped == 0


async def test_close_delivers_what_a_cancelled_run_left(receiver: Receiver) -> None:
    receiver.answer((200, {}, 0.3), (200, {}, 0.3))  # the first tries are in flight when run() is cancelled
    notifier = WebhookNotifier(receiver.url, **FAST)
    task = asyncio.create_task(notifier.run())
    notifier.notify({**EVENT, "n": 1})
    notifier.notify({**EVENT, "n": 2})
    await until(lambda: len(receiver.hits) == 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert notifier.pending == 2 and notifier.stats.sent == 0  # interrupted tries are queued again
    await notifier.close(grace_s=2.0)
    assert notifier.stats.sent == 2 and notifier.stats.dropped == 0
    assert sorted(hit.body["n"] for hit in receiver.hits[2:]) == [1, 2]
    assert set(receiver.ids()[:2]) == set(receiver.ids()[2:])  # the same ids again


async def test_close_gives_up_after_the_grace_period(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.rule = lambda hit: (503, {}, 0.0)
    notifier = WebhookNotifier(receiver.url, attempts=100, backoff_s=0.02, max_backoff_s=0.02, timeout_s=2.0)
    task = asyncio.create_task(notifier.run())
    notifier.notify({**EVENT, "n": 1})
    notifier.notify({**EVENT, "n": 2})
    await until(lambda: len(receiver.hits) >= 4)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await notifier.close(grace_s=0.2)
    assert 0.15 <= loop.time() - started < 1.0
    await asyncio.wait_for(task, 1.0)  # run() ends, without an exception
    assert (notifier.stats.sent, notifier.stats.failed, notifier.stats.dropped) == (0, 0, 2)
    assert notifier.pending == 0
    [message] = errors(caplog)
    assert "2 events undelivered" in message and all(i in message for i in set(receiver.ids()))
    notifier.notify(EVENT)  # after close: dropped
    assert notifier.stats.dropped == 3


async def test_close_interrupts_a_slow_request_at_the_end_of_the_grace_period(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.rule = lambda hit: (200, {}, 2.0)  # answers long after the grace period
    notifier = WebhookNotifier(receiver.url, timeout_s=5.0)
    task = asyncio.create_task(notifier.run())
    notifier.notify(EVENT)
    await until(lambda: len(receiver.hits) == 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await notifier.close(grace_s=0.2)
    assert 0.15 <= loop.time() - started < 0.6
    await asyncio.wait_for(task, 1.0)  # run() ends, without an exception
    assert (notifier.stats.sent, notifier.stats.failed, notifier.stats.dropped) == (0, 0, 1)
    [message] = errors(caplog)
    assert "1 events undelivered" in message and receiver.ids()[0] in message


async def test_close_does_not_wait_for_a_retry_due_after_the_grace_period(receiver: Receiver) -> None:
    receiver.rule = lambda hit: (503, {}, 0.0)
    notifier = WebhookNotifier(receiver.url, backoff_s=10.0, max_backoff_s=10.0, timeout_s=2.0)
    task = asyncio.create_task(notifier.run())
    notifier.notify(EVENT)
    await until(lambda: notifier.stats.retried == 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await notifier.close(grace_s=3.0)
    assert loop.time() - started < 0.5
    await asyncio.wait_for(task, 1.0)  # run() ends, without an exception
    assert len(receiver.hits) == 1 and notifier.stats.dropped == 1


async def test_overflow_above_max_queue_is_dropped(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    notifier = WebhookNotifier(receiver.url, max_queue=3, **FAST)
    for n in range(5):
        notifier.notify({**EVENT, "n": n})  # run() is not running: the queue fills
    assert notifier.pending == 3 and notifier.stats.dropped == 2
    assert len(errors(caplog)) == 2
    await notifier.close()
    assert sorted(hit.body["n"] for hit in receiver.hits) == [0, 1, 2]
    s = notifier.stats
    assert (s.sent, s.failed, s.dropped) == (3, 0, 2) and s.sent + s.failed + s.dropped == 5
