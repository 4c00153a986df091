"""The Gitleaks rule file loader: the fields it reads, what it skips (with a warning), and errors that name the
rule id and its line in the file."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ferrogate.config.errors import ConfigError
from ferrogate.guardrails.rules import load_gitleaks, parse_gitleaks

FILE = """\
title = "team rules"

[allowlist]
description = "global"
stopwords = ["placeholder"]
paths = ['''vendor/''']

[[rules]]
id = "acme-api-key"
description = "ACME API key"
regex = '''(?i)acme[_-]?key\\s*[:=]\\s*['"]?([a-z0-9]{32})'''
secretGroup = 1
entropy = 3.5
keywords = ["acme"]
tags = ["api"]

[[rules.allowlists]]
regexes = ['''^0+$''']
stopwords = ["example"]

[[rules.allowlists]]
regexTarget = "line"
regexes = ['''test''']

[[rules]]
id = "pkcs12-file"
description = "a PKCS#12 file"
path = '''(?i)\\.p(?:12|fx)$'''

[[rules]]
id = "old-style"
regex = '''olds_[A-Z0-9]{20}'''
  [rules.allowlist]
  regexes = ['''olds_0{20}''']
  commits = ["abc123"]
"""


def test_reads_every_supported_field() -> None:
    rules = parse_gitleaks(FILE, "team.toml")
    assert [r.id for r in rules] == ["acme-api-key", "old-style"]  # the path-only rule is skipped
    acme = rules[0].core
    assert acme["category"] == "secret"
    assert acme["description"] == "ACME API key"
    assert acme["regex"] == r"""(?i)acme[_-]?key\s*[:=]\s*['"]?([a-z0-9]{32})"""
    assert acme["secret_group"] == 1
    assert acme["entropy"] == 3.5
    assert acme["keywords"] == ["acme"]
    assert acme["allowlist"] == ["^0+$", "test"]
    assert acme["stopwords"] == ["placeholder", "example"]  # the file's global allowlist first
    assert rules[0].where == "line 9" and rules[0].line == 9
    old = rules[1].core
    assert old["allowlist"] == ["olds_0{20}"]  # the older [rules.allowlist] table
    assert old["stopwords"] == ["placeholder"]
    assert old["secret_group"] == 0 and old["entropy"] is None
    assert rules[1].where == "line 31"


def test_unsupported_fields_are_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ferrogate.guardrails"):
        parse_gitleaks(FILE, "team.toml")
    messages = [r.getMessage() for r in caplog.records]
    assert any("'pkcs12-file' matches file paths only" in m and "skipped" in m for m in messages)
    assert any("allowlist paths ignored" in m for m in messages)
    assert any("'old-style': allowlist commits ignored" in m for m in messages)
    assert any("regexTarget 'line'" in m for m in messages)


def test_target_rules_of_a_global_allowlist() -> None:
    text = """
[[allowlists]]
targetRules = ["b"]
stopwords = ["only-b"]

[[rules]]
id = "a"
regex = "a+"

[[rules]]
id = "b"
regex = "b+"
"""
    a, b = parse_gitleaks(text)
    assert a.core["stopwords"] == [] and b.core["stopwords"] == ["only-b"]


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ('[[rules]]\nid = "x"\nregex = 5\n', "line 2", "rule 'x': regex must be a non-empty string"),
        ('[[rules]]\nid = "x"\n', "line 2", "rule 'x': has no regex"),
        ('\n\n[[rules]]\nregex = "a"\n', "line 3", "rules[0] (no id): id must be a string"),
        ('[[rules]]\nid = "x"\nregex = "a"\nsecretGroup = "1"\n', "line 2", "rule 'x': secretGroup must be an integer"),
        ('[[rules]]\nid = "x"\nregex = "a"\nentropy = "hi"\n', "line 2", "rule 'x': entropy must be a number"),
        ('[[rules]]\nid = "x"\nregex = "a"\nkeywords = "a"\n', "line 2", "rule 'x': keywords must be an array"),
        (
            '[[rules]]\nid = "x"\nregex = "a"\n\n[[rules]]\nid = "x"\nregex = "b"\n',
            "line 6",
            "rule 'x': the id is given twice (first at line 2)",
        ),
    ],
)
def test_a_malformed_rule_names_its_id_and_line(text: str, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_gitleaks(text, "rules.toml")
    assert caught.value.source == "rules.toml"
    ((path, problem),) = caught.value.problems
    assert path == where
    assert problem.startswith(message), problem


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_gitleaks("[[rules]\nid=", "bad.toml")
    assert caught.value.problems[0][0] == "(file)" and "not valid TOML" in caught.value.problems[0][1]
    with pytest.raises(ConfigError) as missing:
        load_gitleaks(tmp_path / "none.toml")
    assert missing.value.problems[0][0] == "(file)"
    good = tmp_path / "good.toml"
    good.write_text('[[rules]]\nid = "x"\nregex = "x{3}"\n')
    assert [r.id for r in load_gitleaks(good)] == ["x"]
