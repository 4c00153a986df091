"""Circuit breakers shared exactly: a trip on one worker holds for every worker of the instance (the shared table),
and, with Redis, for every instance; the admin API and the metrics show it (docs/routing.md, "Circuit breakers").

Two instances (two workers each) over the same two fakes and Redis: the group ``guarded`` has a breaker that opens
after two failures in a row. Once it trips, no worker of either instance sends the failing upstream another
request, whatever connection a request comes in on. Last, a routing rule on the budget left on the key's chain
(read from the ledger only because a rule reads it) routes by it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.failover_support import HI, MASTER, Fleet, config, group, new_key, running_fleet
from tests.e2e.test_metrics import get, scrape
from tests.fakes.flaky import status
from tests.support import Gateway, admin

REDIS = "redis://127.0.0.1:6379/0"
GROUPS = [group("guarded", "bad/gpt", "good/gpt", circuit="{consecutive: 2, cooldown_s: 60, cooldown_max_s: 60}")]


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    yield from running_fleet(("bad", "good"), ())


@pytest.fixture(scope="module")
def pair(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Gateway]]:
    tmp = tmp_path_factory.mktemp("circuits")
    url = f"sqlite:///{tmp}/shared.db"
    env = {"FERROGATE_MASTER_KEY": MASTER, "FERROGATE_REDIS_URL": REDIS}
    text = config(fleet, GROUPS)
    first = Gateway(tmp, text, workers=2, dev=False, env=env, database_url=url).wait_ready()
    try:
        second = Gateway(tmp, text, workers=2, dev=False, env=env, database_url=url).wait_ready()
        try:
            yield first, second
        finally:
            second.stop()
    finally:
        first.stop()


def ask(gw: Gateway, key: str) -> httpx.Response:
    """One request on a new connection (either worker may take it)."""
    with httpx.Client(timeout=10) as client:
        return client.post(
            f"{gw.url}/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "guarded", "messages": HI},
        )


def test_a_trip_holds_on_every_worker_and_instance(pair: tuple[Gateway, Gateway], fleet: Fleet) -> None:
    first, second = pair
    key: str = new_key(first)["key"]
    fleet["bad"].script(default=status(500))
    served_by: list[Any] = []
    for _ in range(2):  # two failures in a row on the first instance: the breaker opens
        resp = ask(first, key)
        assert resp.status_code == 200, resp.text
        served_by.append(resp.headers["x-ferrogate-deployment"])
    assert fleet["bad"].count == 2 and served_by == ["good/gpt", "good/gpt"]
    time.sleep(1.0)  # the trip reaches the other instance through Redis
    for gw in (first, second) * 6:  # 12 requests, new connections: both workers of both instances
        resp = ask(gw, key)
        assert (resp.status_code, resp.headers["x-ferrogate-attempts"]) == (200, "1"), resp.text
    assert fleet["bad"].count == 2  # not one more request reached the failing upstream


def test_the_admin_api_and_the_metrics_show_the_open_circuit(pair: tuple[Gateway, Gateway]) -> None:
    first, second = pair
    for gw in (first, second):
        listed = admin(gw, "GET", "/llm/upstreams")
        found = {
            d["key"]: d["health"]
            for u in listed["data"]
            for d in u["deployments"]
            if d.get("health") is not None and "key" in d
        }
        assert found["bad/gpt"]["state"] == "open", listed
        assert found["good/gpt"]["state"] == "closed", listed
    deadline = time.monotonic() + 10
    while True:  # the gauge is set at each worker's flush (every second)
        value = get(scrape(first)[0], "ferrogate_circuit_state", upstream="bad", model="gpt")
        if value == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert value == 1


RULES = """
@id("cheap-when-low") @priority("10")
permit(principal, action, resource) when {
  context.budget_left_cents >= 0 && context.budget_left_cents < 1000 && resource.tags.contains("self-hosted")
};
"""


@pytest.fixture(scope="module")
def budgeted(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway whose rules prefer the self-hosted deployment when the key's budget left is under 10 USD."""
    tmp = tmp_path_factory.mktemp("budget-rules")
    price = "price: {input: 1, output: 1}"
    text = config(fleet, []) + (
        f"  - {{name: thrifty, deployments: [{{upstream: bad, model: gpt, {price}}},"
        f" {{upstream: good, model: gpt, tags: [self-hosted], {price}}}]}}\n"
    )
    text = text.replace("routing:\n", "routing:\n  rules: |\n" + "".join(f"    {ln}\n" for ln in RULES.splitlines()))
    gw = Gateway(tmp, text, dev=False, env={"FERROGATE_MASTER_KEY": MASTER}).wait_ready()
    try:
        yield gw
    finally:
        gw.stop()


def test_a_rule_on_the_budget_left_routes_by_it(budgeted: Gateway, fleet: Fleet) -> None:
    fleet["bad"].script()
    team = admin(budgeted, "POST", "/teams", {"name": "thrifty"})
    served = {}
    for budget in (5, 500):
        key = admin(budgeted, "POST", "/keys", {"name": f"k{budget}", "team_id": team["id"], "budget": budget})
        with httpx.Client(timeout=10) as client:
            resp = client.post(
                f"{budgeted.url}/v1/chat/completions",
                headers={"authorization": f"Bearer {key['key']}"},
                json={"model": "thrifty", "messages": HI, "max_tokens": 5},
            )
        assert resp.status_code == 200, resp.text
        served[budget] = resp.headers["x-ferrogate-deployment"]
    assert served == {5: "good/gpt", 500: "bad/gpt"}  # under 10 USD left: the self-hosted one first
