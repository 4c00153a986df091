"""The configuration error type (its own module: the price table loader raises it too)."""

from __future__ import annotations


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists ``(yaml_path, message)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {path}: {msg}" for path, msg in problems)
        super().__init__(f"invalid configuration in {source}:\n{lines}")
