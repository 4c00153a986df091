"""Shared fixtures: the fake OpenAI upstream, a fake Anthropic upstream per module, and a gateway configured
against the first."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeUpstream
from tests.support import Gateway, free_port


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    """A fake Anthropic upstream of the module's own (what it recorded is the module's alone)."""
    fake = FakeAnthropic()
    fake.start()
    yield fake
    fake.stop()


def gateway_config(upstream_port: int) -> str:
    """Model groups that route to the fake upstream's behaviours, plus the mock and a dead upstream."""
    behaviours = [
        "echo",
        "no-usage",
        "slow",
        "fail-400",
        "fail-429",
        "fail-500",
        "die-mid-stream",
        "slow-stream",
        "gated-stream",
    ]
    groups = "\n".join(f"  - name: fake-{b}\n    deployments: [{{upstream: fake, model: {b}}}]" for b in behaviours)
    return f"""
server:
  max_body_bytes: 65536
  grace_period_s: 10
upstreams:
  - name: fake
    provider: openai
    base_url: http://127.0.0.1:{upstream_port}/v1
    api_key: sk-fake-upstream-key
    timeouts: {{connect_s: 2, read_s: 1.5, total_s: 30}}
  - name: dead
    provider: openai
    base_url: http://127.0.0.1:{free_port()}/v1
    timeouts: {{connect_s: 1}}
  - name: mock
    provider: mock
    mock: {{chunks: 4, words: 12}}
model_groups:
  - name: mock
    deployments: [{{upstream: mock}}]
  - name: gone
    deployments: [{{upstream: dead, model: echo}}]
{groups}
"""


@pytest.fixture(scope="session")
def gateway(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp: Path = tmp_path_factory.mktemp("gateway")
    gw = Gateway(tmp, gateway_config(upstream.port)).wait_ready()
    yield gw
    gw.stop()
