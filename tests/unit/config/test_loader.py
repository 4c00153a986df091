"""Configuration loading: interpolation, defaults and errors that name the YAML path."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferrogate.config import ConfigError, default_config, load_config, load_config_text

EXAMPLE = Path(__file__).resolve().parents[3] / "configs" / "example.yaml"


def problems(text: str, env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "test.yaml", env or {})
    return info.value.problems


def test_example_is_valid() -> None:
    cfg = load_config(EXAMPLE, {"OPENAI_API_KEY": "sk-a", "OPENROUTER_API_KEY": "sk-b"})
    assert [u.name for u in cfg.upstreams] == ["openai", "openrouter", "local-vllm", "mock"]
    assert cfg.upstreams[2].base_url == "http://127.0.0.1:8000/v1"  # the ${VAR:-default} fallback
    key = cfg.upstreams[0].api_key
    assert key is not None and key.get_secret_value() == "sk-a"


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("upstreams: [{name: a, provider: mock, base_url: '${X}'}]", {"X": "http://h/v1/"}, "http://h/v1"),
        ("upstreams: [{name: a, provider: mock, base_url: 'http://${H}:${P:-80}/v1'}]", {"H": "h"}, "http://h:80/v1"),
    ],
)
def test_interpolation(text: str, env: dict[str, str], expected: str) -> None:
    assert load_config_text(text, "t", env).upstreams[0].base_url == expected


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("upstreams: [{name: a, provider: openai}]", "upstreams[0]"),
        ("upstreams: [{name: a, provider: mock, timeouts: {read_s: 0}}]", "upstreams[0].timeouts.read_s"),
        ("upstreams: [{name: a, provider: mock}, {name: a, provider: mock}]", "upstreams[1].name"),
        ("model_groups: [{name: m, deployments: [{upstream: x}]}]", "model_groups[0].deployments[0].upstream"),
        ("server: {grace: 3}", "server.grace"),
        ("upstreams: [{name: 'bad name', provider: mock}]", "upstreams[0].name"),
        ("[1, 2]", "(document)"),
        ("a: [", "line 1, column 5"),
        ("upstreams: [{name: a, provider: mock, api_key: '${NOPE}'}]", "upstreams[0].api_key"),
    ],
)
def test_errors_name_the_yaml_path(text: str, path: str) -> None:
    assert path in [p for p, _ in problems(text)]


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("/nonexistent/ferrogate.yaml")
    assert info.value.problems[0][0] == "(file)"


def test_default_config_without_keys_is_mock_only() -> None:
    cfg = default_config({})
    assert [g.name for g in cfg.model_groups] == ["mock"]


def test_default_config_adds_openai_when_keyed() -> None:
    cfg = default_config({"OPENAI_API_KEY": "sk-x"})
    assert [u.name for u in cfg.upstreams] == ["mock", "openai"]
    assert "gpt-4o" in [g.name for g in cfg.model_groups]
    assert cfg.upstreams[1].base_url == "https://api.openai.com/v1"
