"""The worker's guardrails: one compiled scanner for every rule, and each request's effective policy.

:class:`Guardrails` holds one ``_core.Scanner`` over the built-in rules, the configuration's (``rules``, the
Gitleaks file, ``deny_patterns``), the global policy's rules and deny patterns, and every team's and key's deny
patterns; and the policy documents (:mod:`ferrogate.guardrails.policy`) that give each rule an action for a
request. :meth:`Guardrails.effective` (the guard phase, once per request) is a dict lookup: the policy of a
(team, key) pair is built once and kept until the documents change. :meth:`Guardrails.apply` (the admin API's
change feed) replaces every document at once: the new scanner and policies are built aside and swapped in, so a
bad document changes nothing. :meth:`Guardrails.validate` checks one document before it is stored.

Example:
    >>> from ferrogate.config.model import GuardrailSettings
    >>> guard = Guardrails(GuardrailSettings(deny_patterns=[{"id": "codename", "regex": "(?i)project bluebird"}]))
    >>> policy, responses, classification = guard.policy_for("team_1", "key_1")
    >>> policy.scan_json(b'{"input": "about Project Bluebird"}').blocked[:4]
    ('codename', 'injection', 3, 'input')
    >>> guard.apply({"team:team_1": {"actions": {"codename": "log"}}})
    >>> guard.policy_for("team_1", "key_1")[0].scan_json(b'{"input": "project bluebird"}').blocked is None
    True
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ferrogate import _core
from ferrogate.config.errors import ConfigError
from ferrogate.config.model import GuardrailSettings
from ferrogate.guardrails.policy import (
    Layer,
    PolicyDoc,
    PolicyError,
    action_bytes,
    config_layer,
    doc_layer,
    parse_doc,
    parse_scope,
    setting,
    unknown_names,
)
from ferrogate.guardrails.rules import Rule, builtin_rules, deny_rule, load_gitleaks, user_rule

log = logging.getLogger("ferrogate.guardrails")


class Effective(NamedTuple):
    """A request's guardrails: the policy its body is scanned with (``None``: nothing to scan), whether answers
    are scanned, its default classification, and the policy answers are masked with (``None``: not scanned;
    on answers block rules mask like redact rules)."""

    policy: _core.GuardPolicy | None
    responses: bool
    default_classification: str
    answers: _core.GuardPolicy | None


class _State:
    """One consistent set: the rules in scanner order, the scanner, the documents' layers, the policies built."""

    __slots__ = ("cache", "docs", "keys", "layers", "rules", "scanner", "teams")

    def __init__(
        self, rules: list[Rule], scanner: _core.Scanner, layers: dict[str, Layer], docs: dict[str, PolicyDoc]
    ) -> None:
        self.rules = rules
        self.scanner = scanner
        self.layers = layers  # "config", "global", "team:<id>", "key:<id>"
        self.docs = docs
        self.teams = frozenset(s[5:] for s in layers if s.startswith("team:"))
        self.keys = frozenset(s[4:] for s in layers if s.startswith("key:"))
        self.cache: dict[tuple[str | None, str | None], Effective] = {}


class Guardrails:
    """The guardrails of one worker, built from ``guardrails:`` of the configuration.

    Args:
        settings: the configuration's guardrails.
        docs: the stored policy documents to start with (scope -> document; see :meth:`apply`).

    Raises:
        ConfigError: a rule of the configuration or of the Gitleaks file does not compile (naming the rule and
            its YAML path or file line), or two rules have the same id.
    """

    __slots__ = ("_config_rules", "_settings", "_state", "enabled")

    def __init__(self, settings: GuardrailSettings, docs: Mapping[str, Any] | None = None) -> None:
        self._settings = settings
        self.enabled = settings.enabled
        self._config_rules = _config_rules(settings)
        rules = list(self._config_rules)
        try:
            scanner = _compile(rules)
        except _BadRule as bad:
            raise _config_error(bad.rule, bad.message, settings) from None
        self._state = _State(rules, scanner, {"config": config_layer(settings)}, {})
        if docs:
            self.apply(docs)

    # ---- the hot path --------------------------------------------------------------------------------------
    def effective(self, team_id: str | None, key_id: str | None) -> Effective:
        """The guardrails of a request of ``key_id`` (in ``team_id``): built once per pair with documents, shared
        by every key and team without one."""
        state = self._state
        team = team_id if team_id in state.teams else None
        key = key_id if key_id in state.keys else None
        found = state.cache.get((team, key))
        if found is None:
            found = state.cache[team, key] = self._build(state, team, key)
        return found

    def policy_for(self, team_id: str | None, key_id: str | None) -> tuple[_core.GuardPolicy | None, bool, str]:
        """``(policy, responses, default classification)`` of a request of ``key_id`` in ``team_id``; the policy
        is ``None`` when guardrails are off or every rule is off for it."""
        policy, responses, classification, _ = self.effective(team_id, key_id)
        return policy, responses, classification

    # ---- changes -------------------------------------------------------------------------------------------
    def apply(self, docs: Mapping[str, Any]) -> None:
        """Replace every policy document: ``docs`` maps ``"global"``, ``"team:<id>"`` and ``"key:<id>"`` to their
        documents (a scope left out has none). The scanner is compiled again when the rules changed; the
        cached policies are dropped. All or nothing: on an error the old state stays.

        An action naming a rule that no longer exists is ignored (with a warning): removing a global rule does
        not break the teams that set its action.

        Raises:
            PolicyError: a malformed document, a rule or deny pattern that does not compile, or a rule id that
                is already taken; the problem names the scope, the path in its document and the rule.
        """
        parsed = {scope: parse_doc(scope, doc) for scope, doc in docs.items()}
        rules = self._rules_for(parsed)
        old = self._state
        if [r.core for r in rules] == [r.core for r in old.rules]:
            scanner = old.scanner  # only actions changed: the compiled scanner stays
        else:
            try:
                scanner = _compile(rules)
            except _BadRule as bad:
                raise PolicyError(bad.rule.owner or "global", [(bad.rule.where, bad.message)]) from None
        layers = {"config": config_layer(self._settings)}
        layers.update({scope: doc_layer(parse_scope(scope)[0], doc) for scope, doc in parsed.items()})
        known = frozenset(r.id for r in rules)
        for scope, layer in layers.items():
            owned = frozenset(r.name for r in rules if r.owner == scope)
            for name in unknown_names(layer, known | owned):
                log.warning("guardrails policy %s: actions.%s names no rule: ignored", scope, name)
        self._state = _State(rules, scanner, layers, parsed)

    def validate(self, scope: str, doc: Any) -> dict[str, Any]:
        """Check ``doc`` as the policy of ``scope`` against the current rules (before the admin API stores it):
        its fields, its rules and deny patterns (each compiled), their ids, the rule ids its actions name.

        Returns:
            The document as it will apply (defaults left out).

        Raises:
            PolicyError: naming the path in the document and the rule at fault.

        Example:
            >>> bad = {"deny_patterns": [{"id": "x", "regex": "("}]}
            >>> Guardrails(GuardrailSettings()).validate("team:t1", bad)  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ferrogate.guardrails.policy.PolicyError: invalid guardrails policy team:t1: deny_patterns[0].regex: ...
        """
        parsed = parse_doc(scope, doc)
        docs = dict(self._state.docs)
        docs[scope] = parsed
        rules = self._rules_for(docs)
        try:
            _compile(rules)
        except _BadRule as bad:
            raise PolicyError(bad.rule.owner or bad.rule.level, [(bad.rule.where, bad.message)]) from None
        known = frozenset(r.id for r in rules) | frozenset(r.name for r in rules if r.owner == scope)
        unknown = unknown_names(doc_layer(parse_scope(scope)[0], parsed), known)
        if unknown:
            raise PolicyError(scope, [(f"actions.{unknown[0]}", f"no category or rule has the id {unknown[0]!r}")])
        out: dict[str, Any] = parsed.model_dump(mode="json", exclude_defaults=True)
        return out

    @property
    def docs(self) -> dict[str, dict[str, Any]]:
        """The policy documents in force, by scope."""
        return {s: d.model_dump(mode="json", exclude_defaults=True) for s, d in self._state.docs.items()}

    @property
    def rule_ids(self) -> list[str]:
        """Every rule's id, in scanner order."""
        return [r.id for r in self._state.rules]

    # ---- building ------------------------------------------------------------------------------------------
    def _rules_for(self, docs: Mapping[str, PolicyDoc]) -> list[Rule]:
        """The configuration's rules, then the global document's rules and deny patterns, then each team's and
        key's deny patterns (in scope order, so that the same documents give the same scanner)."""
        rules = list(self._config_rules)
        taken = {r.id: r for r in rules}
        scoped: list[Rule] = []
        glob = docs.get("global")
        if glob is not None:
            scoped += [user_rule(r, i, "global", "") for i, r in enumerate(glob.rules)]
            scoped += [deny_rule(p, i, "global", None, "") for i, p in enumerate(glob.deny_patterns)]
        for scope in sorted(docs):
            if scope == "global":
                continue
            level, _ = parse_scope(scope)
            scoped += [deny_rule(p, i, level, scope, "") for i, p in enumerate(docs[scope].deny_patterns)]
        for rule in scoped:
            other = taken.get(rule.id)
            if other is not None:
                scope = rule.owner or "global"
                raise PolicyError(scope, [(rule.where.removesuffix(".regex") + ".id", f"{rule.id!r} is {_of(other)}")])
            taken[rule.id] = rule
        rules += scoped
        return rules

    def _build(self, state: _State, team: str | None, key: str | None) -> Effective:
        layers: list[Layer] = []
        owners: list[str] = []
        for scope in (f"key:{key}" if key else None, f"team:{team}" if team else None, "global"):
            if scope is not None and scope in state.layers:
                layers.append(state.layers[scope])
                owners.append(scope)
        layers.append(state.layers["config"])
        responses = bool(setting(layers, "responses"))
        classification = str(setting(layers, "default_classification") or "internal")
        if not self.enabled:
            return Effective(None, False, classification, None)
        actions = action_bytes(state.rules, layers, frozenset(owners))
        policy = state.scanner.policy(actions)
        answers = state.scanner.policy(bytes(min(a, 2) for a in actions)) if responses else None
        return Effective(policy if policy.active else None, responses, classification, answers)


class _BadRule(Exception):
    """A rule the core refused: the rule, and the core's message."""

    def __init__(self, rule: Rule, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


def _compile(rules: Sequence[Rule]) -> _core.Scanner:
    """One scanner over ``rules``.

    Raises:
        _BadRule: the first rule that does not compile (found by compiling each alone: only on this path).
    """
    try:
        return _core.Scanner([r.core for r in rules])
    except _core.RuleError as whole:
        for rule in rules:
            try:
                _core.Scanner([rule.core])
            except _core.RuleError as exc:
                raise _BadRule(rule, f"rule {rule.name or rule.id!r} does not compile: {_reason(exc, rule)}") from None
        raise _BadRule(rules[0], str(whole)) from None


def _reason(exc: Exception, rule: Rule) -> str:
    """The core's message without the rule id and index it starts with (the error names the rule itself)."""
    text = str(exc)
    for lead in (f"rule {rule.id!r}", f'rule "{rule.id}"', f"rule {rule.id}", rule.id):
        if text.startswith(lead):
            return text[len(lead) :].lstrip(" :,").removeprefix("(index 0)").lstrip(" :,") or text
    return text


def _config_rules(settings: GuardrailSettings) -> list[Rule]:
    """The rules of the configuration: built-in, ``rules``, the Gitleaks file's, ``deny_patterns``. A rule of
    the configuration or the Gitleaks file with a built-in rule's id replaces it.

    Raises:
        ConfigError: two rules of the configuration (or one of it and one of the file) share an id.
    """
    builtins = builtin_rules()
    mine = [user_rule(r, i) for i, r in enumerate(settings.rules)]
    if settings.gitleaks_rules:
        mine += load_gitleaks(Path(settings.gitleaks_rules))
    mine += [deny_rule(p, i) for i, p in enumerate(settings.deny_patterns)]
    seen: dict[str, Rule] = {}
    for rule in mine:
        if rule.id in seen:
            raise _config_error(rule, f"rule {rule.id!r}: the id is also {_where(seen[rule.id])}", settings)
        seen[rule.id] = rule
    replaced = [b.id for b in builtins if b.id in seen]
    if replaced:
        log.info("guardrails: configured rules replace the built-in %s", ", ".join(replaced))
    return [b for b in builtins if b.id not in seen] + mine


def _config_error(rule: Rule, message: str, settings: GuardrailSettings) -> ConfigError:
    """The start-up error for a rule of the configuration: a Gitleaks rule names the file and its line."""
    if rule.line:
        return ConfigError(str(settings.gitleaks_rules), [(rule.where, message)])
    return ConfigError("the configuration file", [(rule.where or rule.id, message)])


def _where(rule: Rule) -> str:
    return f"{rule.where} of {'the Gitleaks file' if rule.line else 'the configuration'}"


def _of(rule: Rule) -> str:
    if rule.owner is not None:
        return f"already a deny pattern of {rule.owner}"
    if rule.level == "global":
        return "already a rule of the global policy"
    return "already a built-in rule" if rule.where.startswith("built-in") else "already a rule of the configuration"
