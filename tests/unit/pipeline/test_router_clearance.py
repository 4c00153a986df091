"""The route phase's choice by classification: the group's deployments cleared for it, in order, else 403."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from ferrogate.config.loader import load_config_text
from ferrogate.errors import GatewayError
from ferrogate.pipeline.router import Router

CONFIG = """
upstreams: [{name: up, provider: mock}]
model_groups:
  - name: tiered
    deployments:
      - {upstream: up, model: low, clearance: internal}
      - {upstream: up, model: high, rpm: 5}
  - name: open
    deployments: [{upstream: up, model: open, clearance: public}]
"""


@pytest.fixture
def router() -> Iterator[Router]:
    found = Router(load_config_text(CONFIG, "test.yaml", {}))
    yield found
    asyncio.run(found.close())


def pick(router: Router, model: str, classification: str) -> tuple[str, int, object]:
    _, targets = router.resolve(model, classification, stream=False)
    first = targets[0]
    return first.model, first.index, first.limits


@pytest.mark.parametrize(
    ("classification", "model", "index"),
    [
        ("", "low", 0),
        ("public", "low", 0),
        ("internal", "low", 0),
        ("confidential", "high", 1),
        ("restricted", "high", 1),
    ],
)
def test_first_cleared_deployment_serves(router: Router, classification: str, model: str, index: int) -> None:
    upstream_model, at, limits = pick(router, "tiered", classification)
    assert (upstream_model, at) == (model, index)
    assert (limits is not None) == (index == 1)  # the second deployment's own rpm applies when it serves
    if limits is not None:
        assert limits.rpm_key == "d:tiered:1:rpm"  # type: ignore[attr-defined]


def test_none_cleared(router: Router) -> None:
    assert pick(router, "open", "public")[0] == "open"
    with pytest.raises(GatewayError) as caught:
        pick(router, "open", "internal")
    err = caught.value
    assert (err.status, err.wire_code, err.param) == (403, "classification_not_cleared", "x-ferrogate-classification")
    assert "'internal'" in err.message and "'open'" in err.message


def test_default_clearance_is_restricted() -> None:
    config = load_config_text(CONFIG, "test.yaml", {})
    assert config.model_groups[0].deployments[1].clearance == "restricted"
