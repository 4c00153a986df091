"""A TCP relay the test controls: put it between the gateway and PostgreSQL, then cut and restore the link.

The relay runs its own event loop on a thread, so a synchronous test (the gateway as a subprocess) and an
async one (a store in the test's loop) drive it alike. Cut modes:

- ``refuse``: every open connection is closed (reset) and the listener stops: new connections are refused
  (ECONNREFUSED), as when the database host is down.
- ``blackhole``: open connections are closed; new ones are accepted and then never answered (a firewall
  dropping packets, a server that hangs at login).
- ``stall``: open connections stay open but nothing passes either way (a query that hangs mid-flight); new
  ones are accepted and never answered.

:meth:`Relay.restore` lets traffic through again (stalled connections resume).

Example:
    >>> # with Relay("127.0.0.1", 5432) as relay:
    >>> #     url = relay.url("postgresql://postgres@127.0.0.1:5432/test")   # same URL, the relay's port
    >>> #     relay.cut("refuse"); ...; relay.restore()
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")
Mode = Literal["refuse", "blackhole", "stall"]


class Relay:
    """A TCP relay on 127.0.0.1 (a free port, kept across cuts) to ``host:port``.

    Args:
        host: the target's address.
        port: the target's port.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.mode: Mode | None = None  # None: traffic flows
        self.accepted = 0  # connections accepted while open (each is a new link to the target)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relay", daemon=True)
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._held: set[asyncio.StreamWriter] = set()  # accepted while cut: never answered
        self._every: set[asyncio.StreamWriter] = set()  # every connection end not known closed (closed at exit)
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- the test's side (any thread) -----------------------------------------------------------------------
    def start(self) -> Relay:
        """Start the thread and listen; returns ``self``."""
        self._thread.start()
        self._run(self._listen())
        return self

    def url(self, database_url: str) -> str:
        """``database_url`` with its host and port replaced by the relay's."""
        parts = urlsplit(database_url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def cut(self, mode: Mode = "refuse") -> None:
        """Cut the link (see the module's modes)."""
        self._run(self._cut(mode))

    def restore(self) -> None:
        """Let traffic through again: listen (after ``refuse``), drop held connections, resume stalled ones."""
        self._run(self._restore())

    def close(self) -> None:
        """Close everything and stop the thread."""
        if self._thread.is_alive():
            self._run(self._close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # ---- the relay's loop -----------------------------------------------------------------------------------
    async def _listen(self) -> None:
        if self._flowing is None:
            self._flowing = asyncio.Event()
            self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._every.add(writer)
        if self.mode is not None:  # blackhole / stall: accepted, never answered
            self._held.add(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._every.add(up_writer)
        if self.mode is not None:  # cut while connecting
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self.accepted += 1
        self._links |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pump(src, dst, writer, up_writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *ends: asyncio.StreamWriter) -> None:
        flowing = self._flowing
        assert flowing is not None
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await src.read(65536):
                await flowing.wait()  # stalled: held here, nothing passes
                dst.write(data)
                await dst.drain()
        for end in ends:  # one side closed: close the link
            end.transport.abort()
            self._links.discard(end)

    async def _cut(self, mode: Mode) -> None:
        assert self._flowing is not None
        self.mode = mode
        if mode == "stall":
            self._flowing.clear()
            return
        await self._drop_links()
        if mode == "refuse":
            await self._stop_listening()

    async def _drop_links(self) -> None:
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _restore(self) -> None:
        assert self._flowing is not None
        self.mode = None
        for writer in self._held:
            writer.transport.abort()
        self._held.clear()
        self._flowing.set()
        if self._server is None:
            await self._listen()

    async def _stop_listening(self) -> None:
        for writer in self._held:
            writer.transport.abort()
        self._held.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _close(self) -> None:
        self.mode = "refuse"
        assert self._flowing is not None
        self._flowing.set()
        await self._drop_links()
        await self._stop_listening()
        for writer in self._every:
            writer.transport.abort()
        self._every.clear()
        await asyncio.sleep(0.05)  # aborted transports close their sockets in callbacks: let them run
