"""Store-backed commands: ``ferrogate migrate``, ``ferrogate keys ...``, ``ferrogate teams ...``,
``ferrogate audit verify|export``.

They open the same store as the server (``FERROGATE_DATABASE_URL``) and hash keys under the
same master key (``FERROGATE_MASTER_KEY``, or the dev key with ``--dev``), so a key created
here works on the server at once. Their changes enter the audit trail with the actor ``cli``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from ferrogate.audit.events import admin_event
from ferrogate.audit.verify import Report, export_lines, read_export, verify_records, verify_store
from ferrogate.auth.keys import KeyHasher, display_prefix, new_key
from ferrogate.server.settings import Settings, SettingsError
from ferrogate.store import Store, open_store
from ferrogate.store.errors import InvalidValue, StoreError

#: The actor of changes made with these commands, in the audit trail.
CLI_ACTOR = "cli"


async def prepare_store(url: str | None) -> None:
    """Make the store usable at start: SQLite (the embedded default) migrates itself; PostgreSQL
    must already be at this code's schema (``ferrogate migrate``), else :class:`SchemaError`."""
    store = open_store(url)
    try:
        if store.kind == "sqlite":
            await store.migrate()
        else:
            await store.check_schema()
    finally:
        await store.close()


def add_manage_commands(sub: Any) -> None:
    """Register ``migrate``, ``keys``, ``teams`` and ``audit`` on the top-level subparsers."""
    migrate = sub.add_parser("migrate", help="apply the store's pending migrations")
    migrate.set_defaults(func=_run(_migrate, needs_key=False, migrate_first=False))

    keys = sub.add_parser("keys", help="virtual and admin keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create a key; prints its secret once")
    create.add_argument("--name", required=True)
    create.add_argument("--team", dest="team_id", help="team id (required for member and team_admin keys)")
    create.add_argument("--user", dest="user_id")
    create.add_argument("--role", default="member", choices=["member", "admin", "team_admin", "auditor"])
    create.add_argument("--models", nargs="*", help="model globs narrowing the team's")
    create.add_argument("--expires-in-days", type=float)
    _limit_args(create)
    create.set_defaults(func=_run(_keys_create))
    listing = keys.add_parser("list", help="list keys (JSON lines)")
    listing.add_argument("--team", dest="team_id")
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(func=_run(_keys_list, needs_key=False))
    revoke = keys.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_id")
    revoke.set_defaults(func=_run(_keys_revoke, needs_key=False))
    rotate = keys.add_parser("rotate", help="new secret; the old one works for --grace-hours more")
    rotate.add_argument("key_id")
    rotate.add_argument("--grace-hours", type=float, default=24.0)
    rotate.set_defaults(func=_run(_keys_rotate))

    teams = sub.add_parser("teams", help="teams").add_subparsers(dest="teams_command", required=True)
    tcreate = teams.add_parser("create", help="create a team")
    tcreate.add_argument("--name", required=True)
    tcreate.add_argument("--models", nargs="*", default=["*"], help="allowed model globs")
    _limit_args(tcreate)
    tcreate.set_defaults(func=_run(_teams_create, needs_key=False))
    tlist = teams.add_parser("list", help="list teams (JSON lines)")
    tlist.add_argument("--limit", type=int, default=100)
    tlist.set_defaults(func=_run(_teams_list, needs_key=False))

    audit = sub.add_parser("audit", help="the tamper-evident audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="walk the hash chain; exit 1 naming the first bad record")
    verify.add_argument("--file", type=Path, help="verify a full `ferrogate audit export` file instead of the store")
    verify.add_argument("--anchor", metavar="HASH", help="a head printed by an earlier verify: must still be there")
    verify.set_defaults(func=_audit_verify)
    export = audit_sub.add_parser("export", help="the chain as JSON lines in chain order, to stdout")
    export.add_argument("--from", dest="since", type=_when, help="ISO-8601 time (inclusive; UTC if no zone)")
    export.add_argument("--to", dest="until", type=_when, help="ISO-8601 time (exclusive)")
    export.set_defaults(func=_run(_audit_export, needs_key=False, migrate_first=False))


def _limit_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpm", type=int, help="requests per minute")
    parser.add_argument("--tpm", type=int, help="tokens per minute")
    parser.add_argument("--budget", type=float, help="USD per --budget-period")
    parser.add_argument("--budget-period", choices=["daily", "weekly", "monthly", "total"])


#: A command's work: ``None`` (or 0) for success, else the exit code.
Job = Callable[[argparse.Namespace, Store, KeyHasher | None], Awaitable[int | None]]


def _run(job: Job, needs_key: bool = True, migrate_first: bool = True) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        async def go() -> int | None:
            hasher = KeyHasher(Settings.from_env().master_key.encode()) if needs_key else None
            store = open_store(os.environ.get("FERROGATE_DATABASE_URL") or None)
            try:
                if store.kind == "sqlite" and migrate_first:  # `migrate` itself reports what it applies
                    await store.migrate()
                elif migrate_first:  # PostgreSQL is migrated by `ferrogate migrate`: refuse before any change
                    await store.check_schema()
                return await job(args, store, hasher)
            finally:
                await store.close()

        try:
            code = asyncio.run(go())
        except (StoreError, SettingsError) as exc:
            print(f"ferrogate: {exc}", file=sys.stderr)
            return 1
        return code or 0

    return run


async def _audited(store: Store, action: str, target: str, team_id: str | None, before: Any, after: Any) -> None:
    """Append the change to the audit trail (secrets removed).

    Commands that issue a secret print it first: a failing audit write (exit 1, the error on stderr) must
    not lose a key that exists.
    """
    await store.audit.append_many([admin_event(CLI_ACTOR, action, target, team_id, before, after)])


def _print(record: Any, **extra: Any) -> None:
    data = {f: getattr(record, f) for f in record.__dataclass_fields__ if f not in ("key_hash", "previous_hash")}
    sys.stdout.write(orjson.dumps({**data, **extra}, default=str).decode() + "\n")


async def _migrate(args: argparse.Namespace, store: Store, hasher: KeyHasher | None) -> None:
    applied = await store.migrate()
    print(f"schema at version {await store.schema_version()} (applied now: {applied or 'none'})")


async def _keys_create(args: argparse.Namespace, store: Store, hasher: KeyHasher | None) -> None:
    assert hasher is not None
    secret = new_key()
    expires = datetime.now(UTC) + timedelta(days=args.expires_in_days) if args.expires_in_days else None
    key = await store.keys.create(
        hasher.hash(secret),
        display_prefix(secret),
        role=args.role,
        name=args.name,
        team_id=args.team_id,
        user_id=args.user_id,
        allowed_models=args.models,
        expires_at=expires,
        rpm=args.rpm,
        tpm=args.tpm,
        budget=args.budget,
        budget_period=args.budget_period,
    )
    _print(key, key=secret)
    await _audited(store, "key.create", key.id, key.team_id, None, key)


async def _keys_list(args: argparse.Namespace, store: Store, hasher: KeyHasher | None) -> None:
    for key in (await store.keys.list(team_id=args.team_id, limit=args.limit)).items:
        _print(key)


async def _keys_revoke(args: argparse.Namespace, store: Store, hasher: KeyHasher | None) -> None:
    old = await store.keys.get(args.key_id)
    key = await store.keys.revoke(args.key_id)
    await _audited(store, "key.revoke", key.id, key.team_id, old, key)
    _print(key)


async def _keys_rotate(args: argparse.Namespace, store: Store, hasher: KeyHasher | None) -> None:
    assert hasher is not None
    secret = new_key()
    grace = datetime.now(UTC) + timedelta(hours=args.grace_hours)
    old = await store.keys.get(args.key_id)
    key = await store.keys.rotate(args.key_id, hasher.hash(secret), display_prefix(secret), grace)
    _print(key, key=secret)
    await _audited(store, "key.rotate", key.id, key.team_id, old, key)


async def _teams_create(args: argparse.Namespace, store: Store, hasher: KeyHasher | None) -> None:
    team = await store.teams.create(
        args.name,
        allowed_models=args.models,
        rpm=args.rpm,
        tpm=args.tpm,
        budget=args.budget,
        budget_period=args.budget_period,
    )
    await _audited(store, "team.create", team.id, team.id, None, team)
    _print(team)


async def _teams_list(args: argparse.Namespace, store: Store, hasher: KeyHasher | None) -> None:
    for team in (await store.teams.list(limit=args.limit)).items:
        _print(team)


# ---- audit ---------------------------------------------------------------------------------


def _when(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time (e.g. 2025-01-31T00:00:00Z)") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _verdict(report: Report) -> int:
    if report.problem is not None:
        print(f"bad: {report.problem} ({report.records} records before it are intact, head {report.head})")
        return 1
    if report.missing_anchor is not None:
        print(
            f"bad: the chain ({report.records} records, head {report.head}) does not contain the anchor "
            f"{report.missing_anchor}: records were removed from its end"
        )
        return 1
    print(f"ok: {report.records} records, head {report.head}")
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    if args.file is None:
        return _run(_audit_verify_store, needs_key=False, migrate_first=False)(args)
    try:
        report = verify_records(read_export(args.file), args.anchor)
    except (OSError, InvalidValue) as exc:
        print(f"ferrogate: {exc}", file=sys.stderr)
        return 1
    return _verdict(report)


async def _audit_verify_store(args: argparse.Namespace, store: Store, hasher: KeyHasher | None) -> int:
    return _verdict(await verify_store(store.audit, args.anchor))


async def _audit_export(args: argparse.Namespace, store: Store, hasher: KeyHasher | None) -> None:
    out = sys.stdout.buffer
    async for line in export_lines(store.audit, args.since, args.until):
        out.write(line)
    out.flush()
