"""Deployment rate limits in the configuration and the router's table of limited deployments."""

from __future__ import annotations

import asyncio

import pytest

from ferrogate.config import ConfigError, load_config_text
from ferrogate.pipeline.router import Router

UPSTREAMS = "upstreams: [{name: up, provider: mock}]\n"


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config_text(UPSTREAMS + text, "test.yaml", {})
    return info.value.problems


@pytest.mark.parametrize(("field", "value"), [("rpm", 0), ("rpm", -5), ("tpm", 0), ("tpm", "many"), ("rpm", 1.5)])
def test_deployment_limits_must_be_positive_integers(field: str, value: object) -> None:
    found = problems(f"model_groups: [{{name: g, deployments: [{{upstream: up, {field}: {value}}}]}}]")
    assert [path for path, _ in found] == [f"model_groups[0].deployments[0].{field}"]


def test_router_lists_only_groups_whose_serving_deployment_has_limits() -> None:
    config = load_config_text(
        UPSTREAMS
        + "model_groups:\n"
        + "  - {name: plain, deployments: [{upstream: up}]}\n"
        + "  - {name: rpm-only, deployments: [{upstream: up, model: inner, rpm: 3}]}\n"
        + "  - {name: second-limited, deployments: [{upstream: up}, {upstream: up, tpm: 10}]}\n",
        "test.yaml",
        {},
    )
    assert config.model_groups[1].deployments[0].rpm == 3
    assert config.model_groups[1].deployments[0].tpm is None
    router = Router(config)
    try:
        assert list(router.limited) == ["rpm-only"]  # the first deployment serves: its limits apply
        limits = router.limited["rpm-only"]
        assert (limits.rpm, limits.tpm) == (3, None)
        assert (limits.rpm_key, limits.tpm_key) == ("d:rpm-only:0:rpm", "d:rpm-only:0:tpm")
        assert limits.subject == "model group 'rpm-only' (its deployment on upstream 'up')"
    finally:
        asyncio.run(router.close())
