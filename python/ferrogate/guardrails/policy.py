"""Guardrail policy documents and how they merge: configuration <- global <- team <- key.

A policy document (stored through the admin API, one per scope: ``"global"``, ``"team:<id>"``, ``"key:<id>"``)
is ``{actions?, responses?, deny_patterns?, default_classification?}``; the global one may also add ``rules``.
Each becomes a :class:`Layer`. A rule's action for a request is found by walking the request's layers from the
most specific (its key's) to the broadest (the configuration): at each layer the rule's id is looked up, then
the rule's own action when the rule was defined at that layer, then the rule's category; the first hit wins.
The configuration's layer names every category, so every rule has an action.

Example:
    >>> from ferrogate.guardrails.rules import Rule, definition
    >>> aws = Rule(definition("aws-access-key", "secret", "AKIA[0-9A-Z]{16}"))
    >>> config = Layer("config", {"secret": "redact", "pii": "off", "injection": "log", "custom": "block"})
    >>> team = Layer("team", {"secret": "log"})
    >>> key = Layer("key", {"aws-access-key": "block"})
    >>> action_of(aws, (team, config)), action_of(aws, (key, team, config))
    ('log', 'block')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ferrogate.config.errors import yaml_path
from ferrogate.config.model import Action, Classification, DenyPattern, GuardrailSettings, UserRule
from ferrogate.guardrails.rules import Rule

#: One byte per action, as ``_core.Scanner.policy`` takes them.
ACTION_CODES: dict[str, int] = {"off": 0, "log": 1, "redact": 2, "block": 3}
#: The action of each byte (a finding's action as the core reports it).
ACTION_NAMES = ("off", "log", "redact", "block")
CATEGORIES = frozenset({"secret", "pii", "injection", "custom"})


class PolicyError(ValueError):
    """A policy document that cannot be used; ``problems`` lists ``(path in the document, message)`` pairs.

    Example:
        >>> str(PolicyError("team:t1", [("deny_patterns[0].regex", "rule 'x' does not compile: ...")]))
        "invalid guardrails policy team:t1: deny_patterns[0].regex: rule 'x' does not compile: ..."
    """

    def __init__(self, scope: str, problems: list[tuple[str, str]]) -> None:
        self.scope = scope
        self.problems = problems
        super().__init__(f"invalid guardrails policy {scope}: " + "; ".join(f"{p}: {m}" for p, m in problems))

    @property
    def param(self) -> str:
        """The path of the first problem (an admin API refusal's ``param``)."""
        return self.problems[0][0] if self.problems else ""


class PolicyDoc(BaseModel):
    """One scope's policy document. ``rules`` only in the global one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actions: dict[str, Action] = Field(default_factory=dict, description="by category or rule id")
    responses: bool | None = Field(None, description="scan answers too (None: as the broader scopes say)")
    default_classification: Classification | None = None
    deny_patterns: list[DenyPattern] = Field(default_factory=list)
    rules: list[UserRule] = Field(default_factory=list)

    @field_validator("actions")
    @classmethod
    def _action_names(cls, value: dict[str, Action]) -> dict[str, Action]:
        for name in value:
            if not name or len(name) > 200 or not (name[0].isalnum() and name.isascii()):
                raise ValueError(f"{name!r} is neither a category nor a rule id")
        return value


@dataclass(frozen=True, slots=True)
class Layer:
    """One level's settings: its actions (by category or rule id), and what it says of answers and the default
    classification (``None``: nothing, the broader level decides)."""

    level: str
    actions: Mapping[str, str] = field(default_factory=dict)
    responses: bool | None = None
    default_classification: str | None = None


def parse_scope(scope: str) -> tuple[str, str | None]:
    """``("global", None)``, ``("team", id)`` or ``("key", id)``.

    Raises:
        PolicyError: any other scope.

    Example:
        >>> parse_scope("team:team_1"), parse_scope("global")
        (('team', 'team_1'), ('global', None))
    """
    if scope == "global":
        return "global", None
    level, _, owner = scope.partition(":")
    if level in ("team", "key") and owner:
        return level, owner
    raise PolicyError(scope, [("(scope)", "must be 'global', 'team:<id>' or 'key:<id>'")])


def parse_doc(scope: str, doc: Any) -> PolicyDoc:
    """Check ``doc`` (a JSON object) as the policy of ``scope``.

    Raises:
        PolicyError: not an object, an unknown field, a value of the wrong type, ``rules`` outside the global
            document, or an id given twice; each problem names its path.

    Example:
        >>> parse_doc("key:k1", {"actions": {"pii": "redact"}}).actions
        {'pii': 'redact'}
        >>> parse_doc("team:t1", {"rules": [{"id": "x", "regex": "y"}]})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ferrogate.guardrails.policy.PolicyError: invalid guardrails policy team:t1: rules: only the global policy ...
    """
    level, _ = parse_scope(scope)
    if isinstance(doc, PolicyDoc):
        parsed = doc
    else:
        if not isinstance(doc, Mapping):
            raise PolicyError(scope, [("(document)", "must be a JSON object")])
        try:
            parsed = PolicyDoc.model_validate(dict(doc))
        except ValidationError as exc:
            problems = [(yaml_path(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in exc.errors()]
            raise PolicyError(scope, problems) from None
    if parsed.rules and level != "global":
        raise PolicyError(scope, [("rules", "only the global policy adds rules")])
    for what, ids in (("rules", [r.id for r in parsed.rules]), ("deny_patterns", [p.id for p in parsed.deny_patterns])):
        seen: set[str] = set()
        for i, rule_id in enumerate(ids):
            if rule_id in seen:
                raise PolicyError(scope, [(f"{what}[{i}].id", f"duplicate id {rule_id!r}")])
            seen.add(rule_id)
    return parsed


def config_layer(settings: GuardrailSettings) -> Layer:
    """The configuration's layer: its actions (every category named), answers and default classification."""
    return Layer("config", dict(settings.actions), settings.responses, settings.default_classification)


def doc_layer(level: str, doc: PolicyDoc) -> Layer:
    """The layer of a scope's document."""
    return Layer(level, dict(doc.actions), doc.responses, doc.default_classification)


def action_of(rule: Rule, layers: Sequence[Layer]) -> str:
    """The action of ``rule`` under ``layers`` (the most specific first, the configuration's last).

    A rule id entry names the rule's compiled id, or, at the layer of the team or key that owns a deny pattern,
    the id it was written with.
    """
    rule_id, name, category, level = rule.id, rule.name, rule.category, rule.level
    for layer in layers:
        actions = layer.actions
        found = actions.get(rule_id)
        if found is None and name and name != rule_id and layer.level == level:
            found = actions.get(name)
        if found is None and layer.level == level:
            found = rule.action
        if found is None:
            found = actions.get(category)
        if found is not None:
            return found
    return "off"


def action_bytes(rules: Sequence[Rule], layers: Sequence[Layer], owners: frozenset[str]) -> bytes:
    """One action byte per rule (:data:`ACTION_CODES`) under ``layers``; a deny pattern of a team or key not in
    ``owners`` (the request's ``"team:<id>"`` and ``"key:<id>"``) is off.

    Example:
        >>> from ferrogate.guardrails.rules import Rule, definition
        >>> mine = Rule(definition("codename@t1", "injection", "x"), "block", "team", "team:t1", "codename")
        >>> layers = [Layer("team", {}), Layer("config", {"injection": "log"})]   # team t1's, the configuration's
        >>> action_bytes([mine], layers, frozenset({"team:t1"})), action_bytes([mine], layers, frozenset())
        (b'\\x03', b'\\x00')
    """
    codes = ACTION_CODES
    out = bytearray(len(rules))
    for i, rule in enumerate(rules):
        owner = rule.owner
        if owner is not None and owner not in owners:
            continue
        out[i] = codes[action_of(rule, layers)]
    return bytes(out)


def setting(layers: Sequence[Layer], name: str) -> Any:
    """The most specific layer's value of ``responses`` or ``default_classification``.

    Example:
        >>> layers = [Layer("team", {}, None, "public"), Layer("config", {}, False, "internal")]
        >>> setting(layers, "default_classification"), setting(layers, "responses")
        ('public', False)
    """
    for layer in layers:
        value = getattr(layer, name)
        if value is not None:
            return value
    return None


def unknown_names(layer: Layer, known: frozenset[str]) -> list[str]:
    """The entries of ``layer.actions`` that name neither a category nor a rule in ``known``.

    Example:
        >>> unknown_names(Layer("key", {"pii": "off", "nope": "log"}), frozenset({"aws-access-key"}))
        ['nope']
    """
    return [name for name in layer.actions if name not in CATEGORIES and name not in known]
