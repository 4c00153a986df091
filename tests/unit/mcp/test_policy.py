"""Tool policies: globs over server/tool, deny by default, deny over allow, per-key narrowing, memoisation."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ferrogate.config.mcp import McpSettings
from ferrogate.mcp.policy import Policies, PolicyError, ToolPolicy

DOCS: dict[str, dict[str, Any]] = {
    "t1": {
        "allow": ["github", "docs/search", "files/read_*"],
        "deny": ["github/delete_*"],
        "tool_calls_per_minute": 30,
        "keys": {
            "narrow": {"allow": ["github/*"], "tool_calls_per_minute": 5},
            "nodocs": {"deny": ["docs/*"]},
        },
    },
    "all": {"allow": ["*"], "deny": ["danger/*"]},
}


@pytest.fixture
def policies() -> Policies:
    p = Policies(McpSettings(tool_calls_per_minute=100))
    p.apply(DOCS)
    return p


@pytest.mark.parametrize(
    ("team", "key", "server", "tool", "expected"),
    [
        ("t1", None, "github", "create_issue", True),  # "github" alone means github/*
        ("t1", None, "github", "delete_repo", False),  # deny wins
        ("t1", None, "docs", "search", True),
        ("t1", None, "docs", "index", False),  # not allowed
        ("t1", None, "files", "read_file", True),
        ("t1", None, "files", "write_file", False),
        ("t1", None, "githubx", "create_issue", False),  # "github" is not a prefix glob
        ("t1", "narrow", "github", "create_issue", True),
        ("t1", "narrow", "docs", "search", False),  # the key's allow must match too
        ("t1", "narrow", "github", "delete_repo", False),  # the team's deny still applies
        ("t1", "nodocs", "docs", "search", False),
        ("t1", "nodocs", "github", "create_issue", True),
        ("t1", "unknown-key", "docs", "search", True),  # no narrowing
        ("all", None, "anything", "at_all", True),
        ("all", None, "danger", "rm", False),
        ("other", None, "github", "create_issue", False),  # no stored policy: the default (nothing)
        (None, None, "github", "create_issue", False),
    ],
)
def test_allows(policies: Policies, team: str | None, key: str | None, server: str, tool: str, expected: bool) -> None:
    assert policies.allows(team, key)(server, tool) is expected


def test_globs_are_case_sensitive_and_support_classes(policies: Policies) -> None:
    policies.apply({"t": {"allow": ["srv/tool_[ab]", "srv/x?"]}})
    allowed = policies.allows("t", None)
    assert [allowed("srv", n) for n in ("tool_a", "tool_c", "xy", "xyz", "TOOL_a")] == [True, False, True, False, False]


def test_the_default_policy_applies_to_teams_without_one() -> None:
    p = Policies(McpSettings.model_validate({"default_policy": {"allow": ["docs"], "deny": ["docs/admin"]}}))
    p.apply({"t1": {"allow": ["github"]}})
    assert p.allows("t2", None)("docs", "search") is True
    assert p.allows("t2", None)("docs", "admin") is False
    assert p.allows("t1", None)("docs", "search") is False  # a stored policy replaces the default


def test_calls_per_minute_key_then_team_then_settings(policies: Policies) -> None:
    assert policies.calls_per_minute("t1", "narrow") == 5
    assert policies.calls_per_minute("t1", "nodocs") == 30
    assert policies.calls_per_minute("t1", None) == 30
    assert policies.calls_per_minute("all", None) == 100
    assert policies.calls_per_minute(None, None) == 100
    assert Policies(McpSettings()).calls_per_minute("x", "y") is None


def test_doc(policies: Policies) -> None:
    doc = policies.doc("t1")
    assert isinstance(doc, ToolPolicy) and doc.allow == ["github", "docs/search", "files/read_*"]
    assert doc.keys["narrow"].allow == ["github/*"] and doc.keys["nodocs"].allow is None
    assert policies.doc("nobody") is None


def test_predicates_are_memoised_until_apply(policies: Policies) -> None:
    first = policies.allows("t1", "narrow")
    assert policies.allows("t1", "narrow") is first
    assert policies.allows("t1", None) is not first
    policies.apply({"t1": {"allow": ["docs"]}})
    second = policies.allows("t1", "narrow")
    assert second is not first
    assert second("docs", "search") is True and first("docs", "search") is False  # old answers stay old


def test_predicate_answers_fast(policies: Policies) -> None:
    allowed = policies.allows("t1", None)
    pairs = [(f"s{i % 10}", f"tool_{i:03d}") for i in range(500)]
    for s, t in pairs:
        allowed(s, t)
    start = time.perf_counter()
    for _ in range(10):
        for s, t in pairs:
            allowed(s, t)
    per_listing = (time.perf_counter() - start) / 10
    assert per_listing < 0.001, f"{per_listing * 1e6:.0f} us for 500 memoised answers"


@pytest.mark.parametrize(
    ("doc", "param"),
    [
        ({"allow": ["ok", "bad glob"]}, "allow[1]"),
        ({"deny": ["x" * 201]}, "deny[0]"),
        ({"allow": [""]}, "allow[0]"),
        ({"allow": "github"}, "allow"),
        ({"tool_calls_per_minute": 0}, "tool_calls_per_minute"),
        ({"keys": {"k1": {"allow": ["a", "b;c"]}}}, "keys.k1.allow[1]"),
        ({"keys": {"k1": {"tool_calls_per_minute": -1}}}, "keys.k1.tool_calls_per_minute"),
        ({"keys": {"k1": {"nope": 1}}}, "keys.k1.nope"),
        ({"alow": []}, "alow"),
        (["allow"], "(body)"),
    ],
)
def test_validate_names_the_field(doc: object, param: str) -> None:
    with pytest.raises(PolicyError) as info:
        Policies(McpSettings()).validate("t1", doc)
    assert info.value.param == param and info.value.team_id == "t1"
    assert str(info.value).startswith(f"{param}: ")


def test_apply_validates_everything_before_changing_anything(policies: Policies) -> None:
    before = policies.allows("t1", None)
    with pytest.raises(PolicyError) as info:
        policies.apply({"t1": {"allow": []}, "t2": {"deny": ["bad glob"]}})
    assert info.value.team_id == "t2"
    assert policies.allows("t1", None) is before  # unchanged, memo kept
    assert policies.allows("t1", None)("github", "create_issue") is True
