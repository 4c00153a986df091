"""Loading the YAML file: ``${ENV}`` interpolation, validation, errors that name the YAML path.

Example:
    >>> cfg = load_config_text("upstreams: [{name: m, provider: mock}]", "inline")
    >>> cfg.upstreams[0].provider
    'mock'
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ferrogate.config.errors import ConfigError, read_yaml_mapping, yaml_path
from ferrogate.config.model import Config, Deployment, ModelGroup, Upstream

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

#: Models served through OpenAI when ``OPENAI_API_KEY`` is set and no config file is given.
DEFAULT_OPENAI_MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o3-mini",
    "o4-mini",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate the YAML file at ``path``.

    Raises:
        ConfigError: the file is missing, not YAML, or invalid; every problem names its path.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [("(file)", exc.strerror or str(exc))]) from None
    return load_config_text(text, str(path), env)


def load_config_text(text: str, source: str, env: Mapping[str, str] | None = None) -> Config:
    """Validate configuration given as YAML text (``source`` names it in errors)."""
    raw = read_yaml_mapping(text, source)
    problems: list[tuple[str, str]] = []
    data = _interpolate(raw, os.environ if env is None else env, "", problems)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += [_problem(e["loc"], e["msg"]) for e in exc.errors()]
    if problems:  # every problem at once: interpolation and schema alike
        raise ConfigError(source, problems)
    return config


def default_config(env: Mapping[str, str] | None = None) -> Config:
    """The configuration used when no file is given: the ``mock`` model, plus OpenAI if keyed."""
    env = os.environ if env is None else env
    upstreams = [Upstream(name="mock", provider="mock")]
    groups = [ModelGroup(name="mock", deployments=[Deployment(upstream="mock")])]
    key = env.get("OPENAI_API_KEY")
    if key:
        base = env.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
        upstreams.append(
            Upstream.model_validate({"name": "openai", "provider": "openai", "base_url": base, "api_key": key})
        )
        groups += [
            ModelGroup(name=m, deployments=[Deployment(upstream="openai")], owned_by="openai")
            for m in DEFAULT_OPENAI_MODELS
        ]
    return Config(upstreams=upstreams, model_groups=groups)


def _interpolate(node: Any, env: Mapping[str, str], path: str, problems: list[tuple[str, str]]) -> Any:
    if isinstance(node, str):

        def sub(m: re.Match[str]) -> str:
            value = env.get(m.group(1))
            if value is None:
                if m.group(2) is None:
                    problems.append((path or "(document)", f"environment variable {m.group(1)} is not set"))
                    return ""
                return m.group(2)
            return value

        return _VAR.sub(sub, node)
    if isinstance(node, dict):
        return {k: _interpolate(v, env, f"{path}.{k}" if path else str(k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, env, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    return node


def _problem(loc: tuple[int | str, ...], msg: str) -> tuple[str, str]:
    msg = msg.removeprefix("Value error, ")
    path = yaml_path(loc)
    if not loc and ": " in msg:  # a cross-field check names its own path first
        path, _, msg = msg.partition(": ")
    return path, msg
