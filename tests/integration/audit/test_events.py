"""Admin events from real store records: secrets and key hashes never reach the trail; before/after/changed."""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from pydantic import BaseModel

from ferrogate.audit import admin_event, is_secret, scrub
from ferrogate.store.audit import canonical
from ferrogate.store.fields import stamp
from ferrogate.store.sql import SqlStore
from tests.integration.store.conftest import key_hash

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("key_hash", True),
        ("previous_hash", True),
        ("key", True),
        ("api_key", True),
        ("X-Api-Key", True),
        ("webhook_secret", True),
        ("client_secret", True),
        ("password", True),
        ("db_password", True),
        ("token", True),
        ("access_token", True),
        ("Authorization", True),
        ("key_id", False),
        ("prefix", False),
        ("prompt_tokens", False),
        ("max_tokens", False),
        ("name", False),
        ("budget_period", False),
    ],
)
def test_is_secret(name: str, secret: bool) -> None:
    assert is_secret(name) is secret


def test_scrub_makes_plain_json_without_secrets() -> None:
    class Color(enum.Enum):
        RED = "red"

    class Model(BaseModel):
        name: str
        api_key: str

    at = datetime(2025, 1, 1, 12, tzinfo=UTC)
    value = {"m": Model(name="x", api_key="sk-live"), "c": Color.RED, "at": at, "t": (1, {"token": "t"}), "o": 1j}
    assert scrub(value) == {
        "m": {"name": "x"},
        "c": "red",
        "at": "2025-01-01T12:00:00.000000Z",
        "t": [1, {}],
        "o": "1j",
    }
    canonical(scrub(value))  # serialisable as is


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rotate sk-proj-AbCdEf0123456789xyz soon", "rotate [redacted] soon"),
        ("fg-Zq3" + "A" * 40, "[redacted]"),  # a whole virtual key
        ("fg-abc12", "fg-abc12"),  # a key's display prefix is not a secret
        ("fg-platform-engineering-team", "fg-platform-engineering-team"),  # slugs are names, not keys
        ("sk-learn-pipeline-prod", "sk-learn-pipeline-prod"),
        ("my-fg-Zq3" + "A" * 40, "my-fg-Zq3" + "A" * 40),  # not a key's start
        ("AKIAIOSFODNN7EXAMPLE", "[redacted]"),
        ("ghp_" + "a" * 36, "[redacted]"),
        ("Authorization: Bearer abc.def-123456789", "Authorization: [redacted]"),
        ("Bearer Industries Ltd", "Bearer Industries Ltd"),
        ("requires bearer credentials", "requires bearer credentials"),
        ("https://bot:hunter2@hooks.example.com/x?y=1", "https://[redacted]@hooks.example.com/x?y=1"),
        ("redis://:hunter2@redis:6379/0", "redis://[redacted]@redis:6379/0"),
        ("postgres://u:ab/cd@h/db", "postgres://[redacted]@h/db"),
        ("https://u:p@ss@h/x", "https://[redacted]@h/x"),
        ("https://hooks.example.com/x", "https://hooks.example.com/x"),
        ("https://hooks.example.com/a:b", "https://hooks.example.com/a:b"),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("key_0123456789abcdef", "key_0123456789abcdef"),
        ("2026-11-25T12:00:00.000000Z", "2026-11-25T12:00:00.000000Z"),
    ],
)
def test_scrub_redacts_credentials_by_their_shape(text: str, expected: str) -> None:
    assert scrub({"metadata": {"note": text}, "names": [text]}) == {"metadata": {"note": expected}, "names": [expected]}


async def test_key_changes_never_carry_the_hash(store: SqlStore) -> None:
    team = await store.teams.create("ml", metadata={"owner": "ana", "deploy_token": "ghp_secret"})
    first, second = key_hash("a"), key_hash("b")
    created = await store.keys.create(first, "fg-abc", name="ci", team_id=team.id, metadata={"password": "hunter2"})
    rotated = await store.keys.rotate(created.id, second, "fg-def", datetime.now(UTC) + timedelta(hours=1))
    events = [
        admin_event("master", "team.create", team.id, team.id, None, team),
        admin_event("master", "key.create", created.id, team.id, None, created),
        admin_event("key_admin", "key.rotate", rotated.id, team.id, created, rotated),
        admin_event("master", "key.delete", rotated.id, team.id, rotated, None),
    ]
    text = b"".join(orjson.dumps(e.data) for e in events)
    for secret in (first, second, b"ghp_secret", b"hunter2", b"key_hash", b"previous_hash"):
        assert (secret if isinstance(secret, bytes) else secret.encode()) not in text
    rotate = events[2].data
    assert rotate["changed"] == ["prefix", "previous_expires_at", "updated_at"]
    assert (rotate["before"]["prefix"], rotate["after"]["prefix"]) == ("fg-abc", "fg-def")
    assert events[0].data["after"]["metadata"] == {"owner": "ana"}
    assert events[1].data["after"]["created_at"] == stamp(created.created_at)
    assert (events[3].data["after"], events[3].data["changed"]) == (None, [])
    assert {e.kind for e in events} == {"admin"} and len({e.event_id for e in events}) == 4
    assert await store.audit.append_many(events) == 4
