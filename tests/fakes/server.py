"""What every fake upstream shares: an aiohttp server on 127.0.0.1 (a free port) in a background thread with
its own loop, its routes given by the subclass, every request recorded."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeServer:
    """Start with :meth:`start`, stop with :meth:`stop`; ``requests`` holds each request's path, headers, JSON
    body (``None`` when the body is not JSON) and the bytes received (``raw``: what the upstream saw)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def routes(self) -> dict[str, Handler]:
        """``POST`` path -> handler (the subclass's)."""
        raise NotImplementedError

    def start(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(sock), self._loop).result(10)

    async def _start(self, sock: socket.socket) -> None:
        app = web.Application()
        for path, handler in self.routes().items():
            app.router.add_post(path, handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _record(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body, "raw": raw})
        return body
