"""The route phase's table: model group name -> the deployment that serves it.

Built once per configuration. Strategies, health, capacity and failover across a group's
deployments arrive with the routing issue; today the group's first deployment serves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from ferrogate.auth.identity import Identity
from ferrogate.config.model import Config
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.providers import Provider, build_provider

if TYPE_CHECKING:
    from ferrogate.pipeline.context import RequestContext


class Router:
    """Maps a requested model to ``(provider, upstream model name)``; owns the providers."""

    __slots__ = ("_models", "_routes", "providers")

    def __init__(self, config: Config) -> None:
        self.providers: dict[str, Provider] = {u.name: build_provider(u) for u in config.upstreams}
        self._routes: dict[str, tuple[Provider, str]] = {}
        for group in config.model_groups:
            first = group.deployments[0]
            self._routes[group.name] = (self.providers[first.upstream], first.model or group.name)
        self._models = [
            (g.name, {"id": g.name, "object": "model", "created": 0, "owned_by": g.owned_by})
            for g in config.model_groups
        ]

    def models_for(self, identity: Identity) -> bytes:
        """The ``/v1/models`` body: the groups ``identity`` may use, in configuration order."""
        return orjson.dumps({"object": "list", "data": [m for name, m in self._models if identity.allows(name)]})

    def pick(self, ctx: RequestContext) -> None:
        """Set ``ctx.provider`` and ``ctx.upstream_model`` for ``ctx.model``.

        Raises:
            GatewayError: 404 ``model_not_found`` when no model group has that name.
        """
        found = self._routes.get(ctx.model)
        if found is None:
            raise GatewayError(
                ErrorKind.UNKNOWN_MODEL,
                f"The model '{ctx.model}' does not exist or you do not have access to it.",
                param="model",
            )
        ctx.provider, ctx.upstream_model = found
        ctx.group = ctx.model

    async def close(self) -> None:
        """Close every provider's connection pool."""
        for provider in self.providers.values():
            await provider.close()
