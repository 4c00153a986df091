"""What the admin routes do: each handler takes the service and one :class:`~.table.Call`.

``team_admin`` callers are scoped to their own team: other teams' objects answer 404 (their
existence is not revealed), lists are filtered to the team, and they may create only
``member`` keys and ``member``/``team_admin`` users there.

Every change (create, update, delete of teams, users and keys; key revoke and rotate; guardrail policies, in
:mod:`ferrogate.admin.guardrails`; upstreams, model groups and routing rules, in :mod:`ferrogate.admin.llm`; MCP
servers, approvals and tool policies, in :mod:`ferrogate.admin.mcp`) leaves
an audit event (actor, action, target, the object before and after, secrets removed) that is durable, in the store
or in the audit spool, before the handler answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ferrogate.admin import models as m
from ferrogate.admin.guardrails import GuardrailPolicies
from ferrogate.admin.llm import HealthSource
from ferrogate.admin.mcp_models import McpAdmin
from ferrogate.admin.rbac import Principal, Role
from ferrogate.admin.table import Call
from ferrogate.audit.events import admin_event
from ferrogate.audit.writer import AuditWriter
from ferrogate.auth.keys import KeyHasher, display_prefix, new_key
from ferrogate.config import Config
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.store import Store
from ferrogate.store.errors import NotFound
from ferrogate.store.records import Key

if TYPE_CHECKING:
    from ferrogate.routing.reload import ConfigReloader


def _key_out(key: Key) -> m.KeyOut:
    return m.KeyOut.model_validate(key)


def _secret(key: Key, secret: str) -> m.KeySecret:
    return m.KeySecret.model_validate({**m.KeyOut.model_validate(key).model_dump(), "key": secret})


def _aware(when: datetime | None) -> datetime | None:
    """A query timestamp without a zone is UTC."""
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when


def _forbidden(message: str) -> GatewayError:
    return GatewayError(ErrorKind.PERMISSION_DENIED, message)


class AdminService:
    """The admin plane's state: the store, the configuration, the key hasher, cache invalidation, the audit
    writer (``None``: changes are not audited), the worker's guardrail policies (``None``: documents are stored
    unchecked by the registry, and running workers pick them up by polling), the worker's configuration reloader
    (``None``: the ``/llm`` listings show ``config`` and writes answer 503), the instance's deployment health
    (``None``: listings show ``health: null``) and the worker's MCP tool gateway (``None``: the ``/mcp`` listings show
    ``status: null``, writes and approvals answer 503)."""

    def __init__(
        self,
        store: Store,
        config: Config,
        hasher: KeyHasher,
        invalidate: Callable[[str | None], Awaitable[None]],
        audit: AuditWriter | None = None,
        policies: GuardrailPolicies | None = None,
        routing: ConfigReloader | None = None,
        health: HealthSource | None = None,
        mcp: McpAdmin | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.hasher = hasher
        self.invalidate = invalidate  # drop a key hash (or everything) from every auth cache
        self.audit = audit
        self.policies = policies  # checks guardrail documents and applies a change everywhere (None: store only)
        self.routing = routing  # the running configuration: upstreams, model groups, routing rules
        self.health = health  # Health.snapshot(keys) for GET /admin/v1/llm/upstreams
        self.mcp = mcp  # catalog status, pins, tool policies, the credential sealer, the change feed of store.mcp

    async def _audited(
        self, call: Call, action: str, target: str, team_id: str | None, before: Any, after: Any
    ) -> None:
        """Record the change in the audit trail (scrubbed of secrets); returns once the event is durable."""
        if self.audit is not None:
            event = admin_event(call.principal.actor, action, target, team_id, before, after)
            await self.audit.record_and_flush(event)

    # ---- scoping ----

    def scope_team(self, who: Principal, team_id: str | None, entity: str, id: str) -> None:
        """Raise :class:`NotFound` (``entity`` ``id``) when ``who`` may not see objects of ``team_id``."""
        if not who.sees_team(team_id):
            raise NotFound(entity, id)

    def _own_team(self, who: Principal, team_id: str | None) -> str | None:
        """The team a list is restricted to: the caller's for a team admin, else the filter given."""
        if who.role is Role.TEAM_ADMIN:
            if team_id is not None and team_id != who.team_id:
                raise _forbidden("a team admin sees only its own team")
            return who.team_id
        return team_id

    # ---- teams ----

    async def create_team(self, call: Call) -> m.TeamOut:
        body: m.TeamCreate = call.body
        team = await self.store.teams.create(body.name, **body.model_dump(exclude={"name"}))
        await self._audited(call, "team.create", team.id, team.id, None, team)
        return m.TeamOut.model_validate(team)

    async def list_teams(self, call: Call) -> m.TeamList:
        q: m.TeamQuery = call.query
        who = call.principal
        if who.role is Role.TEAM_ADMIN:
            own = await self.store.teams.get(who.team_id or "")
            return m.TeamList(data=[m.TeamOut.model_validate(own)], next_cursor=None)
        page = await self.store.teams.list(name_prefix=q.name_prefix, limit=q.limit, cursor=q.cursor)
        return m.TeamList(data=[m.TeamOut.model_validate(t) for t in page.items], next_cursor=page.next_cursor)

    async def get_team(self, call: Call) -> m.TeamOut:
        team_id = call.params["team_id"]
        self.scope_team(call.principal, team_id, "team", team_id)
        return m.TeamOut.model_validate(await self.store.teams.get(team_id))

    async def update_team(self, call: Call) -> m.TeamOut:
        body: m.TeamUpdate = call.body
        team_id = call.params["team_id"]
        old = await self.store.teams.get(team_id) if self.audit is not None else None
        team = await self.store.teams.update(team_id, body.model_dump(exclude_unset=True))
        await self.invalidate(None)  # the team's model list feeds every one of its keys' identities
        await self._audited(call, "team.update", team.id, team.id, old, team)
        return m.TeamOut.model_validate(team)

    async def delete_team(self, call: Call) -> m.Deleted:
        team_id = call.params["team_id"]
        old = await self.store.teams.get(team_id) if self.audit is not None else None
        await self.store.teams.delete(team_id)
        await self.invalidate(None)
        await self._audited(call, "team.delete", team_id, team_id, old, None)
        return m.Deleted(id=team_id)

    # ---- users ----

    async def create_user(self, call: Call) -> m.UserOut:
        body: m.UserCreate = call.body
        who = call.principal
        if who.role is Role.TEAM_ADMIN:
            if body.team_id != who.team_id:
                raise _forbidden("a team admin creates users only in its own team")
            if body.role not in ("member", "team_admin"):
                raise _forbidden(f"a team admin cannot create a user with role {body.role!r}")
        fields = body.model_dump(exclude={"team_id", "name", "metadata"})
        user = await self.store.users.create(body.team_id, body.name, metadata=body.metadata, **fields)
        await self._audited(call, "user.create", user.id, user.team_id, None, user)
        return m.UserOut.model_validate(user)

    async def list_users(self, call: Call) -> m.UserList:
        q: m.UserQuery = call.query
        team_id = self._own_team(call.principal, q.team_id)
        page = await self.store.users.list(team_id=team_id, role=q.role, limit=q.limit, cursor=q.cursor)
        return m.UserList(data=[m.UserOut.model_validate(u) for u in page.items], next_cursor=page.next_cursor)

    async def _user(self, call: Call) -> Any:
        user_id = call.params["user_id"]
        user = await self.store.users.get(user_id)
        self.scope_team(call.principal, user.team_id, "user", user_id)
        return user

    async def get_user(self, call: Call) -> m.UserOut:
        return m.UserOut.model_validate(await self._user(call))

    async def update_user(self, call: Call) -> m.UserOut:
        body: m.UserUpdate = call.body
        old = await self._user(call)
        if call.principal.role is Role.TEAM_ADMIN and body.role not in (None, "member", "team_admin"):
            raise _forbidden(f"a team admin cannot give role {body.role!r}")
        user = await self.store.users.update(call.params["user_id"], body.model_dump(exclude_unset=True))
        await self._audited(call, "user.update", user.id, user.team_id, old, user)
        return m.UserOut.model_validate(user)

    async def delete_user(self, call: Call) -> m.Deleted:
        old = await self._user(call)
        await self.store.users.delete(call.params["user_id"])
        await self._audited(call, "user.delete", old.id, old.team_id, old, None)
        return m.Deleted(id=call.params["user_id"])

    # ---- keys ----

    async def create_key(self, call: Call) -> m.KeySecret:
        body: m.KeyCreate = call.body
        who = call.principal
        if who.role is Role.TEAM_ADMIN:
            if body.role != "member":
                raise _forbidden("a team admin creates only member keys")
            if body.team_id not in (None, who.team_id):
                raise _forbidden("a team admin creates keys only in its own team")
            body = body.model_copy(update={"team_id": who.team_id})
        if body.role in ("member", "team_admin") and body.team_id is None:
            raise GatewayError(ErrorKind.INVALID_FIELD, f"a {body.role} key needs a team_id", param="team_id")
        if body.user_id is not None:
            user = await self.store.users.get(body.user_id)
            self.scope_team(who, user.team_id, "user", body.user_id)  # another team's user: 404, as unknown
            if user.team_id != body.team_id:
                raise GatewayError(
                    ErrorKind.INVALID_FIELD, f"user {body.user_id} is not in team {body.team_id}", param="user_id"
                )
        if body.expires_at is not None and body.expires_at.tzinfo is None:
            body = body.model_copy(update={"expires_at": body.expires_at.replace(tzinfo=UTC)})
        secret = new_key()
        fields = body.model_dump(exclude={"metadata"})
        key = await self.store.keys.create(
            self.hasher.hash(secret), display_prefix(secret), metadata=body.metadata, **fields
        )
        await self._audited(call, "key.create", key.id, key.team_id, None, key)
        return _secret(key, secret)

    async def list_keys(self, call: Call) -> m.KeyList:
        q: m.KeyQuery = call.query
        team_id = self._own_team(call.principal, q.team_id)
        role = q.role
        if call.principal.role is Role.TEAM_ADMIN:  # as in _key: a team admin sees only member keys
            if role not in (None, "member"):
                raise _forbidden("a team admin sees only member keys")
            role = "member"
        page = await self.store.keys.list(
            team_id=team_id,
            user_id=q.user_id,
            role=role,
            revoked=q.revoked,
            name_prefix=q.name_prefix,
            limit=q.limit,
            cursor=q.cursor,
        )
        return m.KeyList(data=[_key_out(k) for k in page.items], next_cursor=page.next_cursor)

    async def scoped_key(self, call: Call) -> Key:
        """The key of ``call``'s ``key_id``, or :class:`NotFound` when unknown or not the caller's to see (a team
        admin sees its own team's member keys only)."""
        key_id = call.params["key_id"]
        key = await self.store.keys.get(key_id)
        self.scope_team(call.principal, key.team_id, "key", key_id)
        if call.principal.role is Role.TEAM_ADMIN and key.role != "member":
            raise NotFound("key", key_id)
        return key

    async def get_key(self, call: Call) -> m.KeyOut:
        return _key_out(await self.scoped_key(call))

    async def update_key(self, call: Call) -> m.KeyOut:
        body: m.KeyUpdate = call.body
        old = await self.scoped_key(call)
        changes = body.model_dump(exclude_unset=True)
        if isinstance(changes.get("expires_at"), datetime) and changes["expires_at"].tzinfo is None:
            changes["expires_at"] = changes["expires_at"].replace(tzinfo=UTC)
        key = await self.store.keys.update(old.id, changes)
        await self._forget(old)
        await self._audited(call, "key.update", key.id, key.team_id, old, key)
        return _key_out(key)

    async def delete_key(self, call: Call) -> m.Deleted:
        old = await self.scoped_key(call)
        await self.store.keys.delete(old.id)
        await self._forget(old)
        await self._audited(call, "key.delete", old.id, old.team_id, old, None)
        return m.Deleted(id=old.id)

    async def revoke_key(self, call: Call) -> m.KeyOut:
        old = await self.scoped_key(call)
        key = await self.store.keys.revoke(old.id)
        await self._forget(old)
        await self._audited(call, "key.revoke", key.id, key.team_id, old, key)
        return _key_out(key)

    async def rotate_key(self, call: Call) -> m.KeySecret:
        body: m.KeyRotate = call.body
        old = await self.scoped_key(call)
        if old.revoked_at is not None:
            raise GatewayError(ErrorKind.CONFLICT, f"key {old.id} is revoked; create a new one", param="key_id")
        secret = new_key()
        grace_until = datetime.now(UTC) + timedelta(seconds=body.grace_period_s)
        key = await self.store.keys.rotate(old.id, self.hasher.hash(secret), display_prefix(secret), grace_until)
        await self._forget(old)
        await self._audited(call, "key.rotate", key.id, key.team_id, old, key)
        return _secret(key, secret)

    async def _forget(self, key: Key) -> None:
        await self.invalidate(key.key_hash)
        if key.previous_hash is not None:
            await self.invalidate(key.previous_hash)

    # ---- usage ----

    async def usage(self, call: Call) -> m.UsageList:
        q: m.UsageQuery = call.query
        team_id = self._own_team(call.principal, q.team_id)
        since, until = (_aware(t) for t in (q.since, q.until))
        page = await self.store.usage.summary(
            team_id=team_id,
            key_id=q.key_id,
            user_id=q.user_id,
            model=q.model,
            since=since,
            until=until,
            group_by=q.group_by,
            limit=q.limit,
            cursor=q.cursor,
        )
        return m.UsageList(data=[m.UsageRowOut.model_validate(r) for r in page.items], next_cursor=page.next_cursor)

    # ---- audit ----

    async def list_audit(self, call: Call) -> m.AuditList:
        q: m.AuditQuery = call.query
        team_id = self._own_team(call.principal, q.team_id)  # admin and auditor: the filter as given
        since, until = (_aware(t) for t in (q.since, q.until))
        page = await self.store.audit.list(
            actor=q.actor,
            team_id=team_id,
            action=q.action,
            kind=q.kind,
            target=q.target,
            since=since,
            until=until,
            limit=q.limit,
            cursor=q.cursor,
        )
        return m.AuditList(data=[m.AuditOut.of(r) for r in page.items], next_cursor=page.next_cursor)
