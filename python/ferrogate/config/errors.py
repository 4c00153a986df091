"""The configuration error type and YAML helpers (their own module: the price table loader uses them too)."""

from __future__ import annotations

from typing import Any

import yaml


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists ``(yaml_path, message)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {path}: {msg}" for path, msg in problems)
        super().__init__(f"invalid configuration in {source}:\n{lines}")


def read_yaml_mapping(text: str, source: str, what: str = "a mapping") -> dict[str, Any]:
    """Parse YAML whose top level must be a mapping (empty text is ``{}``).

    Raises:
        ConfigError: not YAML (with line and column) or not a mapping.

    Example:
        >>> read_yaml_mapping("a: 1", "inline")
        {'a': 1}
    """
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(document)"
        raise ConfigError(source, [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(source, [("(document)", f"the top level must be {what}")])
    return raw


def yaml_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a YAML path: ``upstreams[1].timeouts.read_s``.

    Example:
        >>> yaml_path(("upstreams", 1, "base_url"))
        'upstreams[1].base_url'
    """
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"
