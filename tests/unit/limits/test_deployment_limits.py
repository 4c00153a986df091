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


def test_router_keeps_each_deployments_limits() -> None:
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
        limited = {
            name: [t.limits is not None for t in router.group(name).by_priority]  # type: ignore[union-attr]
            for name in ("plain", "rpm-only", "second-limited")
        }
        assert limited == {"plain": [False], "rpm-only": [True], "second-limited": [False, True]}
        limits = router.group("rpm-only").by_priority[0].limits  # type: ignore[union-attr]
        assert limits is not None
        assert (limits.rpm, limits.tpm) == (3, None)
        assert (limits.rpm_key, limits.tpm_key) == ("d:rpm-only:0:rpm", "d:rpm-only:0:tpm")
        assert limits.subject == "model group 'rpm-only' (its deployment on upstream 'up')"
        second = router.group("second-limited").by_priority[1].limits  # type: ignore[union-attr]
        assert second is not None and second.tpm_key == "d:second-limited:1:tpm"
    finally:
        asyncio.run(router.close())
