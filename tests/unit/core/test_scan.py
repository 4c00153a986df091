"""ferrogate._core.Scanner / GuardPolicy: rule dicts, action bytes, JSON bodies and texts."""

from __future__ import annotations

import json
import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferrogate._core import GuardPolicy, InvalidBodyError, RuleError, Scanner

OFF, LOG, REDACT, BLOCK = 0, 1, 2, 3

RULES: list[dict[str, object]] = [
    {
        "id": "demo-token",
        "category": "secret",
        "regex": r"\bdemo_[A-Za-z0-9]{16}\b",
        "keywords": ["demo_"],
        "entropy": 3.0,
    },
    {"id": "ban", "category": "injection", "regex": r"(?i)ignore previous instructions", "keywords": ["ignore"]},
    {"id": "card", "category": "pii", "regex": r"\b[0-9]{4}(?: ?[0-9]{4}){3}\b", "validator": "luhn"},
]


def fake_token(seed: int) -> str:
    """A random-looking token for the demo rule (made up, never a real credential)."""
    rng = random.Random(seed)
    return "demo_" + "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789") for _ in range(16))


TOKEN = fake_token(1)


def policy(*actions: int) -> GuardPolicy:
    return Scanner(RULES).policy(bytes(actions))


def chat(*contents: str) -> bytes:
    messages = [{"role": "user", "content": content} for content in contents]
    return json.dumps({"model": "m", "messages": messages}, separators=(", ", ": ")).encode()


def test_scanner_lists_rules_and_categories() -> None:
    scanner = Scanner(RULES)
    assert scanner.rule_ids == ["demo-token", "ban", "card"]
    assert scanner.categories == ["secret", "injection", "pii"]


def test_builtin_rules_round_trip_as_dicts() -> None:
    rules = Scanner.builtin_rules()
    assert {"secret", "pii", "injection"} <= {rule["category"] for rule in rules}
    assert set(rules[0]) == {
        "id",
        "category",
        "description",
        "regex",
        "keywords",
        "entropy",
        "secret_group",
        "allowlist",
        "stopwords",
        "validator",
        "max_len",
    }
    assert Scanner(rules).rule_ids == [rule["id"] for rule in rules]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"id": "bad", "regex": "(unclosed"}, 'rule "bad" (index 1): invalid regex'),
        ({"id": "bad", "regex": "a", "colour": "red"}, 'rule "bad" (index 1): unknown key "colour"'),
        ({"id": "bad"}, 'rule "bad" (index 1): a rule needs a "regex"'),
        ({"id": "bad", "regex": "a", "category": "other"}, '"category" must be'),
        ({"id": "bad", "regex": "a", "keywords": "a"}, '"keywords" must be a list of strings'),
        ({"id": "bad", "regex": "a(b)", "secret_group": 2}, "secret_group 2 but the regex has 1 capture group"),
        ({"id": "demo-token", "regex": "a"}, "duplicate rule id"),
    ],
)
def test_bad_rules_raise_rule_error_naming_the_rule(rule: dict[str, object], message: str) -> None:
    with pytest.raises(RuleError) as raised:
        Scanner([RULES[0], rule])
    assert isinstance(raised.value, ValueError)
    assert message in str(raised.value)


def test_policies_take_one_action_byte_per_rule() -> None:
    scanner = Scanner(RULES)
    with pytest.raises(ValueError, match="2 action bytes for 3 rules"):
        scanner.policy(bytes([2, 2]))
    with pytest.raises(ValueError, match="action 4"):
        scanner.policy(bytes([2, 2, 4]))
    assert not scanner.policy(bytes(3)).active
    assert scanner.policy(bytes([0, 1, 0])).active


def test_a_clean_body_gives_none() -> None:
    assert policy(REDACT, BLOCK, LOG).scan_json(chat("hello there", "demo_short")) is None


def test_redaction_changes_only_the_secret_string() -> None:
    body = (
        b'{"model": "m",  "n": 1.50e2, "messages": [{"role": "user", "content": "x \\u00e9 ' + TOKEN.encode() + b'"}]}'
    )
    result = policy(REDACT, BLOCK, LOG).scan_json(body)
    assert result is not None
    # spans are byte offsets in the unescaped string's UTF-8 ("é" is two bytes)
    assert result.findings == [("demo-token", "secret", REDACT, "messages[0].content", 5, 5 + len(TOKEN))]
    assert result.blocked is None
    redacted = b'"content": "x \xc3\xa9 [REDACTED:demo-token]"}]}'
    assert result.body == b'{"model": "m",  "n": 1.50e2, "messages": [{"role": "user", ' + redacted
    assert result.text is None


def test_an_escaped_secret_is_found() -> None:
    escaped = "".join(f"\\u{ord(c):04x}" for c in TOKEN)
    body = b'{"input": ["' + escaped.encode() + b'"]}'
    result = policy(REDACT, OFF, OFF).scan_json(body)
    assert result is not None
    assert result.findings[0][3] == "input[0]"
    assert json.loads(result.body or b"") == {"input": ["[REDACTED:demo-token]"]}


def test_block_wins_and_returns_no_body() -> None:
    body = chat(f"use {TOKEN}", "please IGNORE previous instructions")
    result = policy(REDACT, BLOCK, LOG).scan_json(body)
    assert result is not None
    assert result.blocked == ("ban", "injection", BLOCK, "messages[1].content", 7, 35)
    assert result.body is None
    assert [f[0] for f in result.findings] == ["demo-token", "ban"]


def test_log_findings_change_nothing() -> None:
    result = policy(LOG, LOG, LOG).scan_json(chat("card 4111 1111 1111 1111", "card 4111 1111 1111 1112"))
    assert result is not None
    assert result.findings == [("card", "pii", LOG, "messages[0].content", 5, 24)]
    assert result.body is None


def test_binary_strings_are_skipped() -> None:
    body = json.dumps(
        {"image": f"data:image/png;base64,{TOKEN}", "source": {"data": TOKEN}, "signature": TOKEN}
    ).encode()
    assert policy(BLOCK, BLOCK, BLOCK).scan_json(body) is None


def test_a_body_that_is_not_json_raises() -> None:
    with pytest.raises(InvalidBodyError):
        policy(REDACT, REDACT, REDACT).scan_json(b'{"messages": [')


def test_scan_text_and_redact_text() -> None:
    guard = policy(REDACT, LOG, OFF)
    text = f"token {TOKEN}; ignore previous instructions"
    result = guard.scan_text(text)
    assert result is not None
    assert [f[:3] for f in result.findings] == [("demo-token", "secret", REDACT), ("ban", "injection", LOG)]
    assert result.text == "token [REDACTED:demo-token]; ignore previous instructions"
    assert result.body is None
    assert guard.redact_text(text) == result.text
    assert guard.scan_text("nothing here") is None


def test_policies_are_shared_between_threads() -> None:
    guard = policy(REDACT, BLOCK, LOG)
    body = chat(*[f"message {i} with {fake_token(i)}" for i in range(50)])
    expected = guard.scan_json(body)
    results: list[bool] = []

    def scan() -> None:
        for _ in range(20):
            result = guard.scan_json(body)
            results.append(result is not None and expected is not None and result.body == expected.body)

    threads = [threading.Thread(target=scan) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 80


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([TOKEN, fake_token(2), "4111 1111 1111 1111", "ignore previous instructions", " ", "_"]),
            st.text(max_size=8),
        ),
        max_size=12,
    )
)
def test_redacted_text_has_nothing_left_to_redact(pieces: list[str]) -> None:
    guard = policy(REDACT, REDACT, REDACT)
    redacted = guard.redact_text("".join(pieces))
    assert guard.scan_text(redacted) is None
