"""How policy documents merge: configuration <- global <- team <- key, a rule id before its category at each
level, a rule's own action at the level that defined it, and deny patterns of one team or key only for it."""

from __future__ import annotations

from typing import Any

import pytest

from ferrogate.config.model import DenyPattern, GuardrailSettings
from ferrogate.guardrails.policy import (
    Layer,
    PolicyError,
    action_bytes,
    action_of,
    config_layer,
    doc_layer,
    parse_doc,
    parse_scope,
    setting,
)
from ferrogate.guardrails.rules import Rule, definition, deny_rule

AWS = Rule(definition("aws-access-key", "secret", "AKIA[0-9A-Z]{16}"))
EMAIL = Rule(definition("email", "pii", "[a-z]+@[a-z]+"))
CONFIG = config_layer(GuardrailSettings(actions={"email": "log"}))


def layers(
    glob: dict[str, Any] | None = None, team: dict[str, Any] | None = None, key: dict[str, Any] | None = None
) -> list[Layer]:
    found = []
    for level, doc in (("key", key), ("team", team), ("global", glob)):
        if doc is not None:
            found.append(doc_layer(level, parse_doc(f"{level}:x" if level != "global" else "global", doc)))
    return [*found, CONFIG]


@pytest.mark.parametrize(
    ("glob", "team", "key", "aws", "email"),
    [
        (None, None, None, "redact", "log"),  # the defaults (secret: redact) and the config's rule id
        ({"actions": {"secret": "block"}}, None, None, "block", "log"),
        ({"actions": {"pii": "off"}}, None, None, "redact", "off"),  # global category beats config rule id
        ({"actions": {"secret": "block"}}, {"actions": {"aws-access-key": "log"}}, None, "log", "log"),
        ({"actions": {"aws-access-key": "block"}}, {"actions": {"secret": "log"}}, None, "log", "log"),
        (None, {"actions": {"secret": "log"}}, {"actions": {"secret": "block", "pii": "redact"}}, "block", "redact"),
        (None, {"actions": {"aws-access-key": "off"}}, {"actions": {}}, "off", "log"),  # an empty key doc: team's
        (None, None, {"actions": {"aws-access-key": "block", "secret": "log"}}, "block", "log"),  # id before category
    ],
)
def test_precedence(
    glob: dict[str, Any] | None, team: dict[str, Any] | None, key: dict[str, Any] | None, aws: str, email: str
) -> None:
    found = layers(glob, team, key)
    assert action_of(AWS, found) == aws
    assert action_of(EMAIL, found) == email


def test_config_defaults_fill_the_categories_left_out() -> None:
    settings = GuardrailSettings(actions={"pii": "redact"})
    assert dict(config_layer(settings).actions) == {
        "secret": "redact",
        "pii": "redact",
        "injection": "log",
        "custom": "block",
    }


def test_a_rules_own_action_counts_at_its_level() -> None:
    codename = deny_rule(DenyPattern(id="codename", regex="bluebird"), 0)  # config, action block
    assert action_of(codename, [CONFIG]) == "block"  # own action before config's injection: log
    assert action_of(codename, layers(glob={"actions": {"injection": "off"}})) == "off"  # a broader-scoped override
    config = config_layer(GuardrailSettings(actions={"codename": "log"}))
    assert action_of(codename, [config]) == "log"  # the config's actions by id before the rule's own


def test_team_and_key_deny_patterns_apply_to_their_owner_only() -> None:
    mine = deny_rule(DenyPattern(id="codename", regex="bluebird", action="redact"), 0, "team", "team:t1")
    assert (mine.id, mine.name, mine.owner) == ("codename@t1", "codename", "team:t1")
    team = doc_layer("team", parse_doc("team:t1", {}))
    assert action_bytes([AWS, mine], [team, CONFIG], frozenset({"team:t1"})) == bytes([2, 2])
    assert action_bytes([AWS, mine], [CONFIG], frozenset({"team:t2"})) == bytes([2, 0])
    # the owner's document names it by the id it was written with, a key's by its compiled id
    team = doc_layer("team", parse_doc("team:t1", {"actions": {"codename": "log"}}))
    assert action_of(mine, [team, CONFIG]) == "log"
    key = doc_layer("key", parse_doc("key:k1", {"actions": {"codename@t1": "block"}}))
    assert action_of(mine, [key, team, CONFIG]) == "block"
    key = doc_layer("key", parse_doc("key:k1", {"actions": {"codename": "off"}}))
    assert action_of(mine, [key, team, CONFIG]) == "log"  # not the key's pattern: its plain id names nothing here


def test_settings_come_from_the_most_specific_level() -> None:
    found = layers(glob={"responses": True}, team={"default_classification": "confidential"}, key={"responses": False})
    assert setting(found, "responses") is False
    assert setting(found, "default_classification") == "confidential"
    assert setting([CONFIG], "default_classification") == "internal"


@pytest.mark.parametrize(
    ("scope", "doc", "path", "message"),
    [
        ("team:t1", [], "(document)", "must be a JSON object"),
        ("team:t1", {"actions": {"pii": "mask"}}, "actions.pii", "Input should be 'off', 'log', 'redact' or 'block'"),
        ("team:t1", {"actions": {"": "log"}}, "actions", "'' is neither a category nor a rule id"),
        ("team:t1", {"colour": "red"}, "colour", "Extra inputs are not permitted"),
        ("key:k1", {"default_classification": "secret"}, "default_classification", "Input should be 'public'"),
        ("key:k1", {"rules": [{"id": "x", "regex": "y"}]}, "rules", "only the global policy adds rules"),
        (
            "team:t1",
            {"deny_patterns": [{"id": "a", "regex": "x"}, {"id": "a", "regex": "y"}]},
            "deny_patterns[1].id",
            "duplicate id 'a'",
        ),
        (
            "team:t1",
            {"deny_patterns": [{"id": "-a", "regex": "x"}]},
            "deny_patterns[0].id",
            "String should match pattern",
        ),
        (
            "global",
            {"rules": [{"id": "x", "regex": "y", "entropy": 9}]},
            "rules[0].entropy",
            "Input should be less than",
        ),
    ],
)
def test_a_bad_document_names_the_path(scope: str, doc: Any, path: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_doc(scope, doc)
    assert caught.value.scope == scope
    assert caught.value.param == path
    assert caught.value.problems[0][1].startswith(message), caught.value.problems


@pytest.mark.parametrize("scope", ["team", "team:", "teams:t1", "user:u1", ""])
def test_bad_scopes(scope: str) -> None:
    with pytest.raises(PolicyError):
        parse_scope(scope)
