"""The route phase's table: model group name -> the deployment that serves it.

Built once per configuration. Strategies, health, capacity and failover across a group's
deployments arrive with the routing issue; today the group's first deployment serves. A
deployment with ``rpm``/``tpm`` limits is listed in :attr:`Router.limited`, whose buckets the
route phase takes from (:func:`ferrogate.pipeline.limit.check_deployment`).
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


class DeploymentLimits:
    """The rate limits of one deployment, with its bucket keys (``d:<group>:<index>:rpm``/``:tpm``).

    Example:
        >>> d = DeploymentLimits("gpt", 0, "openai-eu", rpm=2, tpm=None)
        >>> d.rpm_key, d.subject
        ('d:gpt:0:rpm', "model group 'gpt' (its deployment on upstream 'openai-eu')")
    """

    __slots__ = ("rpm", "rpm_key", "subject", "tpm", "tpm_key")

    def __init__(self, group: str, index: int, upstream: str, rpm: int | None, tpm: int | None) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.rpm_key = f"d:{group}:{index}:rpm"
        self.tpm_key = f"d:{group}:{index}:tpm"
        #: What a refusal names (clients see the group and the upstream, never its URL or key).
        self.subject = f"model group '{group}' (its deployment on upstream '{upstream}')"


class Router:
    """Maps a requested model to ``(provider, upstream model name)``; owns the providers.

    ``limited`` maps a group name to the limits of the deployment that serves it, for the groups
    whose deployment has ``rpm`` or ``tpm`` set (empty when none has: the route phase checks that
    first and stays synchronous).
    """

    __slots__ = ("_models", "_routes", "limited", "providers")

    def __init__(self, config: Config, default_max_tokens: int = 4096) -> None:
        self.providers: dict[str, Provider] = {u.name: build_provider(u, default_max_tokens) for u in config.upstreams}
        self._routes: dict[str, tuple[Provider, str]] = {}
        self.limited: dict[str, DeploymentLimits] = {}
        for group in config.model_groups:
            first = group.deployments[0]
            self._routes[group.name] = (self.providers[first.upstream], first.model or group.name)
            if first.rpm is not None or first.tpm is not None:
                self.limited[group.name] = DeploymentLimits(group.name, 0, first.upstream, first.rpm, first.tpm)
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
