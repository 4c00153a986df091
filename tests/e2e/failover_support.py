"""What the failover e2e modules share: a fleet of :mod:`tests.fakes.flaky` upstreams, the gateway configuration
over them (small timeouts, 1 ms backoff, an open retry budget, circuits off unless a group sets one), keys, and
reading an answer's attempt headers and a key's stored usage."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.fakes.flaky import Flaky, FlakyAnthropic, FlakyOpenAI
from tests.support import Gateway, admin, free_port

MASTER = "failover-master-key-0123456789"
HI: Any = [{"role": "user", "content": "hi"}]
#: Small upstream timeouts: a hang or a stall costs half a second.
TIMEOUTS = "{connect_s: 0.5, read_s: 0.5, total_s: 5}"

#: The fakes by name (the name of their upstream).
Fleet = dict[str, Flaky]


def retries(**override: Any) -> str:
    """A ``retries`` mapping: 3 attempts, 1 ms backoff and no retry budget to speak of, with ``override``.

    A group's ``retries`` replaces ``routing.retries`` whole, so every group that sets it says it all.

    >>> retries(attempts=1)
    '{attempts: 1, backoff_ms: 1, backoff_max_ms: 5, budget_pct: 100, budget_min: 100000}'
    """
    fields = {"attempts": 3, "backoff_ms": 1, "backoff_max_ms": 5, "budget_pct": 100, "budget_min": 100000}
    return "{" + ", ".join(f"{k}: {v}" for k, v in (fields | override).items()) + "}"


def group(name: str, *deployments: str, **fields: str) -> str:
    """A ``model_groups`` entry; a deployment is ``upstream/model``, or ``upstream/model@priority``.

    >>> group("g", "a/gpt@2", fallbacks="[h]")
    '  - {name: g, fallbacks: [h], deployments: [{upstream: a, model: gpt, priority: 2}]}'
    """
    deps = []
    for dep in deployments:
        where, _, priority = dep.partition("@")
        upstream, model = where.split("/")
        deps.append(f"{{upstream: {upstream}, model: {model}" + (f", priority: {priority}}}" if priority else "}"))
    extra = "".join(f", {k}: {v}" for k, v in fields.items())
    return f"  - {{name: {name}{extra}, deployments: [{', '.join(deps)}]}}"


def config(fleet: Fleet, groups: list[str]) -> str:
    """The gateway's configuration: an upstream per fake, ``dead`` (nothing listens: connections are refused),
    and ``groups``."""
    upstreams = [
        f"  - {{name: {f.name}, provider: {f.provider}, base_url: '{f.base_url}', api_key: sk-flaky,"
        f" timeouts: {TIMEOUTS}}}"
        for f in fleet.values()
    ]
    dead = f"http://127.0.0.1:{free_port()}/v1"
    upstreams.append(f"  - {{name: dead, provider: openai, base_url: '{dead}', timeouts: {TIMEOUTS}}}")
    nl = "\n"
    return f"""
routing:
  retries: {retries()}
  circuit: {{enabled: false}}
upstreams:
{nl.join(upstreams)}
model_groups:
{nl.join(groups)}
"""


def running_fleet(openai_names: tuple[str, ...], anthropic_names: tuple[str, ...]) -> Iterator[Fleet]:
    """The fakes, started; stopped when the generator is closed (a module fixture's body)."""
    fleet: Fleet = {n: FlakyOpenAI(n) for n in openai_names} | {n: FlakyAnthropic(n) for n in anthropic_names}
    try:
        for fake in fleet.values():
            fake.start()
        yield fleet
    finally:
        for fake in fleet.values():
            if fake.port:
                fake.stop()


def serving(tmp: Path, fleet: Fleet, groups: list[str]) -> Iterator[Gateway]:
    """A gateway (keys required, master key :data:`MASTER`) over ``fleet``; stopped when the generator closes."""
    gateway = Gateway(tmp, config(fleet, groups), dev=False, env={"FERROGATE_MASTER_KEY": MASTER}).wait_ready()
    try:
        yield gateway
    finally:
        gateway.stop()


def new_key(gw: Gateway) -> dict[str, Any]:
    """A key of a team of its own (what it used is its alone): the admin API's answer, with ``key``."""
    team = admin(gw, "POST", "/teams", {"name": f"failover-{time.monotonic_ns()}"})
    key: dict[str, Any] = admin(gw, "POST", "/keys", {"name": "k", "team_id": team["id"]})
    return key


def served(headers: Any) -> tuple[int, str]:
    """``(x-ferrogate-attempts, x-ferrogate-deployment)`` of an answer."""
    return int(headers["x-ferrogate-attempts"]), headers["x-ferrogate-deployment"]


def stored_usage(gw: Gateway, key: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The key's usage total (``GET /v1/usage``) and its team's request audit records, once both have some and
    one more write batch has gone by (a second record would be in by then)."""
    auth = {"authorization": f"Bearer {key['key']}"}
    trail_path = f"/audit?team_id={key['team_id']}&kind=request&limit=100"
    deadline = time.monotonic() + 10
    while True:  # usage and audit records are written in batches (0.5 s)
        total: dict[str, Any] = httpx.get(f"{gw.url}/v1/usage", headers=auth, timeout=10).json()["total"]
        trail: list[dict[str, Any]] = admin(gw, "GET", trail_path)["data"]
        if (total["requests"] and trail) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    time.sleep(0.6)
    total = httpx.get(f"{gw.url}/v1/usage", headers=auth, timeout=10).json()["total"]
    return total, admin(gw, "GET", trail_path)["data"]
