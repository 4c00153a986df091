"""Guardrail policies on the admin plane: the global document, and each team's and key's override.

``PUT`` replaces a scope's whole document (``{}`` clears it: everything comes from the level above); its fields
are checked twice, by the models here (types, bounds, unknown fields) and by the worker's guardrails registry
(``Guardrails.validate``: a regex that does not compile, an action for a rule that does not exist), either
refusal a 400 naming the field or the rule. A change is stored, applied in this worker at once and announced to
the others (:class:`~ferrogate.guardrails.sync.PolicySync`), then audited (``guardrails.update``, target the
scope) before the answer. The effective policy of a request is the configuration <- global <- team <- key.

Example:
    >>> GuardrailGlobal.model_validate({"actions": {"pii": "redact"}}).actions
    {'pii': 'redact'}
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from ferrogate.admin.table import Call
from ferrogate.audit.events import admin_event, scrub
from ferrogate.config import Config
from ferrogate.config.errors import ConfigError
from ferrogate.config.model import Action, Classification, DenyPattern, UserRule
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.store.guardrails import GLOBAL, GuardrailPolicy, scope_of

if TYPE_CHECKING:
    from ferrogate.admin.service import AdminService

#: A category (secret, pii, injection, custom) or a rule id.
ActionTarget = Annotated[str, Field(min_length=1, max_length=128)]
Actions = Annotated[dict[ActionTarget, Action], Field(max_length=1000)]
DenyPatterns = Annotated[list[DenyPattern], Field(max_length=1000)]
UserRules = Annotated[list[UserRule], Field(max_length=1000)]


class GuardrailPolicies(Protocol):
    """What the admin plane needs of the worker's guardrails: checking a document, and applying a stored change
    here and everywhere (:class:`~ferrogate.guardrails.sync.PolicySync`)."""

    def validate(self, scope: str, doc: dict[str, Any]) -> object:
        """Raise (``ValueError`` or ``ConfigError``, naming the rule or field) when ``doc`` cannot apply."""
        ...

    async def changed(self) -> None:
        """Apply the store's documents in this worker now and announce the change to the others."""
        ...


# ---- models --------------------------------------------------------------------------------------------------


class GuardrailOverride(BaseModel):
    """A team's or a key's guardrail policy: each field it leaves out (or sets to null) comes from the level above
    (the key's team, the global document, the configuration)."""

    model_config = ConfigDict(extra="forbid")

    actions: Actions | None = Field(
        None, description="action (off, log, redact, block) by category or rule id; a rule id wins"
    )
    responses: bool | None = Field(None, description="scan answers too, whole and streamed")
    deny_patterns: DenyPatterns | None = Field(None, description="patterns of this scope only (category injection)")
    default_classification: Classification | None = Field(
        None, description="a request's classification without an x-ferrogate-classification header"
    )


class GuardrailGlobal(GuardrailOverride):
    """The global guardrail policy: an override of the configuration for everyone, which may also add rules."""

    rules: UserRules | None = Field(None, description="rules added to the configuration's (ids must be new)")


class RuleOut(BaseModel):
    """A built-in rule: its id, category, what it finds, and its action before any policy document."""

    id: str
    category: Literal["secret", "pii", "injection", "custom"]
    description: str
    default_action: Action = Field(description="from the configuration's guardrails.actions (rule id, else category)")


class GuardrailsOut(BaseModel):
    """The global guardrail policy as stored, and the built-in rules it can set actions for."""

    scope: Literal["global"]
    policy: GuardrailGlobal
    updated_at: datetime | None = Field(description="null: never set")
    updated_by: str | None = Field(description='an admin key id or "master"')
    version: int = Field(description="the store's policy version: it rises with every change of any scope")
    builtin_rules: list[RuleOut]


class GuardrailOverrideOut(BaseModel):
    """A team's or a key's guardrail override as stored."""

    scope: str = Field(description="team:<team id> or key:<key id>")
    policy: GuardrailOverride
    updated_at: datetime | None = Field(description="null: never set")
    updated_by: str | None = Field(description='an admin key id or "master"')
    version: int = Field(description="the store's policy version: it rises with every change of any scope")


# ---- handlers ------------------------------------------------------------------------------------------------


async def get_guardrails(service: AdminService, call: Call) -> GuardrailsOut:
    """``GET /admin/v1/guardrails``."""
    stored = await service.store.guardrails.get(GLOBAL)
    return _global_out(service, stored, await service.store.guardrails.version())


async def put_guardrails(service: AdminService, call: Call) -> GuardrailsOut:
    """``PUT /admin/v1/guardrails``: replace the global document."""
    stored, version = await _put(service, call, GLOBAL, None)
    return _global_out(service, stored, version)


async def get_team_guardrails(service: AdminService, call: Call) -> GuardrailOverrideOut:
    """``GET /admin/v1/teams/{team_id}/guardrails`` (404 for an unknown team, or another team's for a team
    admin)."""
    scope, _ = await _team_scope(service, call)
    return await _override_out(service, scope)


async def put_team_guardrails(service: AdminService, call: Call) -> GuardrailOverrideOut:
    """``PUT /admin/v1/teams/{team_id}/guardrails``: replace the team's override."""
    scope, team_id = await _team_scope(service, call)
    stored, version = await _put(service, call, scope, team_id)
    return _override(scope, stored, version)


async def get_key_guardrails(service: AdminService, call: Call) -> GuardrailOverrideOut:
    """``GET /admin/v1/keys/{key_id}/guardrails`` (404 for an unknown key, or one a team admin may not see)."""
    scope, _ = await _key_scope(service, call)
    return await _override_out(service, scope)


async def put_key_guardrails(service: AdminService, call: Call) -> GuardrailOverrideOut:
    """``PUT /admin/v1/keys/{key_id}/guardrails``: replace the key's override."""
    scope, team_id = await _key_scope(service, call)
    stored, version = await _put(service, call, scope, team_id)
    return _override(scope, stored, version)


# ---- helpers -------------------------------------------------------------------------------------------------


async def _team_scope(service: AdminService, call: Call) -> tuple[str, str]:
    team_id = call.params["team_id"]
    service.scope_team(call.principal, team_id, "team", team_id)
    await service.store.teams.get(team_id)  # NotFound: 404 naming team_id
    return scope_of("team", team_id), team_id


async def _key_scope(service: AdminService, call: Call) -> tuple[str, str | None]:
    key = await service.scoped_key(call)
    return scope_of("key", key.id), key.team_id


async def _put(service: AdminService, call: Call, scope: str, team_id: str | None) -> tuple[GuardrailPolicy, int]:
    """Check, store, propagate and audit ``call.body`` as the document of ``scope``."""
    body: GuardrailOverride = call.body
    doc = body.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    if service.policies is not None:
        _check(service.policies, scope, doc)
    old = await service.store.guardrails.get(scope)
    new = await service.store.guardrails.put(scope, doc, call.principal.actor)
    if service.policies is not None:
        await service.policies.changed()
    version = await service.store.guardrails.version()
    if service.audit is not None:
        event = admin_event(call.principal.actor, "guardrails.update", scope, team_id)
        event.data = _audit_data(None if old is None else old.doc, new.doc)
        await service.audit.record_and_flush(event)
    return new, version


def _check(policies: GuardrailPolicies, scope: str, doc: dict[str, Any]) -> None:
    """``Guardrails.validate`` as a 400 naming the rule or field."""
    try:
        policies.validate(scope, doc)
    except ConfigError as exc:
        where, message = exc.problems[0] if exc.problems else ("", str(exc))
        text = f"{where}: {message}" if where else message
        raise GatewayError(ErrorKind.INVALID_FIELD, text, param=where or None) from None
    except ValueError as exc:
        raise GatewayError(ErrorKind.INVALID_FIELD, str(exc), param=getattr(exc, "param", None)) from None


def _audit_data(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    """The audit record's data: both documents whole (a category named ``secret`` or a rule's ``secret_group``
    is not a secret, so field names are kept), credential-shaped text in them redacted, and the fields changed.

    Example:
        >>> _audit_data(None, {"actions": {"secret": "block"}})
        {'before': None, 'after': {'actions': {'secret': 'block'}}, 'changed': ['actions']}
    """
    old, new = _scrub_values(before), _scrub_values(after)
    changed = sorted(k for k in (old or {}).keys() | new.keys() if (old or {}).get(k) != new.get(k))
    return {"before": old, "after": new, "changed": changed}


def _scrub_values(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _scrub_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_values(v) for v in value]
    return scrub(value)


def _global_out(service: AdminService, stored: GuardrailPolicy | None, version: int) -> GuardrailsOut:
    return GuardrailsOut(
        scope="global",
        policy=GuardrailGlobal.model_validate(stored.doc if stored else {}),
        updated_at=stored.updated_at if stored else None,
        updated_by=stored.updated_by if stored else None,
        version=version,
        builtin_rules=builtin_rules(service.config),
    )


async def _override_out(service: AdminService, scope: str) -> GuardrailOverrideOut:
    stored = await service.store.guardrails.get(scope)
    return _override(scope, stored, await service.store.guardrails.version())


def _override(scope: str, stored: GuardrailPolicy | None, version: int) -> GuardrailOverrideOut:
    return GuardrailOverrideOut(
        scope=scope,
        policy=GuardrailOverride.model_validate(stored.doc if stored else {}),
        updated_at=stored.updated_at if stored else None,
        updated_by=stored.updated_by if stored else None,
        version=version,
    )


@functools.cache
def _builtin(actions: tuple[tuple[str, Action], ...]) -> list[RuleOut]:
    from ferrogate.guardrails.rules import builtin_rules as core_rules  # the Rust core's rule table

    table = dict(actions)
    return [
        RuleOut(
            id=rule.id,
            category=rule.category,
            description=str(rule.core.get("description", "")),
            default_action=table.get(rule.id) or table.get(rule.category) or "off",
        )
        for rule in core_rules()
    ]


def builtin_rules(config: Config) -> list[RuleOut]:
    """The core's built-in rules, each with the action the configuration gives it (computed once per
    configuration)."""
    return _builtin(tuple(sorted(config.guardrails.actions.items())))
