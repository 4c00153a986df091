"""Every admin field is bounded to what the store holds, on SQLite and on PostgreSQL: ``rpm: 2**63`` (one past
BIGINT) and its kin are a 400 naming the field, never a 500 (issue 13)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.test_admin_api import MASTER_KEY, Admin, assert_error, running_gateway, unique
from tests.support import Gateway

INT64_MAX = 2**63 - 1
TOO_BIG: list[Any] = [2**63, 2**64, 10**30, 1e300]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp(f"bounds-{request.param}"), request.param, "admin_bounds") as gw:
        yield gw


@pytest.fixture(scope="module")
def admin(gateway: Gateway) -> Iterator[Admin]:
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        yield Admin(client, MASTER_KEY)


@pytest.fixture(scope="module")
def team(admin: Admin) -> dict[str, Any]:
    return admin.team()


@pytest.mark.parametrize("value", TOO_BIG)
@pytest.mark.parametrize("field", ["rpm", "tpm"])
def test_limits_past_bigint_are_400_everywhere(admin: Admin, team: dict[str, Any], field: str, value: Any) -> None:
    user = admin.user(team["id"])
    key = admin.key(team["id"])
    calls = [
        ("POST", "/teams", {"name": unique("t"), field: value}),
        ("PATCH", f"/teams/{team['id']}", {field: value}),
        ("POST", "/users", {"team_id": team["id"], "name": unique("u"), field: value}),
        ("PATCH", f"/users/{user['id']}", {field: value}),
        ("POST", "/keys", {"name": unique("k"), "team_id": team["id"], field: value}),
        ("PATCH", f"/keys/{key['id']}", {field: value}),
    ]
    for method, path, body in calls:
        err = assert_error(admin.call(method, path, body), 400, "invalid_value", field)
        assert field in err["message"]


def test_the_largest_bigint_is_kept(admin: Admin, team: dict[str, Any]) -> None:
    got = admin.ok("PATCH", f"/teams/{team['id']}", {"rpm": INT64_MAX, "tpm": INT64_MAX})
    assert (got["rpm"], got["tpm"]) == (INT64_MAX, INT64_MAX)
    assert admin.ok("GET", f"/teams/{team['id']}")["rpm"] == INT64_MAX


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"budget": 1e300}, "budget"),
        ({"budget": -1}, "budget"),
        ({"budget": "inf"}, "budget"),
        ({"name": "n" * 201}, "name"),
        ({"allowed_models": ["m"] * 1001}, "allowed_models"),
        ({"allowed_models": ["g" * 201]}, "allowed_models.0"),
        ({"classification": "c" * 65}, "classification"),
        ({"metadata": {str(i): i for i in range(257)}}, "metadata"),
    ],
)
def test_team_fields_are_bounded(admin: Admin, team: dict[str, Any], body: dict[str, Any], param: str) -> None:
    assert_error(admin.call("PATCH", f"/teams/{team['id']}", body), 400, "invalid_value", param)


def test_metadata_keys_are_bounded(admin: Admin, team: dict[str, Any]) -> None:
    resp = admin.call("PATCH", f"/teams/{team['id']}", {"metadata": {"k" * 201: 1}})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"].startswith("metadata.")


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/users", {"team_id": "t" * 201, "name": "u"}, "team_id"),
        ("/users", {"team_id": "t", "name": "u", "email": "e" * 321}, "email"),
        ("/keys", {"name": "k", "team_id": "t" * 201}, "team_id"),
        ("/keys", {"name": "k", "team_id": "t", "user_id": "u" * 201}, "user_id"),
    ],
)
def test_references_are_bounded(admin: Admin, path: str, body: dict[str, Any], param: str) -> None:
    assert_error(admin.call("POST", path, body), 400, "invalid_value", param)


def test_rotation_grace_is_bounded(admin: Admin, team: dict[str, Any]) -> None:
    key = admin.key(team["id"])
    for value in (2**63, 31 * 86_400, -1):
        assert_error(
            admin.call("POST", f"/keys/{key['id']}/rotate", {"grace_period_s": value}),
            400,
            "invalid_value",
            "grace_period_s",
        )


@pytest.mark.parametrize(
    "expires_at", ["9999-12-31T23:59:59+00:00", "9999-12-31T23:59:59-23:00", "0001-01-01T00:00:00+14:00"]
)
def test_far_expiry_is_stored_or_refused_never_500(admin: Admin, team: dict[str, Any], expires_at: str) -> None:
    resp = admin.call("POST", "/keys", {"name": unique("k"), "team_id": team["id"], "expires_at": expires_at})
    assert resp.status_code in (201, 400), resp.text
    if resp.status_code == 400:
        assert resp.json()["error"]["param"] == "expires_at"


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/teams", {"limit": str(2**63)}, "limit"),
        ("/keys", {"limit": "1" + "0" * 30}, "limit"),
        ("/users", {"limit": "-1"}, "limit"),
        ("/teams", {"cursor": "c" * 1001}, "cursor"),
        ("/keys", {"name_prefix": "p" * 201}, "name_prefix"),
        ("/usage", {"team_id": "t" * 201}, "team_id"),
        ("/audit", {"limit": "1001"}, "limit"),
        ("/audit", {"target": "x" * 201}, "target"),
        ("/usage", {"from": "0001-01-01T00:00:00+14:00"}, "from"),
        ("/audit", {"to": "9999-12-31T23:59:59-23:00"}, "to"),
    ],
)
def test_query_values_are_bounded(admin: Admin, path: str, params: dict[str, str], param: str) -> None:
    assert_error(admin.call("GET", path, **params), 400, "invalid_value", param)
