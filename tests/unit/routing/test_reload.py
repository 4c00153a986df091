"""Hot reload (``routing.reload``, ``routing.merge``): how the stored overrides merge into the file's configuration,
edits that do not load kept out, sections that need a restart, and the file watcher picking up an edit.

The router is a stub recording the configurations handed to it (our own object, as ``Router.reload`` takes them);
the store is a real SQLite file.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ferrogate.config import Config, ConfigError, load_config_text
from ferrogate.config.routing import RoutingSettings
from ferrogate.routing.merge import merge, restart_sections
from ferrogate.routing.reload import ConfigReloader
from ferrogate.store.routing import RULES, RoutingOverrides
from ferrogate.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

FILE = """
upstreams:
  - {name: a, provider: mock}
  - {name: b, provider: mock}
model_groups:
  - name: fast
    deployments: [{upstream: a, model: small}]
  - name: smart
    deployments: [{upstream: b, model: big}]
routing:
  rules: 'permit(principal, action, resource);'
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class StubRouter:
    """Records every configuration handed to ``reload``; refuses one whose group ``refuse`` exists."""

    def __init__(self) -> None:
        self.reloads: list[Config] = []

    def reload(self, config: Config) -> None:
        if any(g.name == "refuse" for g in config.model_groups):
            raise ConfigError("router", [("model_groups", "refused by the router")])
        self.reloads.append(config)


def groups(config: Config) -> dict[str, list[tuple[str, str | None]]]:
    return {g.name: [(d.upstream, d.model) for d in g.deployments] for g in config.model_groups}


async def until(check: Callable[[], bool], bound_s: float = 10.0) -> None:
    """Wait (polling, at most ``bound_s``) until ``check()`` holds."""
    deadline = time.monotonic() + bound_s
    while not check():
        assert time.monotonic() < deadline, f"not within {bound_s} s"
        await asyncio.sleep(0.02)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(str(tmp_path / "ferrogate.db"))
    await opened.migrate()
    yield opened
    await opened.close()


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "ferrogate.yaml"
    path.write_text(FILE)
    return path


def write(path: Path, text: str) -> None:
    """Write a small file (from a coroutine: the write is not worth a thread)."""
    path.write_text(text)


def reloader_for(path: Path, store: SqliteStore, **kw: Any) -> tuple[ConfigReloader, StubRouter]:
    router = StubRouter()
    return ConfigReloader(path, store, router, None, env={"EU_KEY": "sk-from-env"}, **kw), router


# ---- merging ------------------------------------------------------------------------------------------------


def test_overrides_replace_in_place_add_after_and_tombstones_delete() -> None:
    file = load_config_text(FILE, "file")
    overrides = RoutingOverrides(
        upstreams={
            "c": {"name": "c", "provider": "mock"},
            "b": {"name": "b", "provider": "mock", "headers": {"x": "1"}},
        },
        model_groups={
            "fast": {"name": "fast", "deployments": [{"upstream": "c", "model": "tiny"}]},
            "smart": None,
            "z-new": {"name": "z-new", "deployments": [{"upstream": "a"}]},
            "m-new": {"name": "m-new", "deployments": [{"upstream": "b"}]},
        },
    )
    merged = merge(file, overrides, env={})
    assert [u.name for u in merged.upstreams] == ["a", "b", "c"]  # b replaced in place, c added after
    assert merged.upstreams[1].headers == {"x": "1"}
    assert groups(merged) == {"fast": [("c", "tiny")], "m-new": [("b", None)], "z-new": [("a", None)]}
    assert [g.name for g in merged.model_groups] == ["fast", "m-new", "z-new"]  # smart gone, new ones by name
    assert merged.server == file.server and merged.guardrails == file.guardrails  # the rest is the file's
    assert merge(file, RoutingOverrides(), env={}) == file


def test_stored_rules_replace_the_files_inline_rules_and_rules_file() -> None:
    file = load_config_text(FILE.replace("routing:", "routing:\n  rules_file: rules.cedar"), "file")
    merged = merge(file, RoutingOverrides(rules="forbid(principal, action, resource);"), env={})
    assert (merged.routing.rules, merged.routing.rules_file) == ("forbid(principal, action, resource);", None)
    assert merged.routing.strategy == file.routing.strategy
    assert merge(file, RoutingOverrides(), env={}).routing.rules_file == "rules.cedar"


def test_env_references_in_stored_documents_are_resolved_at_merge() -> None:
    doc = {"name": "eu", "provider": "openai", "base_url": "https://eu.example.com/v1", "api_key": "${EU_KEY}"}
    merged = merge(load_config_text(FILE, "file"), RoutingOverrides(upstreams={"eu": doc}), env={"EU_KEY": "sk-x"})
    key = merged.upstreams[-1].api_key
    assert key is not None and key.get_secret_value() == "sk-x"
    with pytest.raises(ConfigError) as err:
        merge(load_config_text(FILE, "file"), RoutingOverrides(upstreams={"eu": doc}), env={}, source="test")
    assert err.value.source == "test"
    assert err.value.problems == [
        ("upstreams[2].api_key", "environment variable EU_KEY is not set (the admin API's Upstream 'eu')")
    ]


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (
            RoutingOverrides(upstreams={"a": None}),
            ("model_groups[0].deployments[0].upstream", "unknown upstream 'a' (known: b)"),
        ),
        (
            RoutingOverrides(model_groups={"x": {"name": "x", "deployments": []}}),
            ("model_groups[2].deployments", "List should have at least 1 item after validation, not 0"),
        ),
        (
            RoutingOverrides(upstreams={"o": {"name": "o", "provider": "openai"}}),
            ("upstreams[2]", "base_url is required for provider 'openai'"),
        ),
        (
            RoutingOverrides(
                model_groups={"x": {"name": "x", "aliases": ["fast"], "deployments": [{"upstream": "a"}]}}
            ),
            ("model_groups[2].aliases[0]", "'fast' already names a model group"),
        ),
    ],
)
def test_overrides_that_break_the_configuration_name_the_yaml_path(
    overrides: RoutingOverrides, problem: tuple[str, str]
) -> None:
    with pytest.raises(ConfigError) as err:
        merge(load_config_text(FILE, "file"), overrides, env={})
    path, message = err.value.problems[0]
    assert (path, re.sub(r" \(the admin API's \w+ '\w+'\)$", "", message)) == problem
    assert path in str(err.value)


def test_restart_sections_names_what_a_reload_cannot_change() -> None:
    file = load_config_text(FILE, "file")
    edited = load_config_text(FILE + "server: {max_body_bytes: 2048}\nmetering: {enabled: false}\n", "file")
    assert restart_sections(file, edited) == ["server", "metering"]
    moved = load_config_text(FILE.replace("model: small", "model: smaller"), "file")
    assert restart_sections(file, moved) == []


# ---- the reloader -------------------------------------------------------------------------------------------


async def test_load_applies_the_stored_overrides_once_per_version(config_file: Path, store: SqliteStore) -> None:
    reloader, router = reloader_for(config_file, store)
    assert await reloader.load() is True
    assert (router.reloads, reloader.version) == ([], 0)  # nothing stored: the file's configuration stays as is
    eu = {"name": "eu", "provider": "openai", "base_url": "https://eu.example.com/v1", "api_key": "${EU_KEY}"}
    await store.routing.put("upstream", "eu", eu, "master")
    await store.routing.put("model_group", "fast", {"name": "fast", "deployments": [{"upstream": "eu"}]}, "master")
    assert await reloader.load() is True
    assert await reloader.load() is True  # the same version: not applied twice
    assert len(router.reloads) == 1 and router.reloads[0] is reloader.config
    assert groups(reloader.config)["fast"] == [("eu", None)]
    assert reloader.version == 2 and reloader.status().version == 2
    assert reloader.file_config.model_groups[0].deployments[0].upstream == "a"  # the file's is kept apart


async def test_stored_overrides_that_do_not_merge_keep_the_running_configuration(
    config_file: Path, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    reloader, router = reloader_for(config_file, store)
    await reloader.load()
    await store.routing.put("upstream", "a", None, "master")  # written around the API: "fast" still names it
    with caplog.at_level(logging.ERROR, "ferrogate.routing"):
        assert await reloader.load() is False
        assert await reloader.load() is False  # that version is not retried (logged once)
    assert [r.message.count("unknown upstream 'a'") for r in caplog.records] == [1]
    assert (router.reloads, reloader.version) == ([], 0)
    status = reloader.status()
    assert status.last_error is not None and "model_groups[0].deployments[0].upstream" in status.last_error
    await store.routing.delete("upstream", "a")  # the next version is
    assert await reloader.load() is True
    assert (reloader.version, reloader.status().last_error) == (2, None)


async def test_a_router_that_refuses_keeps_the_running_configuration(config_file: Path, store: SqliteStore) -> None:
    reloader, router = reloader_for(config_file, store)
    before = reloader.config
    await store.routing.put("model_group", "refuse", {"name": "refuse", "deployments": [{"upstream": "a"}]}, "m")
    assert await reloader.load() is False
    assert reloader.config is before and router.reloads == []
    assert "refused by the router" in (reloader.status().last_error or "")


async def test_check_rules_refuses_bad_rules_before_the_router(config_file: Path, store: SqliteStore) -> None:
    def check(routing: RoutingSettings) -> None:
        if "bad" in routing.rules:
            raise ConfigError("rules", [("line 1, column 1", "unexpected token 'bad'")])

    reloader, router = reloader_for(config_file, store, check_rules=check)
    with pytest.raises(ConfigError, match="unexpected token"):
        await reloader.propose("rules", RULES, {"text": "bad"})
    config, stored = await reloader.propose("rules", RULES, {"text": "forbid(principal, action, resource);"})
    assert (config.routing.rules, stored.version) == ("forbid(principal, action, resource);", 0)
    assert await store.routing.version() == 0 and router.reloads == []  # propose stores and applies nothing


async def test_a_valid_file_edit_is_applied_with_the_overrides(config_file: Path, store: SqliteStore) -> None:
    reloader, router = reloader_for(config_file, store)
    await store.routing.put("model_group", "extra", {"name": "extra", "deployments": [{"upstream": "b"}]}, "m")
    await reloader.load()
    write(config_file, FILE.replace("model: small", "model: smaller"))
    assert reloader.reload_file() is True
    assert groups(router.reloads[-1]) == {"fast": [("a", "smaller")], "smart": [("b", "big")], "extra": [("b", None)]}
    assert reloader.reload_file() is True and len(router.reloads) == 2  # nothing changed: not handed over again


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("upstreams: [{name: a, provider: mock}", "line 1, column"),
        (FILE.replace("upstream: b", "upstream: nope"), "model_groups[1].deployments[0].upstream: unknown upstream"),
        (FILE.replace("provider: mock}\n  - {name: b", "provider: mock, typo: 1}\n  - {name: b"), "upstreams[0].typo"),
        (FILE + "server: {max_body_bytes: 1}\n", "server.max_body_bytes"),  # even a restart-only section must load
    ],
)
async def test_an_invalid_file_edit_is_logged_and_the_running_configuration_kept(
    config_file: Path, store: SqliteStore, caplog: pytest.LogCaptureFixture, text: str, where: str
) -> None:
    reloader, router = reloader_for(config_file, store)
    running = reloader.config
    write(config_file, text)
    with caplog.at_level(logging.ERROR, "ferrogate.routing"):
        assert reloader.reload_file() is False
    assert reloader.config is running and router.reloads == []
    assert len(caplog.records) == 1 and where in caplog.records[0].message
    assert str(config_file) in caplog.records[0].message
    assert where in (reloader.status().last_error or "")


async def test_a_restart_only_edit_warns_and_the_routing_part_still_applies(
    config_file: Path, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    reloader, _ = reloader_for(config_file, store)
    write(config_file, FILE.replace("model: big", "model: bigger") + "server: {max_body_bytes: 2048}\n")
    with caplog.at_level(logging.WARNING, "ferrogate.routing"):
        assert reloader.reload_file() is True
        assert reloader.reload_file() is True  # the same restart-only edit is not warned about twice
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "server changed; that needs a restart" in warnings[0]
    assert groups(reloader.config)["smart"] == [("b", "bigger")]
    assert reloader.config.server == reloader.started.server  # the running server settings stay the started ones
    assert reloader.status().restart_needed == ("server",)


async def test_watch_picks_up_a_file_change(config_file: Path, store: SqliteStore) -> None:
    reloader, router = reloader_for(config_file, store)
    watching = asyncio.create_task(reloader.watch())
    try:
        await until(lambda: reloader.watching)
        await asyncio.sleep(0.2)  # the watcher's thread has started watching
        write(config_file, FILE.replace("routing:", "  - name: added\n    deployments: [{upstream: a}]\nrouting:"))
        await until(lambda: bool(router.reloads))
        assert "added" in groups(router.reloads[-1])
        tmp = config_file.with_suffix(".tmp")  # an editor's save: write aside, then rename over the file
        write(tmp, FILE.replace("model: small", "model: renamed"))
        tmp.replace(config_file)
        await until(lambda: groups(reloader.config)["fast"] == [("a", "renamed")])
        assert "added" not in groups(reloader.config)
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
    assert reloader.watching is False


async def test_watch_follows_the_rules_file(tmp_path: Path, store: SqliteStore) -> None:
    rules = tmp_path / "routing.cedar"
    write(rules, "permit(principal, action, resource);")
    path = tmp_path / "ferrogate.yaml"
    write(path, FILE.replace("routing:", f"routing:\n  rules_file: {rules}"))
    seen: list[str] = []

    def check(routing: RoutingSettings) -> None:
        seen.append(Path(routing.rules_file or "").read_text())

    reloader, _ = reloader_for(path, store, check_rules=check)
    watching = asyncio.create_task(reloader.watch())
    try:
        await until(lambda: reloader.watching)
        await asyncio.sleep(0.2)
        write(rules, "forbid(principal, action, resource);")
        await until(lambda: "forbid(principal, action, resource);" in seen)
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)


async def test_watch_returns_at_once_without_a_file_or_when_turned_off(tmp_path: Path, store: SqliteStore) -> None:
    embedded = ConfigReloader(None, store, StubRouter(), None)
    async with asyncio.timeout(5):
        await embedded.watch()
    assert embedded.status().file is None and embedded.reload_file() is False
    path = tmp_path / "off.yaml"
    write(path, FILE.replace("routing:", "routing:\n  watch: false"))
    async with asyncio.timeout(5):
        await ConfigReloader(path, store, StubRouter(), None).watch()
