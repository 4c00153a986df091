"""Retries and fallbacks of whole (JSON) answers, through the real openai and anthropic SDKs (docs/routing.md).

A model group's deployments are tried in ``strategy`` order (``priority``: by ``priority``, then configuration
order); a failed attempt (429, 5xx but 501, a refused or reset connection, a timeout) moves to the next
deployment, and after the last one round again from the first, up to ``retries.attempts`` attempts; another
4xx reaches the client at once. ``retry-after`` / ``retry-after-ms`` keep a deployment out until then; then
``fallbacks`` (and ``context_window_fallbacks`` / ``content_policy_fallbacks`` for those refusals). Every answer
says how many attempts it took and which deployment answered; the request is metered and audited once.

Each upstream is a :mod:`tests.fakes.flaky` fake the test scripts; circuit breakers are off here but for the
group ``tripping`` (every other test would trip them), and the retry budget is wide open.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.e2e.failover_support import HI, Fleet, group, new_key, retries, running_fleet, served, serving, stored_usage
from tests.e2e.test_metrics import scrape
from tests.fakes.flaky import COMPLETION_TOKENS, CONTEXT, HANG, PROMPT_TOKENS, RESET, Act, policy, status
from tests.support import Gateway

OPENAI_FAKES = ("a", "b", "c", "d", "ra1", "ra2", "ra3", "ra4", "rw", "rd", "t1", "t2", "m1", "m2")
ANTHROPIC_FAKES = ("ca", "cb", "cd")

GROUPS = [
    group("pair", "a/gpt", "b/gpt"),
    group("ranked", "a/gpt@2", "b/gpt@1", "c/gpt@1"),
    group("solo", "a/gpt"),
    group("once", "a/gpt", retries=retries(attempts=1)),
    group("refused", "dead/gpt", "b/gpt"),
    group("primary", "a/gpt", retries=retries(attempts=2), fallbacks="[secondary, tertiary]"),
    group("secondary", "b/gpt", retries=retries(attempts=1)),
    group("tertiary", "c/gpt"),
    group(
        "guarded",
        "a/gpt",
        "b/gpt",
        fallbacks="[spare]",
        context_window_fallbacks="[wide]",
        content_policy_fallbacks="[lenient]",
    ),
    group("wide", "c/gpt-wide"),
    group("lenient", "d/gpt-lenient"),
    group("spare", "d/gpt-spare"),
    group("claude-pair", "ca/claude", "cb/claude"),
    group("claude-guarded", "ca/claude", context_window_fallbacks="[claude-wide]"),
    group("claude-wide", "cb/claude-wide"),
    group("cooled", "ra1/gpt", "ra2/gpt"),
    group("cooled-later", "ra3/gpt", "ra4/gpt"),
    group("waits", "rw/gpt"),
    group("hurried", "rd/gpt", retries=retries(deadline_s=1)),
    group("claude-hurried", "cd/claude", retries=retries(deadline_s=1)),
    group("tripping", "t1/gpt", "t2/gpt", circuit="{consecutive: 2, cooldown_s: 30}"),
    group("metered", "m1/gpt", "m2/gpt"),
]


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    yield from running_fleet(OPENAI_FAKES, ANTHROPIC_FAKES)


@pytest.fixture(autouse=True)
def fresh(fleet: Fleet) -> None:
    """Every fake answers OK and has received nothing, at the start of each test."""
    for fake in fleet.values():
        fake.reset()


@pytest.fixture(scope="module")
def gw(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serving(tmp_path_factory.mktemp("failover"), fleet, GROUPS)


@pytest.fixture(scope="module")
def secret(gw: Gateway) -> str:
    found: str = new_key(gw)["key"]
    return found


@pytest.fixture(scope="module")
def oai(gw: Gateway, secret: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=secret, max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def ant(gw: Gateway, secret: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gw.url, api_key=secret, max_retries=0) as client:
        yield client


def chat(oai: openai.OpenAI, model: str, **headers: str) -> tuple[str, Any]:
    """The answer's text and headers."""
    raw = oai.chat.completions.with_raw_response.create(model=model, messages=HI, extra_headers=headers or None)
    return raw.parse().choices[0].message.content or "", raw.headers


def message(ant: anthropic.Anthropic, model: str) -> tuple[str, Any]:
    """The answer's text and headers, through ``/v1/messages``."""
    raw = ant.messages.with_raw_response.create(model=model, max_tokens=64, messages=HI)
    block = raw.parse().content[0]
    return block.text if block.type == "text" else "", raw.headers


def refused(call: Any, error: type[Exception]) -> Any:
    """The exception (of type ``error``) ``call()`` raises."""
    with pytest.raises(error) as info:
        call()
    return info.value


# --- retries across deployments -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [status(500), status(502), status(503), status(504), status(429), RESET, HANG],
    ids=["500", "502", "503", "504", "429", "reset", "timeout"],
)
def test_a_failed_attempt_moves_to_the_next_deployment(oai: openai.OpenAI, fleet: Fleet, fault: Act) -> None:
    fleet["a"].script(fault)
    text, headers = chat(oai, "pair")
    assert text == "served by b"
    assert served(headers) == (2, "b/gpt")
    assert (fleet["a"].count, fleet["b"].count) == (1, 1)
    assert fleet["b"].requests[0]["body"]["model"] == "gpt"


def test_a_refused_connection_moves_to_the_next_deployment(oai: openai.OpenAI, fleet: Fleet) -> None:
    text, headers = chat(oai, "refused")
    assert (text, served(headers)) == ("served by b", (2, "b/gpt"))
    assert fleet["b"].count == 1


@pytest.mark.parametrize("fault", [status(529), status(500), status(429), RESET], ids=["529", "500", "429", "reset"])
def test_an_anthropic_deployment_failing_moves_on(ant: anthropic.Anthropic, fleet: Fleet, fault: Act) -> None:
    fleet["ca"].script(fault)
    text, headers = message(ant, "claude-pair")
    assert (text, served(headers)) == ("served by cb", (2, "cb/claude"))
    assert (fleet["ca"].count, fleet["cb"].count) == (1, 1)


def test_priority_orders_the_deployments_then_configuration_order(oai: openai.OpenAI, fleet: Fleet) -> None:
    assert chat(oai, "ranked")[0] == "served by b"  # priority 1 before 2; b before c by configuration order
    fleet["b"].script(status(500))
    text, headers = chat(oai, "ranked")
    assert (text, served(headers)) == ("served by c", (2, "c/gpt"))
    assert (fleet["a"].count, fleet["b"].count, fleet["c"].count) == (0, 2, 1)


def test_after_the_last_deployment_it_goes_round_again(oai: openai.OpenAI, fleet: Fleet) -> None:
    fleet["a"].script(status(500))
    fleet["b"].script(status(503))
    text, headers = chat(oai, "pair")
    assert (text, served(headers)) == ("served by a", (3, "a/gpt"))
    assert (fleet["a"].count, fleet["b"].count) == (2, 1)


def test_one_deployment_is_retried_up_to_the_attempts(oai: openai.OpenAI, fleet: Fleet) -> None:
    fleet["a"].script(status(500), RESET)
    text, headers = chat(oai, "solo")
    assert (text, served(headers), fleet["a"].count) == ("served by a", (3, "a/gpt"), 3)


def test_spent_attempts_give_the_client_the_last_error(oai: openai.OpenAI, fleet: Fleet) -> None:
    fleet["a"].script(default=status(500))
    fleet["b"].script(default=status(500))
    err = refused(lambda: chat(oai, "pair"), openai.InternalServerError)
    assert err.status_code == 500
    assert set(err.body) >= {"message", "type", "code"}
    assert served(err.response.headers) == (3, "a/gpt")
    assert (fleet["a"].count, fleet["b"].count) == (2, 1)


def test_spent_attempts_reach_an_anthropic_client_in_its_shape(ant: anthropic.Anthropic, fleet: Fleet) -> None:
    fleet["a"].script(default=status(500))
    fleet["b"].script(default=status(500))
    err = refused(lambda: message(ant, "pair"), anthropic.InternalServerError)
    assert err.status_code == 500
    assert err.body["type"] == "error" and err.body["error"]["type"] == "api_error"
    assert int(err.response.headers["x-ferrogate-attempts"]) == 3
    assert (fleet["a"].count, fleet["b"].count) == (2, 1)


def test_one_attempt_is_no_retry(oai: openai.OpenAI, fleet: Fleet) -> None:
    fleet["a"].script(status(500))
    err = refused(lambda: chat(oai, "once"), openai.InternalServerError)
    assert (err.status_code, served(err.response.headers), fleet["a"].count) == (500, (1, "a/gpt"), 1)


@pytest.mark.parametrize("code", [400, 401, 403, 404, 422, 501])
def test_another_4xx_or_a_501_reaches_the_client_at_once(oai: openai.OpenAI, fleet: Fleet, code: int) -> None:
    fleet["a"].script(status(code))
    err = refused(lambda: chat(oai, "pair"), openai.APIStatusError)
    assert err.status_code == code
    assert err.body["message"] == f"a: fake failure {code}"
    assert served(err.response.headers) == (1, "a/gpt")
    assert (fleet["a"].count, fleet["b"].count) == (1, 0)


def test_a_4xx_reaches_an_anthropic_client_in_its_shape(ant: anthropic.Anthropic, fleet: Fleet) -> None:
    fleet["a"].script(status(400))
    err = refused(lambda: message(ant, "pair"), anthropic.BadRequestError)
    assert err.body["type"] == "error" and err.body["error"]["type"] == "invalid_request_error"
    assert (fleet["a"].count, fleet["b"].count) == (1, 0)


def test_every_attempt_carries_the_request_id(oai: openai.OpenAI, fleet: Fleet) -> None:
    fleet["a"].script(status(500))
    fleet["b"].script(RESET)
    _, headers = chat(oai, "pair")
    rid = headers["x-request-id"]
    sent = [f.header(i, "x-ferrogate-request-id") for f in (fleet["a"], fleet["b"]) for i in range(f.count)]
    assert sent == [rid, rid, rid]
    fleet["a"].script(status(502))
    _, headers = chat(oai, "pair", **{"x-request-id": "client-chose-this-1"})
    assert headers["x-request-id"] == "client-chose-this-1"  # echoed; upstream gets the gateway's own id
    again = {fleet["a"].header(2, "x-ferrogate-request-id"), fleet["b"].header(1, "x-ferrogate-request-id")}
    assert len(again) == 1 and None not in again and rid not in again


# --- retry-after ----------------------------------------------------------------------------------------


def test_retry_after_moves_the_request_to_another_deployment(oai: openai.OpenAI, fleet: Fleet) -> None:
    fleet["ra1"].script(status(429, retry_after="30"))
    text, headers = chat(oai, "cooled")
    assert (text, served(headers)) == ("served by ra2", (2, "ra2/gpt"))  # not waited: ra2 could take it
    assert (fleet["ra1"].count, fleet["ra2"].count) == (1, 1)


def test_retry_after_keeps_the_deployment_out_of_later_requests(oai: openai.OpenAI, fleet: Fleet) -> None:
    fleet["ra3"].script(status(429, retry_after="30"))
    assert chat(oai, "cooled-later")[0] == "served by ra4"
    text, headers = chat(oai, "cooled-later")
    assert (text, served(headers)) == ("served by ra4", (1, "ra4/gpt"))  # ra3 not asked again before then
    assert (fleet["ra3"].count, fleet["ra4"].count) == (1, 2)


def test_a_retry_after_that_fits_the_deadline_is_waited(oai: openai.OpenAI, fleet: Fleet) -> None:
    fleet["rw"].script(status(503, retry_after_ms="200"))
    text, headers = chat(oai, "waits")
    assert (text, served(headers), fleet["rw"].count) == ("served by rw", (2, "rw/gpt"), 2)


def test_a_retry_after_past_the_deadline_reaches_the_client(oai: openai.OpenAI, fleet: Fleet) -> None:
    fleet["rd"].script(default=status(429, retry_after="30"))
    err = refused(lambda: chat(oai, "hurried"), openai.RateLimitError)
    assert 1 <= int(err.response.headers["retry-after"]) <= 30
    assert (served(err.response.headers), fleet["rd"].count) == ((1, "rd/gpt"), 1)  # not retried before then


def test_anthropic_retry_after_past_the_deadline_reaches_the_client(ant: anthropic.Anthropic, fleet: Fleet) -> None:
    fleet["cd"].script(default=status(429, retry_after="30"))
    err = refused(lambda: message(ant, "claude-hurried"), anthropic.RateLimitError)
    assert err.body["error"]["type"] == "rate_limit_error"
    assert 1 <= int(err.response.headers["retry-after"]) <= 30
    assert fleet["cd"].count == 1


# --- fallbacks ------------------------------------------------------------------------------------------


def test_fallbacks_are_tried_in_order_each_with_its_attempts(oai: openai.OpenAI, fleet: Fleet) -> None:
    a, b, c = fleet["a"], fleet["b"], fleet["c"]
    a.script(default=status(500))
    text, headers = chat(oai, "primary")
    assert (text, served(headers), a.count, b.count, c.count) == ("served by b", (3, "b/gpt"), 2, 1, 0)
    b.script(default=status(500))
    c.script(status(500), status(503))
    text, headers = chat(oai, "primary")  # 2 on primary, 1 on secondary, 3 on tertiary
    assert (text, served(headers), a.count, b.count, c.count) == ("served by c", (6, "c/gpt"), 4, 2, 3)


def test_a_4xx_goes_to_no_fallback(oai: openai.OpenAI, fleet: Fleet) -> None:
    fleet["a"].script(status(400))
    assert refused(lambda: chat(oai, "primary"), openai.BadRequestError).status_code == 400
    assert (fleet["a"].count, fleet["b"].count, fleet["c"].count) == (1, 0, 0)


def test_context_window_exceeded_goes_to_its_fallbacks(oai: openai.OpenAI, fleet: Fleet) -> None:
    fleet["a"].script(CONTEXT)
    text, headers = chat(oai, "guarded")
    assert (text, served(headers)) == ("served by c", (2, "c/gpt-wide"))
    assert fleet["c"].requests[0]["body"]["model"] == "gpt-wide"
    assert (fleet["b"].count, fleet["d"].count) == (0, 0)  # not retried on the group, nor sent to the others


@pytest.mark.parametrize("code", ["content_policy_violation", "content_filter"])
def test_a_content_policy_refusal_goes_to_its_fallbacks(oai: openai.OpenAI, fleet: Fleet, code: str) -> None:
    fleet["a"].script(policy(code))
    text, headers = chat(oai, "guarded")
    assert (text, served(headers)) == ("served by d", (2, "d/gpt-lenient"))
    assert (fleet["b"].count, fleet["c"].count) == (0, 0)


def test_other_failures_go_to_the_plain_fallbacks(oai: openai.OpenAI, fleet: Fleet) -> None:
    fleet["a"].script(default=status(500))
    fleet["b"].script(default=status(500))
    text, headers = chat(oai, "guarded")
    assert (text, served(headers)) == ("served by d", (4, "d/gpt-spare"))
    assert (fleet["a"].count, fleet["b"].count, fleet["c"].count) == (2, 1, 0)


def test_context_window_exceeded_without_fallbacks_reaches_the_client(
    oai: openai.OpenAI, ant: anthropic.Anthropic, fleet: Fleet
) -> None:
    fleet["a"].script(CONTEXT, CONTEXT)
    err = refused(lambda: chat(oai, "pair"), openai.BadRequestError)
    assert err.body["code"] == "context_length_exceeded"
    bad = refused(lambda: message(ant, "pair"), anthropic.BadRequestError)
    assert bad.body["type"] == "error" and bad.body["error"]["type"] == "invalid_request_error"
    assert (fleet["a"].count, fleet["b"].count) == (2, 0)


@pytest.mark.parametrize("client", ["openai", "anthropic"])
def test_anthropic_prompt_too_long_goes_to_the_context_window_fallbacks(
    oai: openai.OpenAI, ant: anthropic.Anthropic, fleet: Fleet, client: str
) -> None:
    fleet["ca"].script(CONTEXT)
    text, headers = chat(oai, "claude-guarded") if client == "openai" else message(ant, "claude-guarded")
    assert (text, served(headers)) == ("served by cb", (2, "cb/claude-wide"))
    assert (fleet["ca"].count, fleet["cb"].count) == (1, 1)


# --- metering, audit, metrics, circuit ------------------------------------------------------------------


def test_a_retried_request_is_metered_and_audited_once(gw: Gateway, fleet: Fleet) -> None:
    key = new_key(gw)
    fleet["a"].script(status(500))
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key["key"], max_retries=0) as sdk:
        assert chat(sdk, "pair")[0] == "served by b"
    usage, trail = stored_usage(gw, key)
    tokens = (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert (usage["requests"], (usage["prompt_tokens"], usage["completion_tokens"])) == (1, tokens)
    assert len(trail) == 1
    assert (trail[0]["data"]["upstream"], trail[0]["data"]["status"], trail[0]["data"]["attempts"]) == ("b", 200, 2)


def test_every_attempt_is_counted_in_metrics(oai: openai.OpenAI, gw: Gateway, fleet: Fleet) -> None:
    fleet["m1"].script(default=status(500))
    for _ in range(2):
        assert chat(oai, "metered")[0] == "served by m2"

    def attempts(samples: Any, upstream: str) -> dict[str, float]:
        found: dict[str, float] = {}
        for (name, labels), value in samples.items():
            tags = dict(labels)
            if name == "ferrogate_upstream_attempts_total" and tags.get("upstream") == upstream:
                found[tags["outcome"]] = found.get(tags["outcome"], 0) + value
        return found

    deadline = time.monotonic() + 10
    while True:  # metrics are flushed every second
        samples, text, _ = scrape(gw)
        failed, ok = attempts(samples, "m1"), attempts(samples, "m2")
        if (sum(failed.values()), sum(ok.values())) == (2, 2) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (failed, ok) == ({"error": 2}, {"ok": 2}), text
    requests = sum(v for (n, labels), v in samples.items() if n == "ferrogate_requests_total" and
                   dict(labels).get("model") == "metered")  # fmt: skip
    assert requests == 2  # each request once, whatever its attempts


def test_the_circuit_opens_after_consecutive_failures(oai: openai.OpenAI, fleet: Fleet) -> None:
    fleet["t1"].script(default=status(500))
    answers = [chat(oai, "tripping") for _ in range(5)]
    assert {text for text, _ in answers} == {"served by t2"}
    assert [served(h)[0] for _, h in answers] == [2, 2, 1, 1, 1]  # open after the second failure in a row
    assert (fleet["t1"].count, fleet["t2"].count) == (2, 5)
