"""The pooled upstream HTTP client: one keep-alive pool per upstream and worker process.

Built on pyreqwest (Rust's reqwest/hyper), chosen by measurement over aiohttp and rnet (see
BENCHMARKS.md: a third of aiohttp's CPU per JSON request, half per SSE stream). TCP_NODELAY is
on, so streamed frames are not held back by Nagle's algorithm; redirects are not followed and
responses are not decompressed (none is asked for), so bytes pass through as they come. The
client is built lazily inside the worker's running event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import ConnectError, ConnectTimeoutError, PyreqwestError, RequestTimeoutError
from pyreqwest.request import StreamRequest

from ferrogate import __version__
from ferrogate.config.model import Upstream
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.protocols import OPENAI_CHAT
from ferrogate.providers.base import Call, Reply

#: The headers of an upstream's error answer that go on to the client (when to try again).
_RETRY_HINTS = ("retry-after", "retry-after-ms")


class PooledClient:
    """POSTs to one upstream over a shared keep-alive pool, mapping faults to 502/504."""

    __slots__ = ("_client", "_headers", "name", "upstream")

    def __init__(self, upstream: Upstream, headers: dict[str, str]) -> None:
        self.upstream = upstream
        self.name = upstream.name
        self._headers = headers  # sent with every request: set once on the client, not per request
        self._client: Client | None = None

    def _get_client(self) -> Client:
        client = self._client
        if client is None:
            t = self.upstream.timeouts
            client = (
                ClientBuilder()
                .tcp_nodelay(True)
                .follow_redirects(False)
                .gzip(False)
                .brotli(False)
                .zstd(False)
                .deflate(False)
                .user_agent(f"ferrogate/{__version__}")
                .default_headers(self._headers)
                .connect_timeout(timedelta(seconds=t.connect_s))
                .read_timeout(timedelta(seconds=t.read_s))
                .timeout(timedelta(seconds=t.total_s))
                .max_connections(self.upstream.max_connections)
                .pool_idle_timeout(timedelta(seconds=60))
                .build()
            )
            self._client = client
        return client

    async def post(
        self,
        url: str,
        body: bytes,
        stream: bool,
        call: Call,
        protocol: str = OPENAI_CHAT,
        json_mode: bool = False,
    ) -> Reply:
        """POST ``body`` to ``url``; a 2xx streamed answer comes back with ``Reply.read`` set. ``protocol`` is
        what the upstream answers in; an error answer keeps its retry hints (``retry-after``,
        ``retry-after-ms``) in ``Reply.headers``.

        The call's ``traceparent`` and ``tracestate`` (W3C trace context), when set, are sent as those headers
        of this request only; ``x-ferrogate-request-id`` carries the gateway's request id (the same on every
        attempt of one request).

        Raises:
            GatewayError: 502 when the upstream cannot be reached or breaks the protocol,
                504 when it does not answer in time.
        """
        # the gateway's request id, the same on every attempt of one request (retries, failover)
        builder = self._get_client().post(url).body_bytes(body).header("x-ferrogate-request-id", call.request_id)
        if (traceparent := call.traceparent) is not None:
            builder = builder.header("traceparent", traceparent)
            if call.tracestate is not None:
                builder = builder.header("tracestate", call.tracestate)
        # One code path for both (measured: the streamed request costs no more than send()).
        # No read-ahead: pyreqwest would otherwise hold a stream back until 64 KiB had arrived.
        request = builder.streamed_read_buffer_limit(0).build_streamed()
        try:
            resp = await request.__aenter__()
        except PyreqwestError as exc:
            raise self._fault(exc, "") from None
        content_type = resp.get_header("content-type") or ("text/event-stream" if stream else "application/json")
        status = resp.status
        if not stream or status >= 300:  # a whole answer, or an error answer to a stream request
            try:
                data = bytes(await resp.bytes())
            except PyreqwestError as exc:
                raise self._fault(exc, " mid-response") from None
            finally:
                await request.__aexit__(None, None, None)
            hints = [] if status < 400 else [(h, v) for h in _RETRY_HINTS if (v := resp.get_header(h)) is not None]
            return Reply(status, content_type, body=data, headers=hints, protocol=protocol, json_mode=json_mode)
        return Reply(
            status,
            content_type,
            read=resp.body_reader.read_chunk,
            fault=self._stream_fault,
            release=_releaser(request),
            protocol=protocol,
            json_mode=json_mode,
        )

    def _stream_fault(self, exc: Exception) -> GatewayError:
        return self._fault(exc, " mid-stream")

    def _fault(self, exc: Exception, where: str) -> GatewayError:
        if isinstance(exc, ConnectTimeoutError):
            return GatewayError(
                ErrorKind.UPSTREAM_TIMEOUT, f"upstream '{self.name}' did not accept a connection in time"
            )
        if isinstance(exc, RequestTimeoutError):
            return GatewayError(ErrorKind.UPSTREAM_TIMEOUT, f"upstream '{self.name}' did not answer in time{where}")
        if isinstance(exc, ConnectError):
            return GatewayError(ErrorKind.UPSTREAM_UNREACHABLE, f"upstream '{self.name}' is unreachable: {_cause(exc)}")
        return GatewayError(ErrorKind.UPSTREAM_PROTOCOL, f"upstream '{self.name}' broke off{where}: {_cause(exc)}")

    async def close(self) -> None:
        """Close the pool (at worker shutdown)."""
        if self._client is not None:
            await self._client.close()
            self._client = None


def _releaser(request: StreamRequest) -> Callable[[], Awaitable[None]]:
    async def release() -> None:
        await request.__aexit__(None, None, None)

    return release


def _cause(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
