"""One upstream MCP server as a worker sees it: a supervised SDK client session and its cached lists.

Each worker holds one :class:`Upstream` per configured server. Its supervisor (one asyncio task) owns the SDK's
``Client`` (entered and exited in that task, as anyio requires): it connects (``mode="auto"``: ``server/discover``,
falling back to ``initialize`` on a 2025-era server), lists tools, resources, resource templates and prompts (every
page, bounded), then waits for a stop, the refresh timer, a list-changed notification (2025 sessions: the
notification; 2026-07-28: a ``subscriptions/listen`` stream) or the connection's loss (a transport's end, a call
failing on a closed connection, a liveness probe every 10 s failing). On a loss or a failed connect the state is
``unavailable`` with ``last_error`` set, and it reconnects after a jittered backoff (0.25 s doubling to 30 s, reset
after a success); a crashed stdio child is restarted this way. Calls from other tasks only await the client's
request methods; the caller's deadline cancels the request upstream (a ``notifications/cancelled`` on a session,
the exchange closed on 2026-07-28 HTTP).

Example:
    >>> from ferrogate.config.mcp import McpStdioServer
    >>> up = Upstream(McpStdioServer(id="files", transport="stdio", command="mcp-files", enabled=False))
    >>> up.id, up.state
    ('files', 'disabled')
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import anyio
import httpx2
import mcp_types
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from ferrogate.config.mcp import McpHttpServer, McpStdioServer
from ferrogate.mcp.connect import REQUEST_TIMEOUT_S, connect, connection_level, list_everything
from ferrogate.mcp.exchange import VERSION as EXCHANGE_VERSION
from ferrogate.mcp.exchange import Exchange, ExchangeFailed, ExchangeRefused
from ferrogate.mcp.scrub import describe, scrubber

logger = logging.getLogger(__name__)

State = Literal["connecting", "ready", "unavailable", "disabled"]
_T = TypeVar("_T")

#: The liveness probe's period and bound (``ping`` on 2025 sessions, ``server/discover`` on 2026-07-28).
PROBE_S = 10.0
PROBE_TIMEOUT_S = 5.0
#: Reconnect backoff (jittered: a random wait in [backoff/2, backoff]).
BACKOFF_MIN_S = 0.25
BACKOFF_MAX_S = 30.0
#: How long close() waits for the supervisor (a stdio child gets its stdin closed, then SIGTERM, then SIGKILL).
CLOSE_TIMEOUT_S = 10.0


class UpstreamUnavailable(Exception):
    """The server cannot be reached: not connected, the connection was lost, or a transport error."""


class UpstreamTimeout(Exception):
    """The request took longer than its limit; it was cancelled upstream."""


class UpstreamError(Exception):
    """The server answered a resources or prompts request with a JSON-RPC error (``code``, ``message``).

    (A tools/call answered with a JSON-RPC error becomes an ``isError`` result instead.)
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Lost(Exception):
    """The session ended under the supervisor (the transport closed, a probe or a call failed)."""


class Upstream:
    """One upstream MCP server as this worker sees it (see the module docstring for the supervisor).

    ``on_lists`` is called (synchronously, in the supervisor's task) whenever the lists or the state changed.
    """

    def __init__(
        self, spec: McpHttpServer | McpStdioServer, *, on_lists: Callable[[Upstream], None] | None = None
    ) -> None:
        self.spec = spec
        self.id = spec.id
        self.state: State = "connecting" if spec.enabled else "disabled"
        self.last_error: str | None = None
        self.protocol_version: str | None = None
        self.tools: list[mcp_types.Tool] = []
        self.resources: list[mcp_types.Resource] = []
        self.resource_templates: list[mcp_types.ResourceTemplate] = []
        self.prompts: list[mcp_types.Prompt] = []
        self.listed_at: float | None = None
        #: Bumped whenever one of the lists changed (the catalog rebuilds that server's views then).
        self.lists_version = 0
        self._on_lists = on_lists
        self._scrub = scrubber(spec)
        self._client: Client | None = None
        #: 2026-07-28 HTTP: tool calls as single exchanges over a pooled client (:mod:`.exchange`), not the session
        self._exchange: Exchange | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._wake = asyncio.Event()  # list now (refresh(), a list-changed notification), lost, or stop
        self._kick = asyncio.Event()  # reconnect now (refresh(), close()): cuts a backoff wait short
        self._lost = asyncio.Event()
        self._cycles = 0  # listing attempts done (refresh() waits for the next)
        self._busy = False  # a connect or a listing is under way (refresh() waits for the one after it)
        self._reached_ready = False
        self._cycled = asyncio.Event()
        self._became_ready = asyncio.Event()

    # -- lifecycle

    async def start(self) -> None:
        """Spawn the supervisor task and return at once (a disabled server stays ``disabled``)."""
        if self.spec.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._supervise(), name=f"mcp-upstream-{self.id}")

    async def ready(self, timeout_s: float) -> bool:
        """Wait until the server is ready (at most ``timeout_s``); whether it is."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._became_ready.wait()
        return self.state == "ready"

    async def refresh(self) -> None:
        """List everything again now (reconnecting at once if unavailable); returns after that attempt."""
        if self._task is None or self._task.done():
            return
        target = self._cycles + (2 if self._busy else 1)
        self._wake.set()
        self._kick.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REQUEST_TIMEOUT_S * 2):
                while self._cycles < target and not self._task.done():
                    self._cycled.clear()
                    await self._cycled.wait()

    async def close(self) -> None:
        """Stop the supervisor: the session is closed and a stdio child terminated."""
        self._stopping = True
        self._wake.set()
        self._kick.set()
        task, self._task = self._task, None
        if task is not None and not task.done():
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await asyncio.shield(task)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.state != "disabled":
            self._set_state("unavailable", self.last_error)

    # -- calls (from any task)

    async def call_tool(self, name: str, arguments: dict[str, Any], timeout_s: float) -> mcp_types.CallToolResult:
        """Call ``name`` upstream; a JSON-RPC error answer becomes an ``isError`` result.

        Raises:
            UpstreamUnavailable: not connected, the connection was lost, a transport error.
            UpstreamTimeout: past ``timeout_s`` (the request is cancelled upstream).
        """
        try:
            return await self._request(
                lambda c: c.call_tool(name, arguments, read_timeout_seconds=timeout_s + 1.0), timeout_s
            )
        except UpstreamError as exc:
            text = f"MCP server '{self.id}' refused the call: {exc.message} (JSON-RPC error {exc.code})"
            return mcp_types.CallToolResult(
                content=[mcp_types.TextContent(type="text", text=text)],
                is_error=True,
                _meta={"ferrogate/upstream_error": exc.code},
            )

    async def call_tool_json(self, name: str, arguments: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """:meth:`call_tool`'s result as its JSON object: at 2026-07-28 over HTTP a single exchange whose result
        comes back as the server sent it (:mod:`.exchange`), else the SDK session's result dumped.

        Raises:
            UpstreamUnavailable: as :meth:`call_tool` (a transport failure also ends the session: reconnect).
            UpstreamTimeout: past ``timeout_s`` (the exchange is closed, which cancels the call).
        """
        exchange, client = self._exchange, self._client
        if exchange is None or client is None or self.state != "ready":
            result = await self.call_tool(name, arguments, timeout_s)
            dumped: dict[str, Any] = result.model_dump(by_alias=True, exclude_none=True, mode="json")
            return dumped
        try:
            return await exchange.call(name, arguments, timeout_s)
        except TimeoutError:
            raise UpstreamTimeout(f"no answer within {timeout_s:g} s (cancelled)") from None
        except ExchangeRefused as exc:
            text = f"MCP server '{self.id}' refused the call: {self._scrub(exc.message)} (JSON-RPC error {exc.code})"
            return {
                "content": [{"type": "text", "text": text}],
                "isError": True,
                "_meta": {"ferrogate/upstream_error": exc.code},
            }
        except ExchangeFailed as exc:
            error = self._scrub(str(exc))
            if exc.transport:
                error = self._lose(client, error)
            raise UpstreamUnavailable(error) from None

    async def read_resource(self, uri: str, timeout_s: float) -> mcp_types.ReadResourceResult:
        """Read ``uri`` upstream (errors as :meth:`call_tool`, plus :class:`UpstreamError`)."""
        return await self._request(lambda c: c.read_resource(uri, cache_mode="bypass"), timeout_s)

    async def get_prompt(
        self, name: str, arguments: dict[str, str] | None, timeout_s: float
    ) -> mcp_types.GetPromptResult:
        """Get the prompt ``name`` upstream (errors as :meth:`read_resource`)."""
        return await self._request(lambda c: c.get_prompt(name, arguments), timeout_s)

    async def _request(self, send: Callable[[Client], Awaitable[_T]], timeout_s: float) -> _T:
        client = self._client
        if client is None or self.state != "ready":
            raise UpstreamUnavailable(self.last_error or "not connected")
        try:
            with anyio.fail_after(timeout_s):
                return await send(client)
        except TimeoutError:
            raise UpstreamTimeout(f"no answer within {timeout_s:g} s (cancelled)") from None
        except MCPError as exc:
            if exc.code == mcp_types.REQUEST_TIMEOUT:
                raise UpstreamTimeout(f"no answer within {timeout_s:g} s (cancelled)") from None
            if connection_level(exc):
                raise UpstreamUnavailable(self._lose(client, f"connection lost: {exc.error.message}")) from None
            raise UpstreamError(exc.code, self._scrub(exc.error.message)) from None
        except (httpx2.TransportError, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise UpstreamUnavailable(self._lose(client, describe(exc, self._scrub))) from None
        except Exception as exc:  # an answer the SDK could not use (e.g. not matching the tool's outputSchema)
            raise UpstreamUnavailable("invalid answer: " + describe(exc, self._scrub)) from None

    # -- the supervisor

    async def _supervise(self) -> None:
        backoff = BACKOFF_MIN_S
        while not self._stopping:
            self._lost.clear()
            self._reached_ready = False
            try:
                await self._session()
            except Exception as exc:  # every failure of one upstream stays here
                error = describe(exc, self._scrub)
                repeated = self._stopping or (self.state == "unavailable" and error == self.last_error)
                (logger.debug if repeated else logger.warning)("MCP server %r is unavailable: %s", self.id, error)
                self._set_state("unavailable", error)
            finally:
                self._client = None
                exchange, self._exchange = self._exchange, None
                if exchange is not None:
                    await exchange.close()
                self._end_cycle()
            if self._stopping:
                break
            if self._reached_ready:
                backoff = BACKOFF_MIN_S  # it was up: the first retry comes soon
            await self._sleep(random.uniform(backoff / 2, backoff))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _session(self) -> None:
        """One connection: connect, list, serve until stopped (returns) or lost (raises)."""
        self._busy = True
        async with contextlib.AsyncExitStack() as stack:
            client = await connect(stack, self.spec, self._transport_ended, self._on_message)
            self.protocol_version = client.protocol_version
            if isinstance(self.spec, McpHttpServer) and client.protocol_version == EXCHANGE_VERSION:
                self._exchange = Exchange(self.spec)
            await self._list(client)
            self._client = client
            self._reached_ready = True
            self._set_state("ready", None)
            self._end_cycle()
            async with anyio.create_task_group() as tg:
                if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                    tg.start_soon(self._listen, client)
                try:
                    await self._serve(client)
                finally:
                    tg.cancel_scope.cancel()

    async def _serve(self, client: Client) -> None:
        next_refresh = time.monotonic() + self.spec.refresh_s
        next_probe = time.monotonic() + PROBE_S
        while True:
            wait = max(0.0, min(next_refresh, next_probe) - time.monotonic())
            woken = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    woken = await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            if self._lost.is_set():
                raise _Lost("the connection was lost")
            now = time.monotonic()
            if woken:  # refresh() or a list-changed notification
                next_refresh = now
            elif now >= next_probe and now < next_refresh:
                await self._probe(client)
            next_probe = now + PROBE_S
            if now >= next_refresh:
                self._busy = True
                await self._list(client)  # (a listing proves the connection too)
                self._end_cycle()
                next_refresh = time.monotonic() + self.spec.refresh_s

    async def _probe(self, client: Client) -> None:
        try:
            with anyio.fail_after(PROBE_TIMEOUT_S):
                if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                    await client.session.send_discover(client.protocol_version)
                else:
                    await client.session.send_ping()
        except TimeoutError:
            raise _Lost(f"no answer to the liveness probe within {PROBE_TIMEOUT_S:g} s") from None

    async def _listen(self, client: Client) -> None:
        """2026-07-28: a ``subscriptions/listen`` stream wakes the supervisor on list changes (re-opened if lost)."""
        caps = client.server_capabilities
        tools = bool(caps.tools and caps.tools.list_changed)
        prompts = bool(caps.prompts and caps.prompts.list_changed)
        resources = bool(caps.resources and caps.resources.list_changed)
        if not (tools or prompts or resources):
            return
        while not self._stopping:
            try:
                async with client.listen(
                    tools_list_changed=tools, prompts_list_changed=prompts, resources_list_changed=resources
                ) as subscription:
                    async for _event in subscription:
                        self._wake.set()
                return  # closed by the server: the timer still refreshes
            except MCPError as exc:
                logger.info("MCP server %r: no list-changed stream (%s)", self.id, self._scrub(exc.error.message))
                return
            except Exception as exc:  # lost: listen again shortly, and list again
                logger.info("MCP server %r: list-changed stream lost (%s)", self.id, describe(exc, self._scrub))
                self._wake.set()
                await anyio.sleep(1.0)

    async def _list(self, client: Client) -> None:
        new = await list_everything(client, self.id)
        self.listed_at = time.monotonic()
        if new != (self.tools, self.resources, self.resource_templates, self.prompts) or self.lists_version == 0:
            self.tools, self.resources, self.resource_templates, self.prompts = new
            if self._exchange is not None:
                self._exchange.tools_listed({t.name: t.input_schema for t in self.tools})
            self.lists_version += 1
            self._notify()

    # -- helpers

    async def _on_message(self, message: Any) -> None:
        if isinstance(
            message,
            mcp_types.ToolListChangedNotification
            | mcp_types.PromptListChangedNotification
            | mcp_types.ResourceListChangedNotification,
        ):
            self._wake.set()
        elif isinstance(message, Exception):
            logger.debug("MCP server %r: transport error: %s", self.id, describe(message, self._scrub))

    def _lose(self, client: Client, error: str) -> str:
        """A call found the connection gone: unavailable now (the supervisor reconnects); the scrubbed error."""
        error = self._scrub(error)
        if self._client is client:  # (not a late failure of an earlier session's call)
            self._client = None
            self._set_state("unavailable", error)
            self._lost.set()
            self._wake.set()
        return error

    def _transport_ended(self) -> None:
        if not self._stopping:
            self._lost.set()
            self._wake.set()

    def _set_state(self, state: State, error: str | None) -> None:
        changed = state != self.state or error != self.last_error
        self.state, self.last_error = state, error
        if state == "ready":
            self._became_ready.set()
        else:
            self._became_ready.clear()
        if changed:
            self._notify()

    def _notify(self) -> None:
        if self._on_lists is not None:
            try:
                self._on_lists(self)
            except Exception:  # the catalog's views: never a reason to drop the session
                logger.exception("MCP server %r: updating the catalog failed", self.id)

    def _end_cycle(self) -> None:
        self._busy = False
        self._cycles += 1
        self._cycled.set()
        if not self._stopping:
            self._kick.clear()

    async def _sleep(self, seconds: float) -> None:
        """The backoff wait, cut short by close() or refresh()."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._kick.wait()
        self._wake.clear()
