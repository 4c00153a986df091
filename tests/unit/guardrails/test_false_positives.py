"""The built-in scanner rules against a false-positive corpus: real source code (a deterministic sample
of the Python standard library's own files, which every machine running the tests has) and ordinary
prose full of near misses give no finding of a secret rule.

The PII rules do find things in that corpus (the standard library's tests are full of e-mail and IP
addresses); their findings per MB, by rule, are printed (``pytest -s``) and recorded in the docs, not
asserted, and neither is any timing.
"""

from __future__ import annotations

import sysconfig
from collections import Counter
from functools import cache
from pathlib import Path

from ferrogate import _core

STDLIB = Path(sysconfig.get_paths()["stdlib"])

# Every third source file of the sorted list, up to this many bytes, the prose of the documentation's
# topics (pydoc_data/topics.py) and the files of KNOWN, so the sample spans every package, tests included.
SAMPLE_EVERY = 3
SAMPLE_BYTES = 12_000_000

# Hard-coded example credentials in the standard library: true positives of a secret rule, so they
# are expected findings (and must stay found), not false positives. (relative path, rule id, secret)
KNOWN = {
    # a docstring example of urllib.request: passwd='geheim$parole'
    ("urllib/request.py", "generic-password", "geheim$parole"),
}

# Prose in the register of chat prompts, with the words and shapes the secret rules look for.
PROSE = """\
The password policy requires at least twelve characters; rotate your password every 90 days.
Set the api_key in your environment, never in code, and keep the secret in a vault.
Our access token expires after one hour; the refresh token lasts a week.
Please ignore the warnings from the previous build and rerun the tests with -x.
The system prompt is set by the operator and users cannot change it.
Version 1.2.3 fixed the token counting bug; 2.0.0-rc1 changes the default secret backend.
Meeting on 2024-05-01 at 10:30 in room 4.12; dial-in code 4455 6677.
The invoice total is 1,234.56 EUR, due 30 days after 03/04/2025, reference INV-2024-00017.
A UUID looks like 123e4567-e89b-12d3-a456-426614174000 and a git commit like 3f2a9c1.
The SHA-256 of the empty string starts with e3b0c44298fc1c149afbf4c8996fb924.
Run `export DATABASE_URL=postgres://localhost/app` and then `make migrate`.
Use a key of 32 bytes: secrets.token_bytes(32), base64-encoded, and store it as SECRET_KEY.
"Secret: a novel" was the top seller; the sequel, "Password", sold fewer copies.
In YAML write `password: ${DB_PASSWORD}` and in JSON {"password": "<your password>"}.
Tokens per minute: 90,000; requests per minute: 3,500; max_tokens: 4096.
The Bearer scheme carries the token in the Authorization header; see RFC 6750 section 2.1.
AWS access keys begin with AKIA; the documentation example is AKIAIOSFODNN7EXAMPLE.
GitHub personal access tokens start with ghp_ and fine-grained ones with github_pat_.
Slack tokens begin with xoxb- (bots) or xoxp- (users); webhooks live under hooks.slack.com.
A JWT has three base64url parts separated by dots: header.payload.signature.
Private keys begin with a line like -----BEGIN PRIVATE KEY----- and must never be shared.
The function skips hidden files and ignores the initial system messages of the log.
Replace <api-key> with your key, e.g. sk-... from the dashboard, and keep it private.
"""


@cache
def sample() -> tuple[tuple[str, str], ...]:
    """The corpus: (name, text) of the sampled standard library files, then the prose."""
    files = sorted(
        path
        for path in STDLIB.rglob("*.py")
        if path.relative_to(STDLIB).parts[0] not in {"site-packages", "dist-packages"}
    )
    picked = files[::SAMPLE_EVERY]
    for extra in ["pydoc_data/topics.py", *sorted({name for name, _, _ in KNOWN})]:
        path = STDLIB / extra
        if path.exists() and path not in picked:
            picked.append(path)
    texts: list[tuple[str, str]] = []
    size = 0
    for path in picked:
        text = path.read_text(encoding="utf-8", errors="replace")
        if size + len(text) > SAMPLE_BYTES:
            break
        size += len(text)
        texts.append((path.relative_to(STDLIB).as_posix(), text))
    texts.append(("<prose>", PROSE))
    return tuple(texts)


def policy_for(category: str) -> tuple[_core.Scanner, _core.GuardPolicy]:
    """The built-in scanner and a policy that logs the rules of one category."""
    scanner = _core.Scanner(_core.Scanner.builtin_rules())
    return scanner, scanner.policy(bytes(1 if c == category else 0 for c in scanner.categories))


def findings(category: str) -> list[tuple[str, str, str]]:
    """(file, rule id, found text) of every finding of the rules of `category` in the corpus."""
    _, policy = policy_for(category)
    found = []
    for name, text in sample():
        result = policy.scan_text(text)
        if result is not None:
            encoded = text.encode()
            for rule, _category, _action, _path, start, end in result.findings:
                found.append((name, rule, encoded[start:end].decode()))
    return found


def test_the_sample_is_large_and_spans_the_library() -> None:
    corpus = sample()
    names = [name for name, _ in corpus]
    assert sum(len(text) for _, text in corpus) > 5_000_000
    assert any(name.startswith("test/") for name in names)
    assert any(name.startswith("email/") for name in names)
    assert names[-1] == "<prose>"


def test_secret_rules_find_nothing_but_known_example_credentials() -> None:
    found = set(findings("secret"))
    assert found - KNOWN == set()
    texts = dict(sample())
    assert {known for known in KNOWN if known[2] in texts.get(known[0], "")} <= found


def test_prose_near_misses_give_no_secret_finding() -> None:
    _, policy = policy_for("secret")
    assert policy.scan_text(PROSE) is None
    assert policy.scan_text(PROSE.upper()) is None


def test_pii_false_positive_rate() -> None:
    """Findings per MB of every PII rule (printed for the docs; each rule has some bound)."""
    scanner, _ = policy_for("pii")
    megabytes = sum(len(text.encode()) for _, text in sample()) / 1e6
    counts = Counter(rule for _, rule, _ in findings("pii"))
    pii_rules = [rule for rule, category in zip(scanner.rule_ids, scanner.categories, strict=True) if category == "pii"]
    print(f"\nPII findings in {megabytes:.1f} MB of the standard library and prose:")
    for rule in pii_rules:
        print(f"  {rule:16} {counts[rule]:6d}  {counts[rule] / megabytes:6.2f}/MB")
    assert set(counts) <= set(pii_rules)
    # a loose bound, so a rule that starts matching ordinary code wholesale fails
    assert all(count / megabytes < 100 for count in counts.values()), counts
