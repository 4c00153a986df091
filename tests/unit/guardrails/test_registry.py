"""The worker's guardrails: one scanner for every rule, the policy of each (team, key), changes applied all or
nothing, documents validated before they are stored, and start-up errors that name the rule."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from ferrogate import _core
from ferrogate.config.errors import ConfigError
from ferrogate.config.model import GuardrailSettings
from ferrogate.guardrails import Guardrails, PolicyError

# a made-up token format (nothing real has it), assembled here so that no file carries a whole sample
TOKEN = "acme_" + "q7f3k9x2" + "m4p8w1z6"
RULES: list[dict[str, Any]] = [{"id": "acme-token", "regex": "acme_[a-z0-9]{16}", "keywords": ["acme_"]}]


def settings(**fields: Any) -> GuardrailSettings:
    return GuardrailSettings.model_validate({"rules": RULES, **fields})


def body(text: str) -> bytes:
    return orjson.dumps({"model": "m", "messages": [{"role": "user", "content": text}]})


def scan(guard: Guardrails, text: str, team: str | None = "t1", key: str | None = "k1") -> Any:
    policy, _, _ = guard.policy_for(team, key)
    return None if policy is None else policy.scan_json(body(text))


def test_config_rules_and_their_actions() -> None:
    guard = Guardrails(settings())  # custom: block by default
    found = scan(guard, f"my token is {TOKEN}")
    assert found.blocked[:4] == ("acme-token", "custom", 3, "messages[0].content")
    guard = Guardrails(settings(actions={"acme-token": "redact"}))
    found = scan(guard, f"my token is {TOKEN}")
    assert found.blocked is None
    assert TOKEN.encode() not in found.body and b"[REDACTED:acme-token]" in found.body
    assert scan(guard, "nothing to see") is None


def test_off_and_defaults() -> None:
    off = Guardrails(settings(enabled=False))
    assert off.policy_for("t1", "k1") == (None, False, "internal")
    every_rule_off = {c: "off" for c in ("secret", "pii", "injection", "custom")}
    assert Guardrails(settings(actions=every_rule_off)).policy_for(None, None)[0] is None
    guard = Guardrails(settings(responses=True, default_classification="public"))
    effective = guard.effective("t1", "k1")
    assert (effective.responses, effective.default_classification) == (True, "public")
    assert effective.answers is not None
    assert guard.effective("t2", "k2") is effective  # teams and keys without documents share one policy


def test_a_bad_config_rule_stops_start_up_naming_it() -> None:
    with pytest.raises(ConfigError) as caught:
        Guardrails(GuardrailSettings.model_validate({"rules": [*RULES, {"id": "broken", "regex": "ab(c"}]}))
    ((path, message),) = caught.value.problems
    assert path == "guardrails.rules[1].regex"
    assert message.startswith("rule 'broken' does not compile")


def test_a_bad_gitleaks_regex_names_the_rule_and_its_line(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rules]]\nid = "fine"\nregex = "fine_[0-9]{8}"\n\n'
        "[[rules]]\n"
        'description = "broken"\n'
        'id = "broken-rule"\n'
        "regex = '''broken_(?P<x[0-9]+'''\n"
    )
    with pytest.raises(ConfigError) as caught:
        Guardrails(GuardrailSettings(gitleaks_rules=str(rules)))
    assert caught.value.source == str(rules)
    ((path, message),) = caught.value.problems
    assert path == "line 7"
    assert "'broken-rule'" in message
    assert str(rules) in str(caught.value) and "line 7" in str(caught.value)


def test_gitleaks_rules_load_and_may_replace_a_built_in(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    builtin = _core.Scanner.builtin_rules()[0]["id"]
    rules = tmp_path / "rules.toml"
    rules.write_text(
        f'[[rules]]\nid = "{builtin}"\nregex = "zz_[0-9]{{8}}"\n[[rules]]\nid = "gl"\nregex = "gl_[0-9]{{8}}"\n'
    )
    with caplog.at_level(logging.INFO, logger="ferrogate.guardrails"):
        guard = Guardrails(GuardrailSettings(gitleaks_rules=str(rules)))
    assert guard.rule_ids.count(builtin) == 1 and "gl" in guard.rule_ids
    assert any("replace the built-in" in r.getMessage() for r in caplog.records)
    found = scan(guard, "token zz_12345678")
    assert found is not None and found.findings[0][0] == builtin and found.findings[0][1] == "secret"
    clash = tmp_path / "clash.toml"
    clash.write_text('[[rules]]\nid = "acme-token"\nregex = "x{3}"\n')
    with pytest.raises(ConfigError, match="acme-token"):
        Guardrails(settings(gitleaks_rules=str(clash)))


def test_apply_team_and_key_documents() -> None:
    guard = Guardrails(settings())
    guard.apply({"team:t1": {"actions": {"custom": "redact"}}, "key:k2": {"actions": {"acme-token": "log"}}})
    assert scan(guard, TOKEN).blocked is None  # team t1: redact
    assert scan(guard, TOKEN, "t2", "k1").blocked is not None  # another team: the config's block
    logged = scan(guard, TOKEN, "t1", "k2")  # the key's document before its team's
    assert logged.blocked is None and logged.body is None and logged.findings[0][2] == 1
    guard.apply({})  # every document removed
    assert scan(guard, TOKEN).blocked is not None


def test_deny_patterns_of_a_team_and_global_rules() -> None:
    guard = Guardrails(settings())
    scanner = guard._state.scanner
    guard.apply(
        {
            "global": {"rules": [{"id": "ticket", "regex": "TCK-[0-9]{6}", "action": "log"}]},
            "team:t1": {"deny_patterns": [{"id": "codename", "regex": "(?i)project bluebird"}]},
        }
    )
    assert guard._state.scanner is not scanner  # new rules: compiled again
    assert "codename@t1" in guard.rule_ids and "ticket" in guard.rule_ids
    found = scan(guard, "status of Project Bluebird?")
    assert found.blocked[:2] == ("codename@t1", "injection")
    assert scan(guard, "status of Project Bluebird?", "t2", "k9") is None  # not team t2's pattern
    assert scan(guard, "see TCK-123456", "t2", "k9").findings[0][:3] == ("ticket", "custom", 1)
    scanner = guard._state.scanner
    guard.apply({**guard.docs, "key:k1": {"actions": {"codename@t1": "log"}}})
    assert guard._state.scanner is scanner  # only actions changed: the same scanner
    assert scan(guard, "project bluebird").blocked is None


def test_a_bad_document_changes_nothing() -> None:
    guard = Guardrails(settings())
    guard.apply({"team:t1": {"actions": {"custom": "log"}}})
    before = guard._state
    bad = {"team:t1": {"actions": {"custom": "off"}}, "team:t2": {"deny_patterns": [{"id": "x", "regex": "a(b"}]}}
    with pytest.raises(PolicyError) as caught:
        guard.apply(bad)
    assert caught.value.scope == "team:t2"
    assert caught.value.param == "deny_patterns[0].regex"
    assert "rule 'x' does not compile" in str(caught.value)
    assert guard._state is before
    assert scan(guard, TOKEN).findings[0][2] == 1  # still team t1's log
    with pytest.raises(PolicyError):
        guard.apply({"team:t1": {"actions": {"custom": "shout"}}})
    with pytest.raises(PolicyError, match="already a rule of the configuration"):
        guard.apply({"global": {"deny_patterns": [{"id": "acme-token", "regex": "x"}]}})
    assert guard._state is before


def test_stale_action_names_are_ignored_when_applied(caplog: pytest.LogCaptureFixture) -> None:
    guard = Guardrails(settings())
    with caplog.at_level(logging.WARNING, logger="ferrogate.guardrails"):
        guard.apply({"team:t1": {"actions": {"gone-rule": "log"}}})
    assert any("actions.gone-rule names no rule" in r.getMessage() for r in caplog.records)


def test_validate() -> None:
    guard = Guardrails(settings())
    doc = {"actions": {"acme-token": "log", "pii": "redact"}, "deny_patterns": [{"id": "codename", "regex": "x+"}]}
    assert guard.validate("team:t1", doc) == doc | {"deny_patterns": [{"id": "codename", "regex": "x+"}]}
    assert guard.validate("team:t1", {"actions": {"codename": "log"}, "deny_patterns": doc["deny_patterns"]})
    assert guard.docs == {}  # validating stores nothing
    with pytest.raises(PolicyError) as caught:
        guard.validate("global", {"rules": [{"id": "bad", "regex": "[a-"}]})
    assert caught.value.param == "rules[0].regex" and "'bad' does not compile" in str(caught.value)
    with pytest.raises(PolicyError) as caught:
        guard.validate("key:k1", {"actions": {"no-such-rule": "block"}})
    assert caught.value.param == "actions.no-such-rule"
    builtin = guard.rule_ids[0]
    with pytest.raises(PolicyError, match="already a built-in rule"):
        guard.validate("global", {"rules": [{"id": builtin, "regex": "x"}]})
    with pytest.raises(PolicyError):
        guard.validate("team:t1", {"rules": [{"id": "x", "regex": "x"}]})


def test_config_check_refuses_a_bad_gitleaks_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ferrogate.cli import main

    rules = tmp_path / "rules.toml"
    rules.write_text('[[rules]]\nid = "ok"\nregex = "ok_[0-9]{4}"\n\n[[rules]]\nid = "bad-one"\nregex = "a{2,1}"\n')
    config = tmp_path / "config.yaml"
    config.write_text(f"guardrails: {{gitleaks_rules: '{rules}'}}\nupstreams: [{{name: m, provider: mock}}]\n")
    assert main(["config", "check", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"invalid configuration in {rules}" in err and "line 6: rule 'bad-one' does not compile" in err
    rules.write_text('[[rules]]\nid = "ok"\nregex = "ok_[0-9]{4}"\n')
    assert main(["config", "check", str(config)]) == 0
