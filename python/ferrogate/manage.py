"""Store-backed commands: ``ferrogate migrate``, ``ferrogate keys ...``, ``ferrogate teams ...``.

They open the same store as the server (``FERROGATE_DATABASE_URL``) and hash keys under the
same master key (``FERROGATE_MASTER_KEY``, or the dev key with ``--dev``), so a key created
here works on the server at once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ferrogate.auth.keys import KeyHasher, display_prefix, new_key
from ferrogate.server.settings import Settings, SettingsError
from ferrogate.store import Store, open_store
from ferrogate.store.errors import StoreError


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
    """Register ``migrate``, ``keys`` and ``teams`` on the top-level subparsers."""
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


def _limit_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpm", type=int, help="requests per minute")
    parser.add_argument("--tpm", type=int, help="tokens per minute")
    parser.add_argument("--budget", type=float, help="USD per --budget-period")
    parser.add_argument("--budget-period", choices=["daily", "weekly", "monthly", "total"])


Job = Callable[[argparse.Namespace, Store, KeyHasher | None], Awaitable[None]]


def _run(job: Job, needs_key: bool = True, migrate_first: bool = True) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        async def go() -> None:
            hasher = KeyHasher(Settings.from_env().master_key.encode()) if needs_key else None
            store = open_store(os.environ.get("FERROGATE_DATABASE_URL") or None)
            try:
                if store.kind == "sqlite" and migrate_first:  # `migrate` itself reports what it applies
                    await store.migrate()
                await job(args, store, hasher)
            finally:
                await store.close()

        try:
            asyncio.run(go())
        except (StoreError, SettingsError) as exc:
            print(f"ferrogate: {exc}", file=sys.stderr)
            return 1
        return 0

    return run


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


async def _keys_list(args: argparse.Namespace, store: Store, hasher: KeyHasher | None) -> None:
    for key in (await store.keys.list(team_id=args.team_id, limit=args.limit)).items:
        _print(key)


async def _keys_revoke(args: argparse.Namespace, store: Store, hasher: KeyHasher | None) -> None:
    _print(await store.keys.revoke(args.key_id))


async def _keys_rotate(args: argparse.Namespace, store: Store, hasher: KeyHasher | None) -> None:
    assert hasher is not None
    secret = new_key()
    grace = datetime.now(UTC) + timedelta(hours=args.grace_hours)
    _print(await store.keys.rotate(args.key_id, hasher.hash(secret), display_prefix(secret), grace), key=secret)


async def _teams_create(args: argparse.Namespace, store: Store, hasher: KeyHasher | None) -> None:
    team = await store.teams.create(
        args.name,
        allowed_models=args.models,
        rpm=args.rpm,
        tpm=args.tpm,
        budget=args.budget,
        budget_period=args.budget_period,
    )
    _print(team)


async def _teams_list(args: argparse.Namespace, store: Store, hasher: KeyHasher | None) -> None:
    for team in (await store.teams.list(limit=args.limit)).items:
        _print(team)
