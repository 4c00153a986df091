"""A ``Gateway`` with the MCP fronts wired as ``server/app.py`` is to wire them (until it does): the factory the
SDK end-to-end tests start with Granian (``--factory tests.unit.mcp.sdk_app:create_app``).

What it adds to the stock gateway is exactly the wiring the lead is asked for: ``Pins``, ``Catalog``,
``Policies`` (the configuration's ``mcp.default_policy`` only: no stored policies here), ``McpDeps`` over the
gateway's limiter, guardrails, audit writer, metrics, authenticator and master key, ``ToolCalls``, ``McpRest``,
``McpEndpoint``; the routes ``/mcp`` and the prefix ``/mcp/v1/``; the catalog started per worker and closed.
"""

from __future__ import annotations

import asyncio
import os

from granian.rsgi import HTTPProtocol, Scope

from ferrogate.config import Config, load_config
from ferrogate.mcp.calls import McpDeps, ToolCalls
from ferrogate.mcp.catalog import Catalog
from ferrogate.mcp.endpoint import McpEndpoint
from ferrogate.mcp.pins import Pins
from ferrogate.mcp.policy import Policies
from ferrogate.mcp.rest import PREFIX, McpRest
from ferrogate.server.app import Gateway
from ferrogate.server.settings import Settings
from ferrogate.store import Store, open_store


class McpGateway(Gateway):
    """The stock gateway plus the MCP fronts."""

    def __init__(self, config: Config, store: Store, settings: Settings, config_path: str | None = None) -> None:
        super().__init__(config, store, settings, config_path)
        mcp = config.mcp
        self.mcp_pins = Pins()
        self.mcp_catalog = Catalog(mcp, self.mcp_pins)
        self.mcp_policies = Policies(mcp)
        deps = McpDeps(
            catalog=self.mcp_catalog,
            policies=self.mcp_policies,
            limiter=self.limiter,
            guardrails=self.guardrails,
            audit=self.audit,
            metrics=self.prometheus if config.metrics.enabled else None,
            settings=mcp,
            auth=self.auth,
            master_key=settings.master_key.encode(),
        )
        self.mcp_calls = ToolCalls(deps)
        self.mcp_rest = McpRest(self.mcp_calls)
        endpoint = McpEndpoint(self.mcp_calls)
        self.routes["/mcp"] = {"POST": endpoint, "GET": endpoint, "DELETE": endpoint}

    async def __rsgi__(self, scope: Scope, proto: HTTPProtocol) -> None:
        if scope.path.startswith(PREFIX):  # what app.py's dispatch is to do before its 404
            self._seq += 1
            rid = f"{self._rid_prefix}{self._seq:012x}"
            await self.mcp_rest(scope, proto, [("x-request-id", rid)], rid)
            return
        await super().__rsgi__(scope, proto)

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__rsgi_init__(loop)
        loop.run_until_complete(self.mcp_catalog.start())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.mcp_catalog.close())
        super().__rsgi_del__(loop)


def create_app() -> McpGateway:
    """Granian's factory: the configuration of ``FERROGATE_CONFIG``, the store of ``FERROGATE_DATABASE_URL``."""
    settings = Settings.from_env()
    path = os.environ["FERROGATE_CONFIG"]
    return McpGateway(load_config(path), open_store(settings.database_url), settings, config_path=path)
