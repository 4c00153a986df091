"""The configuration in force: the file's, with the admin API's stored routing overrides merged in, validated whole.

Upstreams and model groups merge by name: a stored document replaces the file's entry of that name in place (or
is added after the file's, in name order); a tombstone deletes the file's entry. Stored routing rules replace the
file's (``routing.rules`` and ``routing.rules_file`` both). ``${ENV_VAR}`` references in stored documents (an
upstream's ``api_key``) are resolved from the environment here, at every merge, as the loader does for the file.
The result is validated as one :class:`~ferrogate.config.model.Config`, so an override that breaks a reference
(a group naming a deleted upstream) is refused with the YAML path of the problem.

Example:
    >>> from ferrogate.config import load_config_text
    >>> from ferrogate.store.routing import RoutingOverrides
    >>> file = load_config_text("upstreams: [{name: m, provider: mock}]", "inline")
    >>> extra = {"name": "e", "provider": "mock"}
    >>> [u.name for u in merge(file, RoutingOverrides(upstreams={"e": extra}), env={}).upstreams]
    ['m', 'e']
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from ferrogate.config.errors import ConfigError, yaml_path
from ferrogate.config.loader import _interpolate  # the file's own ${ENV} rules, for the stored documents
from ferrogate.config.model import Config, ModelGroup, Upstream
from ferrogate.store.routing import RoutingOverrides

#: The sections a reload changes; every other one is read at start only (a change to it needs a restart).
LIVE_SECTIONS = ("upstreams", "model_groups", "routing")
#: The sections read at start only.
RESTART_SECTIONS = tuple(name for name in Config.model_fields if name not in LIVE_SECTIONS)

M = TypeVar("M", Upstream, ModelGroup)


def merge(
    file: Config, overrides: RoutingOverrides, *, env: Mapping[str, str] | None = None, source: str | None = None
) -> Config:
    """``file`` with ``overrides`` merged in, validated as a whole configuration.

    Args:
        file: the configuration file's (or the built-in default).
        overrides: the stored overrides (``store.routing.overrides()``).
        env: where ``${ENV_VAR}`` references are resolved (default: the process environment).
        source: what errors name (default: "the configuration with the admin API's overrides").

    Raises:
        ConfigError: every problem, each with its YAML path (an override's by its position in the merged list).

    Example:
        >>> from ferrogate.config import load_config_text
        >>> file = load_config_text("upstreams: [{name: m, provider: mock}]", "inline")
        >>> merge(file, RoutingOverrides(upstreams={"m": None}), env={}).upstreams
        []
    """
    env = os.environ if env is None else env
    problems: list[tuple[str, str]] = []
    upstreams = _named(file.upstreams, overrides.upstreams, "upstreams", Upstream, env, problems)
    groups = _named(file.model_groups, overrides.model_groups, "model_groups", ModelGroup, env, problems)
    routing = file.routing
    if overrides.rules is not None:
        routing = routing.model_copy(update={"rules": overrides.rules, "rules_file": None})
    where = source or "the configuration with the admin API's overrides"
    if problems:
        raise ConfigError(where, problems)
    data: dict[str, Any] = {name: getattr(file, name) for name in Config.model_fields}
    data |= {"upstreams": upstreams, "model_groups": groups, "routing": routing}
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(where, [_problem(e["loc"], e["msg"]) for e in exc.errors()]) from None


def restart_sections(running: Config, new: Config) -> list[str]:
    """The sections of ``new`` that differ from ``running``'s and are read at start only.

    Example:
        >>> from ferrogate.config import load_config_text
        >>> restart_sections(load_config_text("", "a"), load_config_text("server: {max_body_bytes: 2048}", "b"))
        ['server']
    """
    return [name for name in RESTART_SECTIONS if getattr(running, name) != getattr(new, name)]


def live_part(running: Config, new: Config) -> Config:
    """``running`` with the sections a reload changes taken from ``new`` (what a file edit can change without a
    restart; unvalidated: :func:`merge` validates it whole)."""
    return running.model_copy(update={name: getattr(new, name) for name in LIVE_SECTIONS})


def _named(
    entries: list[M],
    stored: Mapping[str, dict[str, Any] | None],
    section: str,
    model: type[M],
    env: Mapping[str, str],
    problems: list[tuple[str, str]],
) -> list[M]:
    """The file's ``entries`` with the ``stored`` documents by name (``None``: deleted), new names appended."""
    out: list[M] = []
    known = {e.name for e in entries}
    for name, entry in [(e.name, e) for e in entries] + [(n, None) for n in sorted(set(stored) - known)]:
        if name not in stored:
            if entry is not None:
                out.append(entry)
            continue
        doc = stored[name]
        if doc is not None and (parsed := _parse(model, doc, name, f"{section}[{len(out)}]", env, problems)):
            out.append(parsed)
    return out


def _parse(
    model: type[M], doc: dict[str, Any], name: str, path: str, env: Mapping[str, str], problems: list[tuple[str, str]]
) -> M | None:
    """One stored document as ``model`` (``None``: its problems are added, named by ``path`` and ``name``)."""
    found: list[tuple[str, str]] = []
    data = _interpolate({**doc, "name": name}, env, path, found)
    parsed: M | None = None
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        found += [(f"{path}.{yaml_path(tuple(e['loc']))}" if e["loc"] else path, _msg(e["msg"])) for e in exc.errors()]
    problems += [(where, f"{msg} (the admin API's {model.__name__} {name!r})") for where, msg in found]
    return None if found else parsed


def _msg(msg: str) -> str:
    return msg.removeprefix("Value error, ")


def _problem(loc: tuple[int | str, ...], msg: str) -> tuple[str, str]:
    """A whole-configuration error as ``(yaml path, message)`` (a cross-field check names its own path first)."""
    msg, path = _msg(msg), yaml_path(loc)
    if not loc and ": " in msg:
        path, _, msg = msg.partition(": ")
    return path, msg
