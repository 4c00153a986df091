"""The route phase's table: model group name -> the deployment that serves it.

Built once per configuration. Strategies, health, capacity and failover across a group's
deployments arrive with the routing issue; today the group's first deployment cleared for the
request's classification serves (every deployment is cleared for everything unless its
``clearance`` says otherwise). A deployment with ``rpm``/``tpm`` limits has them in a
:class:`DeploymentLimits`, whose buckets the route phase takes from
(:func:`ferrogate.pipeline.limit.check_deployment`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from ferrogate.auth.identity import Identity
from ferrogate.config.model import CLASSIFICATIONS, Config
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


#: A classification's rank: a deployment serves requests ranked at most its clearance's ("": no classification).
RANK: dict[str, int] = {"": 0, **{name: rank for rank, name in enumerate(CLASSIFICATIONS)}}

#: One deployment as the route phase uses it: ``(provider, upstream model, clearance rank, limits, index)``.
Route = tuple[Provider, str, int, DeploymentLimits | None, int]


class Router:
    """Maps a requested model to ``(provider, upstream model name)``; owns the providers.

    ``limited`` maps a group name to the limits of its first deployment, for the groups whose first
    deployment has ``rpm`` or ``tpm`` set; :meth:`pick` returns the limits of the deployment it chose
    (``None`` when it has none: the route phase stays synchronous).
    """

    __slots__ = ("_models", "_routes", "limited", "providers")

    def __init__(self, config: Config, default_max_tokens: int = 4096) -> None:
        self.providers: dict[str, Provider] = {u.name: build_provider(u, default_max_tokens) for u in config.upstreams}
        #: group -> its deployments, in configuration order (the first cleared serves).
        self._routes: dict[str, tuple[Route, ...]] = {}
        self.limited: dict[str, DeploymentLimits] = {}
        for group in config.model_groups:
            routes: list[Route] = []
            for index, dep in enumerate(group.deployments):
                limits = None
                if dep.rpm is not None or dep.tpm is not None:
                    limits = DeploymentLimits(group.name, index, dep.upstream, dep.rpm, dep.tpm)
                    if index == 0:
                        self.limited[group.name] = limits
                clearance = RANK[dep.clearance]
                routes.append((self.providers[dep.upstream], dep.model or group.name, clearance, limits, index))
            self._routes[group.name] = tuple(routes)
        self._models = [
            (g.name, {"id": g.name, "object": "model", "created": 0, "owned_by": g.owned_by})
            for g in config.model_groups
        ]

    def models_for(self, identity: Identity) -> bytes:
        """The ``/v1/models`` body: the groups ``identity`` may use, in configuration order."""
        return orjson.dumps({"object": "list", "data": [m for name, m in self._models if identity.allows(name)]})

    def pick(self, ctx: RequestContext) -> DeploymentLimits | None:
        """Set ``ctx.provider``, ``ctx.upstream_model`` and ``ctx.deployment_index`` for ``ctx.model``: the
        group's first deployment cleared for ``ctx.classification``. Returns its limits (``None``: it has none).

        Raises:
            GatewayError: 404 ``model_not_found`` when no model group has that name; 403
                ``classification_not_cleared`` when none of its deployments is cleared for the classification.
        """
        routes = self._routes.get(ctx.model)
        if routes is None:
            raise GatewayError(
                ErrorKind.UNKNOWN_MODEL,
                f"The model '{ctx.model}' does not exist or you do not have access to it.",
                param="model",
            )
        rank = RANK[ctx.classification]
        for provider, upstream_model, clearance, limits, index in routes:
            if clearance >= rank:
                ctx.provider, ctx.upstream_model, ctx.deployment_index = provider, upstream_model, index
                ctx.group = ctx.model
                return limits
        raise GatewayError(
            ErrorKind.CLASSIFICATION_NOT_CLEARED,
            f"No deployment of model '{ctx.model}' is cleared for requests classified '{ctx.classification}'.",
            param="x-ferrogate-classification",
        )

    async def close(self) -> None:
        """Close every provider's connection pool."""
        for provider in self.providers.values():
            await provider.close()
