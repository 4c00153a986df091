"""Guardrail policies through the admin API of the real server, on a SQLite file and on PostgreSQL: the global
document and the built-in rules, team and key overrides, validation (a bad regex is a 400 naming the rule),
RBAC (readers cannot PUT), audit records of each change, the cascade on delete, and the effect on requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from ferrogate.admin.api import OPENAPI_PATH
from tests.e2e.test_admin_api import MASTER_KEY, Admin, assert_error, bearer, running_gateway
from tests.support import Gateway

GUARD = "/guardrails"
CANARY = "zebra-canary-7731"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp(f"admin-guardrails-{request.param}")
    with running_gateway(tmp, request.param, "admin_guardrails") as gw:
        yield gw


@pytest.fixture
def root(gateway: Gateway) -> Iterator[Admin]:
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        yield Admin(client, MASTER_KEY)


@pytest.fixture(autouse=True)
def clean_global(root: Admin) -> Iterator[None]:
    yield
    root.ok("PUT", GUARD, {})  # each test starts from an empty global document


def chat(root: Admin, key: str, text: str) -> httpx.Response:
    body = {"model": "mock", "messages": [{"role": "user", "content": text}]}
    return root.client.post("/v1/chat/completions", json=body, headers=bearer(key))


def audit(root: Admin, target: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = root.ok("GET", "/audit", action="guardrails.update", target=target)["data"]
    return records


def test_global_policy_starts_empty_and_lists_the_builtin_rules(root: Admin) -> None:
    got = root.ok("GET", GUARD)
    assert got["scope"] == "global"
    assert set(got["policy"]) == {"actions", "responses", "rules", "deny_patterns", "default_classification"}
    rules = got["builtin_rules"]
    assert len(rules) >= 30
    assert {r["category"] for r in rules} == {"secret", "pii", "injection"}
    assert len({r["id"] for r in rules}) == len(rules)
    defaults = {"secret": "redact", "pii": "off", "injection": "log"}  # the configuration's (the defaults here)
    assert all(r["default_action"] == defaults[r["category"]] for r in rules), rules
    assert all(set(r) == {"id", "category", "description", "default_action"} for r in rules)


def test_put_replaces_the_global_document_and_get_returns_it(root: Admin) -> None:
    before = root.ok("GET", GUARD)["version"]
    doc = {
        "actions": {"pii": "redact", "injection": "block"},
        "responses": True,
        "rules": [{"id": "ticket-id", "regex": r"TICKET-[0-9]{6}", "keywords": ["ticket-"], "action": "log"}],
        "deny_patterns": [{"id": "codename", "regex": "(?i)project bluebird"}],
        "default_classification": "confidential",
    }
    put = root.ok("PUT", GUARD, doc)
    assert (put["updated_by"], put["version"]) == ("master", before + 1)
    assert put["policy"]["actions"] == doc["actions"] and put["policy"]["responses"] is True
    assert put["policy"]["rules"][0]["id"] == "ticket-id" and put["policy"]["deny_patterns"][0]["action"] == "block"
    got = root.ok("GET", GUARD)
    assert {k: got[k] for k in ("policy", "updated_at", "updated_by", "version")} == {
        k: put[k] for k in ("policy", "updated_at", "updated_by", "version")
    }
    replaced = root.ok("PUT", GUARD, {"responses": False})  # the whole document, not a merge
    assert replaced["policy"]["actions"] is None and replaced["policy"]["rules"] is None
    assert replaced["version"] == before + 2


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"deny_patterns": [{"id": "broken", "regex": "(unclosed"}]}, "deny_patterns[0].regex", ["broken"]),
        ({"rules": [{"id": "ok", "regex": "a"}, {"id": "bad-rule", "regex": "[z-a]"}]}, "rules[1].regex", ["bad-rule"]),
        ({"actions": {"no-such-rule": "block"}}, "actions.no-such-rule", ["no-such-rule"]),
        ({"actions": {"pii": "explode"}}, "actions.pii", []),
        ({"responses": True, "colour": "red"}, "colour", []),
        ({"deny_patterns": [{"id": "x", "regex": "a"}, {"id": "x", "regex": "b"}]}, "deny_patterns[1].id", ["x"]),
    ],
)
def test_a_bad_document_is_a_400_naming_the_rule_and_nothing_changes(
    root: Admin, body: dict[str, Any], param: str, words: list[str]
) -> None:
    before = root.ok("GET", GUARD)
    resp = root.call("PUT", GUARD, body)
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["code"] == "invalid_value" and err["type"] == "invalid_request_error"
    assert err["param"] in (param, param.replace("[", ".").replace("]", "")), err
    assert all(w in err["message"] for w in words), err
    after = root.ok("GET", GUARD)
    assert (after["version"], after["policy"]) == (before["version"], before["policy"])


def test_team_and_key_overrides(root: Admin) -> None:
    team = root.team()
    key = root.key(team["id"])
    empty = root.ok("GET", f"/teams/{team['id']}{GUARD}")
    assert (empty["scope"], empty["updated_at"], empty["updated_by"]) == (f"team:{team['id']}", None, None)
    assert set(empty["policy"].values()) == {None}
    put = root.ok("PUT", f"/teams/{team['id']}{GUARD}", {"actions": {"secret": "block"}, "responses": True})
    assert put["policy"]["actions"] == {"secret": "block"} and put["updated_by"] == "master"
    assert root.ok("GET", f"/teams/{team['id']}{GUARD}")["policy"] == put["policy"]
    kput = root.ok("PUT", f"/keys/{key['id']}{GUARD}", {"default_classification": "public"})
    assert (kput["scope"], kput["policy"]["default_classification"]) == (f"key:{key['id']}", "public")
    assert kput["version"] == put["version"] + 1
    # a team or key document cannot add rules
    bad = root.call("PUT", f"/teams/{team['id']}{GUARD}", {"rules": [{"id": "r", "regex": "x"}]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rules"
    # unknown ids are 404 naming the parameter
    assert_error(root.call("GET", f"/teams/team_0000000000000000{GUARD}"), 404, "not_found", "team_id")
    assert_error(root.call("PUT", f"/teams/team_0000000000000000{GUARD}", {}), 404, "not_found", "team_id")
    assert_error(root.call("GET", f"/keys/key_0000000000000000{GUARD}"), 404, "not_found", "key_id")
    assert_error(root.call("PUT", f"/keys/key_0000000000000000{GUARD}", {}), 404, "not_found", "key_id")


def test_deleting_a_team_or_key_drops_its_override(root: Admin) -> None:
    team = root.team()
    key = root.key(team["id"])
    root.ok("PUT", f"/keys/{key['id']}{GUARD}", {"responses": True})
    version = root.ok("PUT", f"/teams/{team['id']}{GUARD}", {"responses": True})["version"]
    root.ok("DELETE", f"/keys/{key['id']}")
    root.ok("DELETE", f"/teams/{team['id']}")
    assert root.ok("GET", GUARD)["version"] == version + 2  # both documents went with their owners
    assert_error(root.call("GET", f"/teams/{team['id']}{GUARD}"), 404, "not_found", "team_id")


def test_every_change_is_audited(root: Admin) -> None:
    admin_key = root.key(None, role="admin")
    admin = Admin(root.client, admin_key["key"])
    team = root.team()
    admin.ok("PUT", f"/teams/{team['id']}{GUARD}", {"actions": {"secret": "block", "pii": "log"}})
    admin.ok("PUT", f"/teams/{team['id']}{GUARD}", {"actions": {"secret": "log"}, "responses": True})
    refused = admin.call("PUT", f"/teams/{team['id']}{GUARD}", {"deny_patterns": [{"id": "b", "regex": "("}]})
    assert refused.status_code == 400
    first, second = audit(root, f"team:{team['id']}")  # the refusal left no record
    assert (first["actor"], first["team_id"], first["kind"]) == (admin_key["id"], team["id"], "admin")
    assert first["data"] == {
        "before": None,
        "after": {"actions": {"secret": "block", "pii": "log"}},
        "changed": ["actions"],
    }
    assert second["data"]["before"] == first["data"]["after"]
    assert second["data"]["after"] == {"actions": {"secret": "log"}, "responses": True}
    assert second["data"]["changed"] == ["actions", "responses"]
    root.ok("PUT", GUARD, {"deny_patterns": [{"id": "codename", "regex": "bluebird"}]})
    (glob, *_) = audit(root, "global")[-1:]
    assert (glob["actor"], glob["team_id"]) == ("master", None)
    assert glob["data"]["after"] == {"deny_patterns": [{"id": "codename", "regex": "bluebird"}]}


def test_readers_cannot_put(root: Admin) -> None:
    team, other = root.team(), root.team()
    key = root.key(team["id"])
    auditor = Admin(root.client, root.key(None, role="auditor")["key"])
    team_admin = Admin(root.client, root.key(team["id"], role="team_admin")["key"])
    member = Admin(root.client, root.key(team["id"])["key"])
    before = root.ok("GET", GUARD)["version"]
    for reader in (auditor, team_admin):
        assert reader.ok("GET", GUARD)["scope"] == "global"
        assert reader.ok("GET", f"/teams/{team['id']}{GUARD}")["scope"] == f"team:{team['id']}"
        assert reader.ok("GET", f"/keys/{key['id']}{GUARD}")["scope"] == f"key:{key['id']}"
        for path in (GUARD, f"/teams/{team['id']}{GUARD}", f"/keys/{key['id']}{GUARD}"):
            assert_error(reader.call("PUT", path, {"actions": {"secret": "off"}}), 403, "permission_denied")
    assert_error(team_admin.call("GET", f"/teams/{other['id']}{GUARD}"), 404, "not_found", "team_id")
    assert_error(member.call("GET", GUARD), 403, "permission_denied")
    assert_error(Admin(root.client, None).call("GET", GUARD), 401, "invalid_api_key")
    assert root.ok("GET", GUARD)["version"] == before  # nothing was written


def test_a_change_applies_to_the_next_request(root: Admin) -> None:
    team = root.team()
    key = root.key(team["id"])["key"]
    assert chat(root, key, f"say {CANARY}").status_code == 200
    root.ok("PUT", GUARD, {"deny_patterns": [{"id": "canary", "regex": CANARY}]})
    blocked = chat(root, key, f"say {CANARY}")
    assert blocked.status_code == 400, blocked.text
    err = blocked.json()["error"]
    assert err["code"] == "content_policy_violation" and "canary" in err["message"] and CANARY not in err["message"]
    # the team turns the pattern down to log for its own requests
    root.ok("PUT", f"/teams/{team['id']}{GUARD}", {"actions": {"canary": "log"}})
    assert chat(root, key, f"say {CANARY}").status_code == 200
    root.ok("PUT", f"/teams/{team['id']}{GUARD}", {})
    assert chat(root, key, f"say {CANARY}").status_code == 400


def test_answers_conform_to_the_openapi_document(root: Admin) -> None:
    doc = root.client.get(OPENAPI_PATH).json()

    def check(name: str, value: Any) -> None:
        Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": doc["components"]}).validate(value)

    team = root.team()
    check("GuardrailsOut", root.ok("PUT", GUARD, {"rules": [{"id": "r1", "regex": "x[0-9]+y"}]}))
    check("GuardrailsOut", root.ok("GET", GUARD))
    check("GuardrailOverrideOut", root.ok("PUT", f"/teams/{team['id']}{GUARD}", {"actions": {"r1": "off"}}))
    paths = doc["paths"]
    for path in (f"/admin/v1{GUARD}", "/admin/v1/teams/{team_id}/guardrails", "/admin/v1/keys/{key_id}/guardrails"):
        assert set(paths[path]) == {"get", "put"}
        assert paths[path]["get"]["x-permission"] == "guardrails:read"
        assert paths[path]["put"]["x-permission"] == "guardrails:write"
    assert doc["components"]["schemas"]["GuardrailOverride"]["additionalProperties"] is False
