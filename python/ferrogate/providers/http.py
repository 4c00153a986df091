"""The pooled upstream HTTP client: one keep-alive pool per upstream and process.

Built on aiohttp (chosen by measurement, see BENCHMARKS.md). Its connector sets
TCP_NODELAY on every socket, so streamed frames are not held back by Nagle's algorithm.
The session is created lazily inside the worker's running event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp

from ferrogate.config.model import Upstream
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.providers.base import Reply


class PooledClient:
    """POSTs to one upstream over a shared keep-alive pool, mapping faults to 502/504."""

    __slots__ = ("_session", "_timeout", "name", "upstream")

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.name = upstream.name
        t = upstream.timeouts
        self._timeout = aiohttp.ClientTimeout(total=t.total_s, connect=t.connect_s, sock_read=t.read_s)
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None:
            connector = aiohttp.TCPConnector(
                limit=self.upstream.max_connections, keepalive_timeout=60, enable_cleanup_closed=True
            )
            session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, auto_decompress=True, skip_auto_headers=("User-Agent",)
            )
            self._session = session
        return session

    async def post(self, url: str, body: bytes, headers: dict[str, str], stream: bool) -> Reply:
        """POST ``body`` to ``url``; a 2xx streamed answer comes back as ``Reply.stream``.

        Raises:
            GatewayError: 502 when the upstream cannot be reached or breaks the protocol,
                504 when it does not answer in time.
        """
        session = self._get_session()
        try:
            resp = await session.post(url, data=body, headers=headers)
        except TimeoutError:
            raise GatewayError(ErrorKind.UPSTREAM_TIMEOUT, f"upstream '{self.name}' did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise GatewayError(
                ErrorKind.UPSTREAM_UNREACHABLE, f"upstream '{self.name}' is unreachable: {_describe(exc)}"
            ) from None
        content_type = resp.headers.get("Content-Type", "application/json")
        if stream and resp.status < 300:
            return Reply(resp.status, content_type, stream=self._iterate(resp), release=_releaser(resp))
        try:
            data = await resp.read()
        except TimeoutError:
            raise GatewayError(ErrorKind.UPSTREAM_TIMEOUT, f"upstream '{self.name}' timed out mid-response") from None
        except aiohttp.ClientError as exc:
            raise GatewayError(
                ErrorKind.UPSTREAM_PROTOCOL, f"upstream '{self.name}' broke off its response: {_describe(exc)}"
            ) from None
        finally:
            resp.release()
        return Reply(resp.status, content_type, body=data)

    async def _iterate(self, resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        try:
            async for chunk in resp.content.iter_any():
                yield chunk
        except TimeoutError:
            raise GatewayError(ErrorKind.UPSTREAM_TIMEOUT, f"upstream '{self.name}' stalled mid-stream") from None
        except aiohttp.ClientError as exc:
            raise GatewayError(
                ErrorKind.UPSTREAM_PROTOCOL, f"upstream '{self.name}' broke off the stream: {_describe(exc)}"
            ) from None

    async def close(self) -> None:
        """Close the pool (at worker shutdown)."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _releaser(resp: aiohttp.ClientResponse) -> Callable[[], Awaitable[None]]:
    async def release() -> None:
        # A stream read to its end gives the connection back to the pool; one cut short is closed.
        if resp.content.at_eof():
            resp.release()
        else:
            resp.close()

    return release


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return text if text else type(exc).__name__
