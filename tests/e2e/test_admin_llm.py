"""Upstreams, model groups and routing rules through the admin API of the real server, on a SQLite file and on
PostgreSQL: listings without secrets, writes validated as a whole configuration (a 400 naming the path, nothing
stored), ``${ENV}``-only upstream keys, deletes and restores of the file's entries, the effect on requests, audit
records, RBAC, the routing dry run, and edits of the configuration file itself.

The fake upstream answers ``model=<the model it was sent>``, so an answer names the deployment that served it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_admin_api import MASTER_KEY, Admin, assert_error, scratch_postgres, unique
from tests.fakes.openai_upstream import FakeUpstream
from tests.support import Gateway

FILE_KEY = "sk-file-upstream-key-never-shown-0001"
REF_KEY = "sk-referenced-key-never-shown-0002"
HEADER = "tenant-header-value-never-shown"
ENV = {"FERROGATE_MASTER_KEY": MASTER_KEY, "FAKE_FILE_KEY": FILE_KEY, "EU_KEY": REF_KEY}


def config(port: int, extra: str = "") -> str:
    return f"""
upstreams:
  - name: fake
    provider: openai
    base_url: http://127.0.0.1:{port}/v1
    api_key: ${{FAKE_FILE_KEY}}
    headers: {{x-tenant: {HEADER}}}
  - name: mock
    provider: mock
model_groups:
  - name: mock
    deployments: [{{upstream: mock}}]
  - name: fast
    deployments: [{{upstream: fake, model: echo-fast}}]
  - name: duo
    deployments: [{{upstream: fake, model: echo-a}}, {{upstream: fake, model: echo-b}}]
{extra}"""


class World:
    def __init__(self, gw: Gateway, upstream: FakeUpstream, path: Path) -> None:
        self.gw, self.upstream, self.path = gw, upstream, path


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest, upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp(f"admin-llm-{request.param}")
    if request.param == "sqlite":
        gw = Gateway(tmp, config(upstream.port), env=ENV).wait_ready()
        yield World(gw, upstream, tmp / f"config-{gw.port}.yaml")
        gw.stop()
        return
    with scratch_postgres("admin_llm") as url:
        gw = Gateway(tmp, config(upstream.port), env=ENV, database_url=url).wait_ready()
        yield World(gw, upstream, tmp / f"config-{gw.port}.yaml")
        gw.stop()


@pytest.fixture
def root(world: World) -> Iterator[Admin]:
    with httpx.Client(base_url=world.gw.url, timeout=10) as client:
        yield Admin(client, MASTER_KEY)


def answer(root: Admin, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return root.client.post("/v1/chat/completions", json=body)


def served_by(root: Admin, model: str) -> str:
    resp = answer(root, model)
    assert resp.status_code == 200, resp.text
    content: str = resp.json()["choices"][0]["message"]["content"]
    return content.removeprefix("model=")


def until(check: Callable[[], bool], bound_s: float = 10.0) -> None:
    deadline = time.monotonic() + bound_s
    while not check():
        assert time.monotonic() < deadline, f"not within {bound_s} s"
        time.sleep(0.05)


def version(root: Admin) -> int:
    got: int = root.ok("GET", "/llm/rules")["version"]
    return got


def group(name: str, *models: str, upstream: str = "fake", **fields: Any) -> dict[str, Any]:
    return {"name": name, "deployments": [{"upstream": upstream, "model": m} for m in models], **fields}


def test_listings_show_deployments_and_never_a_secret(root: Admin) -> None:
    resp = root.call("GET", "/llm/upstreams")
    assert resp.status_code == 200, resp.text
    assert FILE_KEY not in resp.text and HEADER not in resp.text
    ups = {u["name"]: u for u in resp.json()["data"]}
    fake = ups["fake"]
    assert (fake["provider"], fake["has_api_key"], fake["header_names"], fake["source"]) == (
        "openai",
        True,
        ["x-tenant"],
        "file",
    )
    assert fake["base_url"].startswith("http://127.0.0.1:") and "api_key" not in fake and "headers" not in fake
    deps = [(d["group"], d["model"], d["key"]) for d in fake["deployments"]]
    assert deps == [
        ("fast", "echo-fast", "fake/echo-fast"),
        ("duo", "echo-a", "fake/echo-a"),
        ("duo", "echo-b", "fake/echo-b"),
    ]
    for dep in fake["deployments"]:  # with the gateway's health table, each deployment's circuit; else null
        assert dep["health"] is None or dep["health"]["state"] in ("closed", "open", "half_open")
    groups = {g["name"]: g for g in root.ok("GET", "/llm/model_groups")["data"]}
    assert groups["duo"]["deployments"] == [
        {"upstream": "fake", "model": "echo-a"},
        {"upstream": "fake", "model": "echo-b"},
    ]
    assert (groups["duo"]["source"], groups["duo"]["definition"]["name"]) == ("file", "duo")


def test_an_upstream_key_must_be_an_env_reference(root: Admin, world: World) -> None:
    before = version(root)
    body = {"name": "eu", "provider": "openai", "base_url": world.upstream.base_url, "api_key": "sk-literal-secret"}
    err = assert_error(root.call("PUT", "/llm/upstreams/eu", body), 400, "invalid_value", "api_key")
    assert "environment variable" in err["message"] and "sk-literal-secret" not in err["message"]
    unset = root.call("PUT", "/llm/upstreams/eu", body | {"api_key": "${NOT_SET_ANYWHERE}"})
    assert unset.status_code == 400 and "NOT_SET_ANYWHERE is not set" in unset.json()["error"]["message"]
    header = body | {"api_key": "${EU_KEY}", "headers": {"api-key": "literal-azure-key"}}
    assert_error(root.call("PUT", "/llm/upstreams/eu", header), 400, "invalid_value", "headers.api-key")
    assert version(root) == before and "eu" not in {u["name"] for u in root.ok("GET", "/llm/upstreams")["data"]}


def test_an_admin_upstream_and_group_serve_with_the_referenced_key(root: Admin, world: World) -> None:
    eu, name = unique("eu"), unique("g")
    body = {"name": eu, "provider": "openai", "base_url": world.upstream.base_url, "api_key": "${EU_KEY}"}
    put = root.ok("PUT", f"/llm/upstreams/{eu}", body)
    assert (put["name"], put["source"], put["has_api_key"], put["deployments"]) == (eu, "admin", True, [])
    assert REF_KEY not in str(put) and "${EU_KEY}" not in str(put)
    root.ok("PUT", f"/llm/model_groups/{name}", group(name, "echo-eu", upstream=eu))
    seen = len(world.upstream.requests)
    assert served_by(root, name) == "echo-eu"
    sent = world.upstream.requests[seen:]
    assert [r["headers"].get("Authorization") for r in sent] == [f"Bearer {REF_KEY}"]  # resolved from the env
    listed = {u["name"]: u for u in root.ok("GET", "/llm/upstreams")["data"]}[eu]
    assert [d["key"] for d in listed["deployments"]] == [f"{eu}/echo-eu"]
    # an upstream a group still uses cannot go; the group first
    refused = root.call("DELETE", f"/llm/upstreams/{eu}")
    assert refused.status_code == 400 and "unknown upstream" in refused.json()["error"]["message"]
    assert root.ok("DELETE", f"/llm/model_groups/{name}") == {"id": name, "deleted": True}
    assert root.ok("DELETE", f"/llm/upstreams/{eu}") == {"id": eu, "deleted": True}
    assert_error(answer(root, name), 404, "model_not_found", "model")
    assert_error(root.call("DELETE", f"/llm/upstreams/{eu}"), 404, "not_found", "name")


@pytest.mark.parametrize(
    ("path", "body", "param", "words"),
    [
        ("/model_groups/x1", group("x1", "m", upstream="nope"), "model_groups[3].deployments[0].upstream", ["nope"]),
        ("/model_groups/x2", group("x2", "m", fallbacks=["missing"]), "model_groups[3].fallbacks[0]", ["missing"]),
        ("/model_groups/x3", group("x3", "m", aliases=["fast"]), "model_groups[3].aliases[0]", ["fast"]),
        ("/model_groups/x4", group("x4"), "deployments", []),
        ("/model_groups/x5", group("other", "m"), "name", ["other"]),
        ("/model_groups/x6", group("x6", "m") | {"colour": "red"}, "colour", []),
        ("/upstreams/u1", {"name": "u1", "provider": "openai"}, None, ["base_url"]),
        ("/upstreams/u2", {"name": "u2", "provider": "mock", "base_url": "ftp://x"}, "base_url", []),
    ],
)
def test_a_write_that_breaks_the_configuration_is_a_400_and_nothing_is_stored(
    root: Admin, path: str, body: dict[str, Any], param: str | None, words: list[str]
) -> None:
    before, groups = version(root), root.ok("GET", "/llm/model_groups")
    resp = root.call("PUT", f"/llm{path}", body)
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["code"] == "invalid_value" and (param is None or err["param"] == param), err
    assert all(w in err["message"] for w in words), err
    assert version(root) == before and root.ok("GET", "/llm/model_groups") == groups


def test_a_files_group_replaced_deleted_and_restored(root: Admin) -> None:
    assert served_by(root, "fast") == "echo-fast"
    put = root.ok("PUT", "/llm/model_groups/fast", group("fast", "echo-replaced", aliases=["quick"]))
    assert (put["source"], put["aliases"]) == ("admin", ["quick"])
    assert served_by(root, "fast") == served_by(root, "quick") == "echo-replaced"
    assert root.ok("DELETE", "/llm/model_groups/fast") == {"id": "fast", "deleted": True}  # a tombstone
    assert_error(answer(root, "fast"), 404, "model_not_found", "model")
    assert "fast" not in {g["name"] for g in root.ok("GET", "/llm/model_groups")["data"]}
    assert_error(root.call("DELETE", "/llm/model_groups/fast"), 404, "not_found", "name")
    root.ok("DELETE", "/llm/model_groups/fast", restore="true")  # the file's applies again
    assert served_by(root, "fast") == "echo-fast"
    assert {g["name"]: g["source"] for g in root.ok("GET", "/llm/model_groups")["data"]}["fast"] == "file"
    assert_error(root.call("DELETE", "/llm/model_groups/fast", restore="true"), 404, "not_found", "name")


def test_a_group_name_with_a_slash_is_addressed_percent_encoded(root: Admin) -> None:
    name = unique("team") + "/fast"
    root.ok("PUT", f"/llm/model_groups/{name.replace('/', '%2F')}", group(name, "echo-slash"))
    assert served_by(root, name) == "echo-slash"
    root.ok("DELETE", f"/llm/model_groups/{name.replace('/', '%2F')}")
    assert_error(answer(root, name), 404, "model_not_found", "model")


def test_every_write_is_audited_without_secrets(root: Admin, world: World) -> None:
    eu = unique("eu")
    body = {"name": eu, "provider": "openai", "base_url": world.upstream.base_url, "api_key": "${EU_KEY}"}
    root.ok("PUT", f"/llm/upstreams/{eu}", body | {"headers": {"x-tenant": "hdr-value-0003"}})
    root.ok("DELETE", f"/llm/upstreams/{eu}")
    records = root.ok("GET", "/audit", target=eu)["data"]
    assert [r["action"] for r in records] == ["upstream.update", "upstream.delete"]
    created, deleted = records
    assert (created["actor"], created["kind"], created["data"]["before"]) == ("master", "admin", None)
    after = created["data"]["after"]
    assert (after["name"], after["base_url"], after["headers"]) == (
        eu,
        world.upstream.base_url,
        {"x-tenant": "[redacted]"},
    )
    assert "api_key" not in after and "hdr-value-0003" not in str(records) and REF_KEY not in str(records)
    assert (deleted["data"]["before"]["name"], deleted["data"]["after"]) == (eu, None)


def test_readers_cannot_write(root: Admin) -> None:
    team = root.team()
    auditor = Admin(root.client, root.key(None, role="auditor")["key"])
    team_admin = Admin(root.client, root.key(team["id"], role="team_admin")["key"])
    before = version(root)
    for reader in (auditor, team_admin):
        assert {u["name"] for u in reader.ok("GET", "/llm/upstreams")["data"]} >= {"fake", "mock"}
        assert reader.ok("GET", "/llm/rules")["version"] == before
        assert_error(reader.call("PUT", "/llm/model_groups/r1", group("r1", "m")), 403, "permission_denied")
        assert_error(reader.call("DELETE", "/llm/model_groups/fast"), 403, "permission_denied")
        assert_error(reader.call("PUT", "/llm/rules", {"text": ""}), 403, "permission_denied")
    member = Admin(root.client, root.key(team["id"])["key"])
    assert_error(member.call("GET", "/llm/upstreams"), 403, "permission_denied")
    assert version(root) == before


def test_rules_replace_the_files_and_route_requests(root: Admin) -> None:
    got = root.ok("GET", "/llm/rules")
    assert (got["source"], got["text"], got["updated_by"]) == ("file", "", None)
    bad = root.call("PUT", "/llm/rules", {"text": "forbid(principal, action"})
    assert bad.status_code == 400 and "line" in bad.json()["error"]["message"], bad.text
    assert root.ok("GET", "/llm/rules")["version"] == got["version"]
    text = '@id("no-a")\nforbid(principal, action, resource) when { resource.model == "echo-a" };'
    put = root.ok("PUT", "/llm/rules", {"text": text})
    assert (put["source"], put["text"], put["updated_by"], put["version"]) == (
        "admin",
        text,
        "master",
        got["version"] + 1,
    )
    assert {served_by(root, "duo") for _ in range(6)} == {"echo-b"}
    dry = root.ok("POST", "/llm/route", {"model": "duo", "team": "t1", "sla_ms": 500, "budget_left_usd": 3.5})
    assert "echo-b" in str(dry["chosen"]) and "no-a" in str(dry), dry
    assert [c for c in dry["candidates"] if "echo-a" in str(c)], dry
    dropped = root.ok("DELETE", "/llm/rules")
    assert (dropped["source"], dropped["text"]) == ("file", "")
    assert_error(root.call("DELETE", "/llm/rules"), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "model"),
        ({"model": "duo", "colour": 1}, "colour"),
        ({"model": "duo", "classification": "x"}, "classification"),
        ({"model": "duo", "sla_ms": -1}, "sla_ms"),
    ],
)
def test_the_dry_run_validates_its_body(root: Admin, body: dict[str, Any], param: str) -> None:
    assert_error(root.call("POST", "/llm/route", body), 400, "invalid_value", param)


def test_the_dry_run_of_the_plain_order(root: Admin) -> None:
    dry = root.ok("POST", "/llm/route", {"model": "duo", "stream": True})
    assert "echo-a" in str(dry["chosen"]), dry


def test_a_file_edit_reloads_and_a_bad_one_is_kept_out(root: Admin, world: World) -> None:
    world.path.write_text(config(world.upstream.port, "  - name: from-file\n    deployments: [{upstream: mock}]\n"))
    until(lambda: answer(root, "from-file").status_code == 200)
    status = root.ok("GET", "/llm/status")
    assert (status["file"], status["watching"], status["last_error"]) == (str(world.path), True, None)
    world.path.write_text(config(world.upstream.port, "  - name: broken\n    deployments: [{upstream: nowhere}]\n"))
    until(lambda: root.ok("GET", "/llm/status")["last_error"] is not None)
    error = root.ok("GET", "/llm/status")["last_error"]
    assert "model_groups[3].deployments[0].upstream" in error and "nowhere" in error
    assert answer(root, "from-file").status_code == 200 and answer(root, "broken").status_code == 404  # kept
    world.path.write_text(config(world.upstream.port))
    until(lambda: answer(root, "from-file").status_code == 404)
    assert root.ok("GET", "/llm/status")["last_error"] is None
