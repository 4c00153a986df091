"""Pure helpers: cursors, field checks, packaged migrations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ferrogate.store import InvalidValue, SchemaError
from ferrogate.store.fields import check, when
from ferrogate.store.migrate import check_versions, load_migrations
from ferrogate.store.records import new_id
from ferrogate.store.sql import decode_cursor, encode_cursor


def test_cursor_round_trip() -> None:
    at = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    assert decode_cursor(encode_cursor(at, "key_0123456789abcdef")) == (at, "key_0123456789abcdef")
    assert "=" not in encode_cursor(at, "k")


def test_cursor_with_offset_is_normalised_to_utc() -> None:
    at = datetime(2026, 3, 4, 7, 0, tzinfo=timezone(timedelta(hours=2)))
    assert decode_cursor(encode_cursor(at, "x"))[0] == datetime(2026, 3, 4, 5, 0, tzinfo=UTC)


def test_ids() -> None:
    ids = {new_id("team") for _ in range(100)}
    assert len(ids) == 100
    assert all(i.startswith("team_") and len(i) == 21 and int(i[5:], 16) >= 0 for i in ids)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(InvalidValue, match="expected a timezone-aware datetime"):
        when("expires_at", datetime(2030, 1, 1))
    assert when("at", datetime(2030, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("entity", "values", "field"),
    [
        ("team", {"rpm": True}, "rpm"),
        ("team", {"budget": "1"}, "budget"),
        ("team", {"allowed_models": ["ok", ""]}, "allowed_models"),
        ("team", {"metadata": {1: "x"}}, "metadata"),
        ("team", {"metadata": {"x": object()}}, "metadata"),
        ("key", {"key_hash": "A" * 64}, "key_hash"),
        ("key", {"expires_at": "2030-01-01"}, "expires_at"),
        ("user", {"email": 5}, "email"),
    ],
)
def test_checks_name_the_field(entity: str, values: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidValue) as info:
        check(entity, values)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field} ")


def test_check_encodes_json_as_text() -> None:
    assert check("team", {"allowed_models": ("a*",), "metadata": {"k": [1]}}) == {
        "allowed_models": '["a*"]',
        "metadata": '{"k":[1]}',
    }


def test_both_dialects_ship_the_same_versions() -> None:
    sqlite, postgres = load_migrations("sqlite"), load_migrations("postgres")
    assert [(m.version, m.name) for m in sqlite] == [(m.version, m.name) for m in postgres]
    assert sqlite[0].version == 1 and "CREATE TABLE keys" in sqlite[0].sql


def test_version_messages() -> None:
    known = load_migrations("sqlite")
    check_versions({1, 2, 3, 4, 5, 6, 7, 8, 9}, known)
    with pytest.raises(SchemaError, match=r"^database schema version 10 is newer than this ferrogate \(knows 9\)"):
        check_versions({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, known)
    with pytest.raises(SchemaError, match=r"version 0 is older .* run `ferrogate migrate`"):
        check_versions(set(), known)
