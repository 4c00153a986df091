"""Fuzzing the admin API through the real server (hypothesis), with the dev master key.

Generated bodies for creating and updating teams, users and keys, each field plausible or of
any JSON type (integers past the store's 64-bit range, long strings, deep metadata); generated
query strings and path parameters. Rules as for the data plane: never a 5xx, every 4xx in
OpenAI's error shape, the worker alive and its memory bounded. See docs/fuzzing.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.e2e.fuzzing import MASTER_KEY, Target, fuzz_settings
from tests.e2e.test_fuzz_http import anything, dumps, huge_ints

AUTH = {"Authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}

long_text = st.text(max_size=30) | st.text(min_size=190, max_size=400) | st.just("x" * 20_000)


def field(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(plausible, plausible, anything)


limits = st.integers(1, 10_000) | huge_ints | st.integers(2**63 - 2, 2**63 + 1) | st.integers(-2, 0)
money = st.floats(min_value=0, max_value=1e6) | st.floats(min_value=1e300) | st.just(1e400) | st.floats(max_value=0)
shared = {
    "rpm": field(limits),
    "tpm": field(limits),
    "budget": field(money),
    "budget_period": field(st.sampled_from(["daily", "weekly", "monthly", "total", "hourly"])),
    "metadata": field(st.dictionaries(long_text, anything, max_size=5)),
    "allowed_models": field(st.lists(long_text | st.just("gpt-4o*"), max_size=5)),
}
team = st.fixed_dictionaries(
    {"name": field(long_text)}, optional={**shared, "classification": field(long_text), "unknown": anything}
)
user = st.fixed_dictionaries(
    {"team_id": field(long_text), "name": field(long_text)},
    optional={
        **{k: v for k, v in shared.items() if k != "allowed_models"},
        "email": field(long_text),
        "role": field(st.sampled_from(["admin", "team_admin", "auditor", "member", "root"])),
    },
)
key = st.fixed_dictionaries(
    {"name": field(long_text)},
    optional={
        **shared,
        "team_id": field(long_text),
        "user_id": field(long_text),
        "role": field(st.sampled_from(["admin", "team_admin", "auditor", "member", "root"])),
        "expires_at": field(
            st.datetimes().map(lambda d: d.isoformat()) | st.sampled_from(["9999-12-31T23:59:59Z", "0001-01-01", "x"])
        ),
    },
)
query_value = st.text(max_size=30) | st.integers(-(2**70), 2**70).map(str) | st.just("x" * 5000)
query = st.dictionaries(
    st.sampled_from(["limit", "cursor", "name_prefix", "team_id", "user_id", "role", "revoked", "from", "to", "model"])
    | st.text(max_size=10),
    query_value,
    max_size=4,
)
list_paths = st.sampled_from(
    ["/admin/v1/teams", "/admin/v1/users", "/admin/v1/keys", "/admin/v1/usage", "/admin/v1/audit"]
)
path_id = st.text(min_size=1, max_size=40) | st.just("x" * 3000) | st.just("team_" + "0" * 26)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    config = (
        "upstreams: [{name: mock, provider: mock}]\nmodel_groups: [{name: mock, deployments: [{upstream: mock}]}]\n"
    )
    found = Target.start(tmp_path_factory.mktemp("fuzz-admin"), config)
    yield found
    found.gateway.stop()


@pytest.fixture
def client(target: Target) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=target.gateway.url, timeout=15) as c:
        yield c


@pytest.fixture
def team_id(client: httpx.Client) -> str:
    resp = client.post("/admin/v1/teams", content=dumps({"name": f"fuzz-{uuid.uuid4()}"}), headers=AUTH)
    assert resp.status_code == 201, resp.text
    found: str = resp.json()["id"]
    return found


def check(target: Target, client: httpx.Client) -> None:
    target.check_health(client)
    assert not target.failures, target.report()


def test_generated_creates(target: Target, client: httpx.Client, team_id: str) -> None:
    target.begin()

    @fuzz_settings(150)
    @given(route=st.sampled_from(["teams", "users", "keys"]), data=st.data())
    def run(route: str, data: st.DataObject) -> None:
        payload = data.draw({"teams": team, "users": user, "keys": key}[route])
        if route != "teams" and data.draw(st.booleans()):
            payload["team_id"] = team_id  # often a real team, so the other fields are what is judged
        target.send(client, "POST", f"/admin/v1/{route}", dumps(payload), AUTH)

    run()
    check(target, client)


def test_generated_updates(target: Target, client: httpx.Client, team_id: str) -> None:
    target.begin()
    made = client.post("/admin/v1/keys", content=dumps({"name": "k", "team_id": team_id}), headers=AUTH)
    assert made.status_code == 201, made.text
    key_id = made.json()["id"]

    @fuzz_settings(150)
    @given(route=st.sampled_from(["teams", "keys", "rotate"]), data=st.data())
    def run(route: str, data: st.DataObject) -> None:
        if route == "rotate":
            grace = data.draw(field(st.integers(-1, 31 * 86_400) | huge_ints))
            target.send(client, "POST", f"/admin/v1/keys/{key_id}/rotate", dumps({"grace_period_s": grace}), AUTH)
            return
        payload = data.draw(team if route == "teams" else key)
        payload.pop("team_id", None)
        payload.pop("user_id", None)
        payload.pop("role", None)
        if data.draw(st.booleans()):
            payload.pop("name", None)
        ident = team_id if route == "teams" else key_id
        target.send(client, "PATCH", f"/admin/v1/{route}/{ident}", dumps(payload), AUTH)

    run()
    check(target, client)


def test_generated_queries_and_paths(target: Target, client: httpx.Client) -> None:
    target.begin()

    @fuzz_settings(150)
    @given(path=list_paths, params=query, ident=path_id, method=st.sampled_from(["GET", "PATCH", "DELETE", "POST"]))
    def run(path: str, params: dict[str, str], ident: str, method: str) -> None:
        target.send(client, "GET", f"{path}?{urlencode(params)}", None, AUTH)
        resource = path.rsplit("/", 1)[1]
        if resource in ("teams", "users", "keys"):
            target.send(client, method, f"{path}/{quote(ident, safe='')}", b"{}" if method != "GET" else None, AUTH)

    run()
    check(target, client)


@pytest.mark.parametrize("field_name", ["rpm", "tpm"])
@pytest.mark.parametrize("value", [2**63 - 1, 2**63, 2**64, 10**30])
def test_limits_past_the_store_range_are_a_4xx(
    target: Target, client: httpx.Client, field_name: str, value: int
) -> None:
    target.begin()
    resp = target.send(
        client, "POST", "/admin/v1/teams", dumps({"name": f"big-{uuid.uuid4()}", field_name: value}), AUTH
    )
    assert resp is not None and resp.status_code in (201, 400), resp and resp.text
    check(target, client)
