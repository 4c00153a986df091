"""Structured outputs: a whole answer checked against the request's ``response_format`` JSON schema, per the model
group's ``schema_check`` (report, retry, error), through the real openai SDK (docs/routing.md)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.e2e.failover_support import HI, Fleet, group, new_key, running_fleet, serving
from tests.e2e.test_metrics import get, scrape
from tests.fakes.flaky import answer
from tests.support import Gateway

SCHEMA: Any = {
    "type": "json_schema",
    "json_schema": {
        "name": "city",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "people": {"type": "integer"}},
            "required": ["city", "people"],
            "additionalProperties": False,
        },
    },
}
GOOD, BAD = '{"city": "Paris", "people": 2100000}', '{"city": "Paris", "people": "many"}'


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    yield from running_fleet(("s1", "s2", "s3", "s4"), ())


@pytest.fixture(scope="module")
def gw(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    groups = [
        group("reported", "s1/gpt", schema_check="report"),
        group("retried", "s2/gpt", schema_check="retry"),
        group("refused", "s3/gpt", schema_check="error"),
        group("unchecked", "s4/gpt"),
    ]
    yield from serving(tmp_path_factory.mktemp("structured"), fleet, groups)


@pytest.fixture(scope="module")
def key(gw: Gateway) -> str:
    return str(new_key(gw)["key"])


@pytest.fixture
def sdk(gw: Gateway, fleet: Fleet, key: str) -> Iterator[openai.OpenAI]:
    for fake in fleet.values():
        fake.reset()
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0) as client:
        yield client


def ask(sdk: openai.OpenAI, model: str) -> tuple[str, Any]:
    raw = sdk.chat.completions.with_raw_response.create(model=model, messages=HI, response_format=SCHEMA)
    return raw.parse().choices[0].message.content or "", raw.headers


@pytest.mark.parametrize(("text", "mark"), [(GOOD, "valid"), (BAD, "invalid"), ("not json", "invalid")])
def test_report_marks_the_answer(sdk: openai.OpenAI, fleet: Fleet, text: str, mark: str) -> None:
    fleet["s1"].script(answer(text))
    content, headers = ask(sdk, "reported")
    assert (content, headers["x-ferrogate-schema"], fleet["s1"].count) == (text, mark, 1)


def test_retry_asks_once_more_and_sends_the_second_answer(sdk: openai.OpenAI, fleet: Fleet) -> None:
    fleet["s2"].script(answer(BAD), answer(GOOD))
    content, headers = ask(sdk, "retried")
    assert (content, headers["x-ferrogate-schema"], fleet["s2"].count) == (GOOD, "valid", 2)
    fleet["s2"].script(answer(BAD), answer(BAD), answer(GOOD))  # one retry only: the second answer goes out
    content, headers = ask(sdk, "retried")
    assert (content, headers["x-ferrogate-schema"], fleet["s2"].count) == (BAD, "invalid", 4)


def test_error_refuses_a_mismatch_naming_the_violation(sdk: openai.OpenAI, fleet: Fleet) -> None:
    fleet["s3"].script(answer(BAD))
    with pytest.raises(openai.APIStatusError) as info:
        ask(sdk, "refused")
    assert info.value.status_code == 502
    body: Any = info.value.body
    assert body["code"] == "response_schema_mismatch" and "/people" in body["message"]
    assert "many" not in body["message"]  # the answer's values are not echoed
    fleet["s3"].script(answer(GOOD))
    assert ask(sdk, "refused")[1]["x-ferrogate-schema"] == "valid"


def test_off_checks_nothing(sdk: openai.OpenAI, fleet: Fleet) -> None:
    fleet["s4"].script(answer(BAD))
    content, headers = ask(sdk, "unchecked")
    assert content == BAD and "x-ferrogate-schema" not in headers


def test_checks_are_counted(sdk: openai.OpenAI, gw: Gateway, fleet: Fleet) -> None:
    fleet["s1"].script(answer(GOOD), answer(BAD))
    ask(sdk, "reported")
    ask(sdk, "reported")
    name = "ferrogate_schema_checks_total"
    deadline = time.monotonic() + 10
    while True:  # each worker flushes its counts every second
        samples = scrape(gw)[0]
        found = [get(samples, name, group="reported", result=r) for r in ("valid", "invalid")]
        if all(found) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert all(value is not None and value >= 1 for value in found), found
