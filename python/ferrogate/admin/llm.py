"""Upstreams, model groups and routing rules on the admin plane (``/admin/v1/llm/*``), and the routing dry run.

A ``PUT`` stores a whole upstream or model group by name (replacing the configuration file's of that name, or
adding one); a ``DELETE`` deletes one (a tombstone when the file defines it; ``?restore=true`` drops the override
instead, so the file's applies again). Every write is validated as a whole new configuration (the file's with
every stored override and this change, its routing rules compiled) before it is stored: an invalid one is a 400
naming the YAML path at fault, and nothing is stored. It is then applied in this worker at once and announced to
the others (:class:`~ferrogate.routing.reload.ConfigReloader`), then audited before the answer.

An upstream's ``api_key`` (and a credential header's value: ``Authorization``, ``api-key``...) is taken only as a
``${ENV_VAR}`` reference, resolved from each worker's environment when the configuration is built; no answer shows
it (nor any header value).

Example:
    >>> check_api_key("${EU_OPENAI_KEY}") is None
    True
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ferrogate.admin import models as m
from ferrogate.admin.llm_models import (
    DeleteQuery,
    DeploymentOut,
    HealthOut,
    ModelGroupList,
    ModelGroupOut,
    RouteOut,
    RouteQuery,
    RulesIn,
    RulesOut,
    StatusOut,
    UpstreamDeploymentOut,
    UpstreamList,
    UpstreamOut,
)
from ferrogate.admin.table import Call
from ferrogate.audit.events import admin_event, is_secret
from ferrogate.config import Config, ConfigError, ModelGroup, Upstream
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.store.errors import Conflict
from ferrogate.store.routing import RULES, Kind

if TYPE_CHECKING:
    from ferrogate.admin.service import AdminService
    from ferrogate.routing.reload import ConfigReloader

_ENV_REF = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
_ATTEMPTS = 5  # a write validated against a version another change overtook is validated again, this often


class HealthSource(Protocol):
    """The instance's deployment health (``routing.health.Health``)."""

    def snapshot(self, keys: list[str]) -> list[dict[str, Any]]:
        """One health document per deployment key, in order."""
        ...


# ---- handlers ------------------------------------------------------------------------------------------------


async def list_upstreams(service: AdminService, call: Call) -> UpstreamList:
    """``GET /admin/v1/llm/upstreams``."""
    return UpstreamList(data=_upstreams(service, _config(service)))


async def put_upstream(service: AdminService, call: Call) -> UpstreamOut:
    """``PUT /admin/v1/llm/upstreams/{name}``: add or replace an upstream."""
    name, body = _name(call), call.body
    assert isinstance(body, Upstream)
    _same_name(name, body.name)
    doc = body.model_dump(mode="json", exclude_unset=True)
    if body.api_key is not None:
        check_api_key(body.api_key.get_secret_value())
        doc["api_key"] = body.api_key.get_secret_value()
    for header, value in body.headers.items():
        if is_secret(header):  # a credential header (Authorization, api-key...): a reference too
            check_api_key(value, f"headers.{header}")
    config = await _write(service, call, "upstream", name, doc)
    return next(u for u in _upstreams(service, config) if u.name == name)


async def delete_upstream(service: AdminService, call: Call) -> m.Deleted:
    """``DELETE /admin/v1/llm/upstreams/{name}``."""
    await _delete(service, call, "upstream", [u.name for u in _reloader(service).file_config.upstreams])
    return m.Deleted(id=_name(call))


async def list_model_groups(service: AdminService, call: Call) -> ModelGroupList:
    """``GET /admin/v1/llm/model_groups``."""
    return ModelGroupList(data=_groups(service, _config(service)))


async def put_model_group(service: AdminService, call: Call) -> ModelGroupOut:
    """``PUT /admin/v1/llm/model_groups/{name}``: add or replace a model group."""
    name, body = _name(call), call.body
    assert isinstance(body, ModelGroup)
    _same_name(name, body.name)
    config = await _write(service, call, "model_group", name, body.model_dump(mode="json", exclude_unset=True))
    return next(g for g in _groups(service, config) if g.name == name)


async def delete_model_group(service: AdminService, call: Call) -> m.Deleted:
    """``DELETE /admin/v1/llm/model_groups/{name}``."""
    await _delete(service, call, "model_group", [g.name for g in _reloader(service).file_config.model_groups])
    return m.Deleted(id=_name(call))


async def get_rules(service: AdminService, call: Call) -> RulesOut:
    """``GET /admin/v1/llm/rules``."""
    return await _rules_out(service)


async def put_rules(service: AdminService, call: Call) -> RulesOut:
    """``PUT /admin/v1/llm/rules``: replace the routing rules (the file's inline rules and rules file alike)."""
    body: RulesIn = call.body
    await _write(service, call, "rules", RULES, {"text": body.text})
    return await _rules_out(service)


async def delete_rules(service: AdminService, call: Call) -> RulesOut:
    """``DELETE /admin/v1/llm/rules``: drop the stored rules (the file's apply again; 404 when none are stored)."""
    if _reloader(service).overrides.rules is None:
        raise GatewayError(ErrorKind.NOT_FOUND, "no routing rules are stored (the file's are in force)", param=None)
    await _write(service, call, "rules", RULES, None, drop=True, verb="delete")
    return await _rules_out(service)


async def explain_route(service: AdminService, call: Call) -> RouteOut:
    """``POST /admin/v1/llm/route``: which deployment the described request would go to, and why."""
    body: RouteQuery = call.body
    explain = getattr(_reloader(service).router, "explain", None)
    if explain is None:
        raise GatewayError(ErrorKind.NOT_READY, "this gateway's router has no dry run")
    facts = body.model_dump()
    if facts["classification"] is None:
        facts["classification"] = _config(service).guardrails.default_classification
    return RouteOut.model_validate(explain(facts))


async def get_status(service: AdminService, call: Call) -> StatusOut:
    """``GET /admin/v1/llm/status``: this worker's reload state."""
    status = _reloader(service).status()
    return StatusOut(
        file=status.file,
        watching=status.watching,
        version=status.version,
        reloaded_at=status.reloaded_at,
        last_error=status.last_error,
        last_error_at=status.last_error_at,
        restart_needed=list(status.restart_needed),
    )


# ---- helpers -------------------------------------------------------------------------------------------------


def check_api_key(value: str, field: str = "api_key") -> None:
    """Refuse an ``api_key`` (or a credential header, ``field``) that is not exactly a ``${ENV_VAR}`` reference (a 400
    naming ``field``).

    Example:
        >>> check_api_key("sk-live-123")
        Traceback (most recent call last):
        ...
        ferrogate.errors.GatewayError: api_key must be a reference to an environment variable, ${NAME} ...
    """
    if _ENV_REF.fullmatch(value) is None:
        raise GatewayError(
            ErrorKind.INVALID_FIELD,
            f"{field} must be a reference to an environment variable, ${{NAME}} (resolved in each worker's"
            " environment): the admin API does not store secrets",
            param=field,
        )


def _reloader(service: AdminService) -> ConfigReloader:
    if service.routing is None:
        raise GatewayError(ErrorKind.NOT_READY, "this gateway does not reload its configuration")
    return service.routing


def _config(service: AdminService) -> Config:
    return service.routing.config if service.routing is not None else service.config


def _name(call: Call) -> str:
    return call.params["name"]  # a name may hold "/" (sent as %2F, decoded by the server; the route takes it)


def _same_name(path: str, body: str) -> None:
    if path != body:
        raise GatewayError(ErrorKind.INVALID_FIELD, f"name: {body!r} is not the path's {path!r}", param="name")


def _source(service: AdminService, kind: Kind, name: str) -> Literal["file", "admin"]:
    if service.routing is None:
        return "file"
    stored = service.routing.overrides.upstreams if kind == "upstream" else service.routing.overrides.model_groups
    return "admin" if name in stored else "file"


def _upstreams(service: AdminService, config: Config) -> list[UpstreamOut]:
    deployments: dict[str, list[tuple[str, str, str]]] = {u.name: [] for u in config.upstreams}
    for g in config.model_groups:
        for d in g.deployments:
            model = d.model or g.name
            deployments[d.upstream].append((g.name, model, f"{d.upstream}/{model}"))
    keys = [key for deps in deployments.values() for _, _, key in deps]
    health = iter(service.health.snapshot(keys) if service.health is not None and keys else [])
    out = []
    for u in config.upstreams:
        deps = [
            UpstreamDeploymentOut(
                group=group,
                model=model,
                key=key,
                health=HealthOut.model_validate(next(health)) if service.health is not None else None,
            )
            for group, model, key in deployments[u.name]
        ]
        out.append(
            UpstreamOut(
                name=u.name,
                provider=u.provider,
                base_url=u.base_url,
                has_api_key=u.api_key is not None,
                header_names=sorted(u.headers),
                timeouts=u.timeouts.model_dump(),
                source=_source(service, "upstream", u.name),
                deployments=deps,
            )
        )
    return out


def _groups(service: AdminService, config: Config) -> list[ModelGroupOut]:
    return [
        ModelGroupOut(
            name=g.name,
            owned_by=g.owned_by,
            aliases=list(g.aliases),
            deployments=[DeploymentOut(upstream=d.upstream, model=d.model or g.name) for d in g.deployments],
            source=_source(service, "model_group", g.name),
            definition=g,
        )
        for g in config.model_groups
    ]


async def _rules_out(service: AdminService) -> RulesOut:
    reloader = _reloader(service)
    stored = await service.store.routing.get("rules", RULES)
    routing = reloader.config.routing
    admin = stored is not None and stored.doc is not None
    return RulesOut(
        text=routing.rules,
        rules_file=None if admin else routing.rules_file,
        source="admin" if admin else "file",
        updated_at=stored.updated_at if stored else None,
        updated_by=stored.updated_by if stored else None,
        version=await service.store.routing.version(),
    )


async def _delete(service: AdminService, call: Call, kind: Kind, in_file: list[str]) -> None:
    """Delete ``kind`` ``name``: a tombstone when the file defines it, else its override dropped; with
    ``restore``, the override dropped whatever it is (the file's applies again)."""
    name, query = _name(call), call.query
    assert isinstance(query, DeleteQuery)
    reloader = _reloader(service)
    if query.restore:
        if name not in _stored(reloader, kind):
            raise GatewayError(ErrorKind.NOT_FOUND, f"{kind} {name!r} has no stored override", param="name")
        await _write(service, call, kind, name, None, drop=True, verb="restore")
        return
    if _entry(kind, name, reloader.config) is None:
        raise GatewayError(ErrorKind.NOT_FOUND, f"no {kind} named {name!r} is in force", param="name")
    await _write(service, call, kind, name, None, drop=name not in in_file, verb="delete")


def _stored(reloader: ConfigReloader, kind: Kind) -> Mapping[str, Any]:
    return reloader.overrides.upstreams if kind == "upstream" else reloader.overrides.model_groups


async def _write(
    service: AdminService,
    call: Call,
    kind: Kind,
    name: str,
    doc: dict[str, Any] | None,
    *,
    drop: bool = False,
    verb: str = "update",
) -> Config:
    """Validate, store, apply, broadcast and audit one change (``doc`` ``None``: a tombstone; ``drop``: the stored
    override removed); the configuration it makes."""
    reloader = _reloader(service)
    before = _entry(kind, name, reloader.config)
    for attempt in range(_ATTEMPTS):
        try:
            config, stored = await reloader.propose(kind, name, doc, drop=drop)
        except ConfigError as exc:
            where = exc.problems[0][0] if exc.problems else None
            text = "; ".join(f"{path}: {msg}" for path, msg in exc.problems) or str(exc)
            raise GatewayError(ErrorKind.INVALID_FIELD, text, param=where) from None
        try:
            if drop:
                await service.store.routing.delete(kind, name, expect_version=stored.version)
            else:
                await service.store.routing.put(kind, name, doc, call.principal.actor, expect_version=stored.version)
            break
        except Conflict:  # another change landed since the validation: validate again on top of it
            if attempt == _ATTEMPTS - 1:
                raise
    await reloader.apply_admin_change()
    if service.audit is not None:
        entity = "routing_rules" if kind == "rules" else kind
        event = admin_event(call.principal.actor, f"{entity}.{verb}", name, None, before, _entry(kind, name, config))
        await service.audit.record_and_flush(event)
    return config


def _entry(kind: Kind, name: str, config: Config) -> dict[str, Any] | None:
    """What the audit records of ``kind`` ``name`` in ``config`` (``None``: not in it): the upstream without its
    key (the audit leaves ``api_key`` out) and with its header values masked; the group whole; the rules."""
    if kind == "rules":
        return {"text": config.routing.rules, "rules_file": config.routing.rules_file}
    entries: list[Upstream] | list[ModelGroup] = config.upstreams if kind == "upstream" else config.model_groups
    for entry in entries:
        if entry.name == name:
            doc = entry.model_dump(mode="json")
            if isinstance(entry, Upstream):
                doc["headers"] = dict.fromkeys(entry.headers, "[redacted]")
            return doc
    return None
