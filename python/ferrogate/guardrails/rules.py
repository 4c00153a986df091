"""Guardrail rules as data: the built-in ones, the configuration's, and a Gitleaks rule file's.

A :class:`Rule` is what the registry compiles into the worker's one ``_core.Scanner``: the rule definition the
core takes (:attr:`Rule.core`, the keys of the Rust ``RuleDef``) and what the policy needs to give it an action
(its own action, the level that defined it, the team or key it belongs to, where it was written for errors).

Gitleaks rule files (``guardrails.gitleaks_rules``) load as they are (:func:`load_gitleaks`): each ``[[rules]]``
table's ``id``, ``description``, ``regex``, ``secretGroup``, ``entropy``, ``keywords`` and its allowlists
(``[[rules.allowlists]]``, or the older ``[rules.allowlist]``: ``regexes`` and ``stopwords``) become a secret
rule; the file's global allowlists apply to each of its rules. What a request has no counterpart for (file paths,
commits) is skipped with a logged warning: a rule that matches only file paths is left out.

Example:
    >>> rule = user_rule(UserRule(id="ticket", regex=r"TICKET-[0-9]{6}", keywords=["ticket-"]), 0)
    >>> rule.id, rule.category, rule.core["keywords"], rule.where
    ('ticket', 'custom', ['ticket-'], 'guardrails.rules[0].regex')
"""

from __future__ import annotations

import logging
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferrogate import _core
from ferrogate.config.errors import ConfigError
from ferrogate.config.model import Action, DenyPattern, UserRule

log = logging.getLogger("ferrogate.guardrails")

#: The levels a rule or an action can be set at, from the broadest: the configuration (built-in rules too), the
#: global policy document, a team's, a key's.
LEVELS = ("config", "global", "team", "key")


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of the scanner.

    Attributes:
        core: the definition ``_core.Scanner`` takes (``id``, ``category``, ``regex``, ``keywords``...).
        action: the rule's own action (``None``: its category's at each level).
        level: where it was defined (:data:`LEVELS`): its own action counts at that level.
        owner: the scope of a team's or a key's deny pattern (``"team:<id>"``), ``None`` for everyone's rules.
        name: the id the rule was written with (a scoped pattern's compiled id adds ``@<owner id>``).
        where: where it was written, for errors (``guardrails.rules[2].regex``, ``line 14``...).
    """

    core: dict[str, Any]
    action: Action | None = None
    level: str = "config"
    owner: str | None = None
    name: str = ""
    where: str = ""
    line: int = field(default=0, compare=False)

    @property
    def id(self) -> str:
        """The rule's id in the scanner (it names findings and redactions)."""
        rule_id: str = self.core["id"]
        return rule_id

    @property
    def category(self) -> str:
        """``secret``, ``pii``, ``injection`` or ``custom``."""
        category: str = self.core["category"]
        return category


def definition(
    rule_id: str,
    category: str,
    regex: str,
    *,
    description: str = "",
    keywords: list[str] | None = None,
    entropy: float | None = None,
    secret_group: int = 0,
    allowlist: list[str] | None = None,
    stopwords: list[str] | None = None,
) -> dict[str, Any]:
    """The ``_core.Scanner`` definition of a rule (every key of the Rust ``RuleDef``).

    Example:
        >>> definition("x", "custom", "abc")["secret_group"]
        0
    """
    return {
        "id": rule_id,
        "category": category,
        "description": description,
        "regex": regex,
        "keywords": list(keywords or ()),
        "entropy": entropy,
        "secret_group": secret_group,
        "allowlist": list(allowlist or ()),
        "stopwords": list(stopwords or ()),
        "validator": "none",
        "max_len": None,
    }


def builtin_rules() -> list[Rule]:
    """The core's built-in rules (secrets, PII, prompt-injection phrases), each with its own definition."""
    return [Rule(dict(core), where=f"built-in rule {core['id']!r}") for core in _core.Scanner.builtin_rules()]


def user_rule(rule: UserRule, index: int, level: str = "config", prefix: str = "guardrails.") -> Rule:
    """A rule of ``guardrails.rules`` (or of the global policy's ``rules`` with ``level="global"``)."""
    core = definition(
        rule.id,
        rule.category,
        rule.regex,
        description=rule.description,
        keywords=rule.keywords,
        entropy=rule.entropy,
        secret_group=rule.secret_group,
        allowlist=rule.allowlist,
        stopwords=rule.stopwords,
    )
    return Rule(core, rule.action, level, None, rule.id, f"{prefix}rules[{index}].regex")


def deny_rule(
    pattern: DenyPattern, index: int, level: str = "config", owner: str | None = None, prefix: str = "guardrails."
) -> Rule:
    """A deny pattern as an ``injection`` rule; a team's or key's (``owner`` ``"team:<id>"``) is compiled as
    ``<id>@<team or key id>`` so that every team may use the same names.

    Example:
        >>> deny_rule(DenyPattern(id="codename", regex="(?i)project x"), 0, "team", "team:t1").id
        'codename@t1'
    """
    rule_id = pattern.id if owner is None else f"{pattern.id}@{owner.partition(':')[2]}"
    core = definition(rule_id, "injection", pattern.regex, description=pattern.description)
    return Rule(core, pattern.action, level, owner, pattern.id, f"{prefix}deny_patterns[{index}].regex")


def load_gitleaks(path: str | Path) -> list[Rule]:
    """The rules of a Gitleaks rule file, as secret rules of the configuration.

    Raises:
        ConfigError: the file is missing or not TOML, or a rule is malformed (a missing id or regex, a field
            of the wrong type, an id given twice); the problem names the rule id and its line in the file.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [("(file)", exc.strerror or str(exc))]) from None
    return parse_gitleaks(text, source)


def parse_gitleaks(text: str, source: str = "gitleaks.toml") -> list[Rule]:
    r""":func:`load_gitleaks` of the file's text (``source`` names it in errors and warnings).

    Example:
        >>> toml = "\n".join(['[[rules]]', 'id = "acme-token"', "regex = '''acme_[a-z0-9]{32}'''",
        ...                   'keywords = ["acme_"]', '[[rules.allowlists]]', 'stopwords = ["example"]'])
        >>> rule, = parse_gitleaks(toml)
        >>> rule.id, rule.category, rule.core["stopwords"], rule.where
        ('acme-token', 'secret', ['example'], 'line 2')
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [("(file)", f"not valid TOML: {exc}")]) from None
    tables = doc.get("rules", [])
    if not isinstance(tables, list):
        raise ConfigError(source, [("rules", "must be an array of tables ([[rules]])")])
    headers = [m.start() for m in re.finditer(r"(?m)^[ \t]*\[\[[ \t]*rules[ \t]*\]\]", text)]
    global_regexes, global_stopwords = _global_allowlist(doc, source)
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(tables):
        start = headers[index] if index < len(headers) else 0
        rule = _gitleaks_rule(table, index, text, source, start, global_regexes, global_stopwords)
        if rule is None:
            continue
        if rule.id in seen:
            raise ConfigError(
                source, [(rule.where, f"rule {rule.id!r}: the id is given twice (first at line {seen[rule.id]})")]
            )
        seen[rule.id] = rule.line
        rules.append(rule)
    return rules


def _gitleaks_rule(
    table: Any,
    index: int,
    text: str,
    source: str,
    start: int,
    global_regexes: dict[str | None, list[str]],
    global_stopwords: dict[str | None, list[str]],
) -> Rule | None:
    """One ``[[rules]]`` table as a rule (``None``: a rule the gateway cannot apply, with a warning)."""
    if not isinstance(table, dict):
        raise ConfigError(source, [(f"rules[{index}]", "must be a table")])
    rule_id = table.get("id")
    line = (_id_line(text, rule_id, start) if isinstance(rule_id, str) else 0) or _line(text, start)
    where = f"line {line}"

    def bad(message: str) -> ConfigError:
        name = f"rule {rule_id!r}" if isinstance(rule_id, str) else f"rules[{index}] (no id)"
        return ConfigError(source, [(where, f"{name}: {message}")])

    if not isinstance(rule_id, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", rule_id):
        raise bad("id must be a string of letters, digits, '.', '_' and '-'")
    regex = table.get("regex")
    if regex is None:
        if "path" in table:
            log.warning("%s: rule %r matches file paths only (%s); requests have none: skipped", source, rule_id, where)
            return None
        raise bad("has no regex")
    if not isinstance(regex, str) or not regex:
        raise bad("regex must be a non-empty string")
    if "path" in table:
        log.warning(
            "%s: rule %r: its path condition is ignored (%s): requests have no file path", source, rule_id, where
        )
    description = _typed(table, "description", str, "", bad)
    group = _typed(table, "secretGroup", int, 0, bad)
    entropy = table.get("entropy")
    if entropy is not None and (isinstance(entropy, bool) or not isinstance(entropy, int | float)):
        raise bad("entropy must be a number")
    if group < 0 or isinstance(group, bool):
        raise bad("secretGroup must be a non-negative integer")
    keywords = _strings(table, "keywords", bad)
    regexes = list(global_regexes.get(None, ())) + list(global_regexes.get(rule_id, ()))
    stopwords = list(global_stopwords.get(None, ())) + list(global_stopwords.get(rule_id, ()))
    lists = table.get("allowlists", [])
    if "allowlist" in table:  # the format before Gitleaks 8.21: one table
        lists = [table["allowlist"], *lists] if isinstance(lists, list) else lists
    if not isinstance(lists, list):
        raise bad("allowlists must be an array of tables")
    for allow in lists:
        if not isinstance(allow, dict):
            raise bad("an allowlist must be a table")
        _unsupported(allow, source, rule_id, where)
        regexes += _strings(allow, "regexes", bad)
        stopwords += _strings(allow, "stopwords", bad)
    core = definition(
        rule_id,
        "secret",
        regex,
        description=description,
        keywords=keywords,
        entropy=None if entropy is None else float(entropy),
        secret_group=group,
        allowlist=regexes,
        stopwords=stopwords,
    )
    return Rule(core, None, "config", None, rule_id, where, line)


def _global_allowlist(
    doc: dict[str, Any], source: str
) -> tuple[dict[str | None, list[str]], dict[str | None, list[str]]]:
    """The file's own allowlists (``[allowlist]``, ``[[allowlists]]``): regexes and stopwords for every rule
    (key ``None``) or for the rules in their ``targetRules``."""
    found: list[Any] = []
    if isinstance(doc.get("allowlist"), dict):
        found.append(doc["allowlist"])
    if isinstance(doc.get("allowlists"), list):
        found += doc["allowlists"]
    regexes: dict[str | None, list[str]] = {}
    stopwords: dict[str | None, list[str]] = {}

    def bad(message: str) -> ConfigError:
        return ConfigError(source, [("allowlist", message)])

    for allow in found:
        if not isinstance(allow, dict):
            raise bad("must be a table")
        _unsupported(allow, source, None, "the global allowlist")
        targets = allow.get("targetRules") or [None]
        for target in targets:
            regexes.setdefault(target, []).extend(_strings(allow, "regexes", bad))
            stopwords.setdefault(target, []).extend(_strings(allow, "stopwords", bad))
    return regexes, stopwords


def _unsupported(allow: dict[str, Any], source: str, rule_id: str | None, where: str) -> None:
    """Warn about the allowlist conditions a request has nothing to check against."""
    name = f"rule {rule_id!r}" if rule_id else "the file"
    skipped = [k for k in ("paths", "commits") if allow.get(k)]
    if skipped:
        log.warning("%s: %s: allowlist %s ignored (%s): requests have none", source, name, "/".join(skipped), where)
    target = allow.get("regexTarget", "secret")
    if target != "secret":
        log.warning("%s: %s: allowlist regexTarget %r is checked against the secret (%s)", source, name, target, where)


def _typed(table: dict[str, Any], key: str, kind: type, default: Any, bad: Any) -> Any:
    value = table.get(key, default)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise bad(f"{key} must be {'a string' if kind is str else 'an integer'}")
    return value


def _strings(table: dict[str, Any], key: str, bad: Any) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad(f"{key} must be an array of strings")
    return list(value)


def _id_line(text: str, rule_id: str, start: int) -> int:
    """The line of ``id = "<rule_id>"`` in the file from offset ``start`` (its ``[[rules]]`` header) on; 0 when
    it is written some other way."""
    pattern = re.compile(rf"""(?m)^[ \t]*id[ \t]*=[ \t]*(["']){re.escape(rule_id)}\1""")
    found = pattern.search(text, start)
    return 0 if found is None else _line(text, found.start())


def _line(text: str, offset: int) -> int:
    """The 1-based line of ``offset`` in ``text``."""
    return text.count("\n", 0, offset) + 1
