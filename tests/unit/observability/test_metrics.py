"""Metrics: exact values after known observe() calls, read back from prometheus-client's multiprocess files."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from time import perf_counter
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, values
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from ferrogate import _core
from ferrogate.auth.identity import Identity
from ferrogate.config import Config, load_config_text
from ferrogate.errors import BudgetExhausted, ErrorKind, GatewayError
from ferrogate.metering import Price, PriceTable
from ferrogate.observability import FAMILIES, counter
from ferrogate.observability.families import LATENCY_BUCKETS, REQUESTS
from ferrogate.observability.metrics import MULTIPROC_ENV, Metrics, instance_directory
from ferrogate.pipeline.context import RequestContext, Usage
from ferrogate.pipeline.limit import refusal

CONFIG = """
server: {prices_file: null}
upstreams:
  - {name: up, provider: mock}
  - {name: other-up, provider: mock}
model_groups:
  - {name: a, deployments: [{upstream: up}]}
  - {name: b, deployments: [{upstream: up, model: bb}]}
"""
PRICES = PriceTable(models={"a": Price(input=1_000_000, output=2_000_000)})  # USD 1 per prompt token, 2 per output
CHAT = "/v1/chat/completions"
TEAM = Identity("key_1", "team_1", None, ("*",), None, None)


class Provider:
    def __init__(self, name: str = "up") -> None:
        self.name = name


@pytest.fixture
def mpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh multiprocess directory, and a value class of its own (prometheus-client picks one at import)."""
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    value_class = values.MultiProcessValue()
    monkeypatch.setattr(values, "ValueClass", value_class)
    yield tmp_path
    value_class.close_all_files()


def config() -> Config:
    return load_config_text(CONFIG, "test")


def ctx(
    model: str = "a",
    *,
    status: int = 200,
    identity: Identity | None = TEAM,
    provider: Provider | None = None,
    usage: Usage | None = None,
    total_s: float = 0.3,
    upstream_s: float = -1.0,
    ttft_s: float = -1.0,
    stream: bool = False,
    error: BaseException | None = None,
    routed: bool = True,
) -> RequestContext:
    c = RequestContext("r")
    c.started = perf_counter() - total_s
    c.model = model
    c.status = status
    c.identity = identity
    c.stream = stream
    if routed:
        c.provider = provider or Provider()
        c.upstream_model = {"a": "a", "b": "bb"}.get(model, model)
    c.usage = usage
    c.upstream_s = upstream_s
    c.ttft_s = ttft_s
    if error is not None:
        c.fail(error)
    return c


def read(directory: Path) -> CollectorRegistry:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_known_observations_give_exact_values(mpdir: Path) -> None:
    metrics = Metrics(config(), PRICES)
    for _ in range(3):  # answered, priced by the account phase
        metrics.observe(ctx(usage=Usage(10, 5), upstream_s=0.2), 25.0)
    metrics.observe(ctx(usage=Usage(4, 1), upstream_s=0.2))  # priced here: 4 * 1 + 1 * 2
    metrics.observe(ctx("b", usage=Usage(7, 3), stream=True, ttft_s=0.07, identity=None))  # unpriced, no team
    metrics.observe(ctx("nope", status=404, routed=False, error=GatewayError(ErrorKind.UNKNOWN_MODEL, "no")))
    metrics.observe(ctx(status=401, identity=None, routed=False, error=GatewayError(ErrorKind.UNAUTHORIZED, "x")))
    metrics.flush()
    reg = read(mpdir)
    assert value(reg, "ferrogate_requests_total", route=CHAT, model="a", team="team_1", status="200") == 4
    assert value(reg, "ferrogate_requests_total", route=CHAT, model="b", team="none", status="200") == 1
    assert value(reg, "ferrogate_requests_total", route=CHAT, model="other", team="team_1", status="404") == 1
    assert value(reg, "ferrogate_requests_total", route=CHAT, model="a", team="none", status="401") == 1
    assert value(reg, "ferrogate_tokens_total", model="a", team="team_1", type="input") == 34
    assert value(reg, "ferrogate_tokens_total", model="a", team="team_1", type="output") == 16
    assert value(reg, "ferrogate_tokens_total", model="b", team="none", type="input") == 7
    assert value(reg, "ferrogate_cost_usd_total", model="a", team="team_1") == pytest.approx(75.0 + 6.0)
    assert value(reg, "ferrogate_cost_usd_total", model="b", team="none") is None
    assert value(reg, "ferrogate_unpriced_requests_total", model="bb") == 1
    assert value(reg, "ferrogate_unpriced_models", model="bb") == 1
    assert value(reg, "ferrogate_unpriced_models", model="a") is None
    # latency: routed requests only; 0.3 s total, 0.2 s upstream, 0.1 s overhead; ttft of the stream 0.07 s
    assert value(reg, "ferrogate_request_duration_seconds_count", model="a") == 4
    assert value(reg, "ferrogate_request_duration_seconds_bucket", model="a", le="0.25") == 0
    assert value(reg, "ferrogate_request_duration_seconds_bucket", model="a", le="0.5") == 4
    assert value(reg, "ferrogate_request_duration_seconds_sum", model="a") == pytest.approx(1.2, abs=0.05)
    assert value(reg, "ferrogate_request_duration_seconds_count", model="other") is None
    assert value(reg, "ferrogate_upstream_duration_seconds_count", model="a") == 4
    assert value(reg, "ferrogate_upstream_duration_seconds_sum", model="a") == pytest.approx(0.8)
    assert value(reg, "ferrogate_upstream_duration_seconds_count", model="b") is None  # not measured
    assert value(reg, "ferrogate_gateway_overhead_seconds_bucket", model="a", le="0.05") == 0
    assert value(reg, "ferrogate_gateway_overhead_seconds_bucket", model="a", le="0.1") == 0
    assert value(reg, "ferrogate_gateway_overhead_seconds_bucket", model="a", le="0.25") == 4
    assert value(reg, "ferrogate_time_to_first_token_seconds_bucket", model="b", le="0.05") == 0
    assert value(reg, "ferrogate_time_to_first_token_seconds_bucket", model="b", le="0.1") == 1
    assert value(reg, "ferrogate_time_to_first_token_seconds_count", model="b") == 1
    assert value(reg, "ferrogate_time_to_first_token_seconds_count", model="a") is None  # not streams
    metrics.close()


def test_team_labels_are_capped(mpdir: Path) -> None:
    capped = load_config_text(CONFIG + "metrics: {max_teams: 2}\n", "test")
    metrics = Metrics(capped, PRICES)
    teams = [Identity(f"key_{n}", f"team_{n}", None, ("*",), None, None) for n in range(4)]
    for identity in [*teams, *teams, None]:  # the first two teams keep their ids, in every later request too
        metrics.observe(ctx(identity=identity, usage=Usage(1, 1)))
    metrics.flush()
    reg = read(mpdir)
    counts = {team: value(reg, "ferrogate_requests_total", route=CHAT, model="a", team=team, status="200")
              for team in ("team_0", "team_1", "team_2", "team_3", "other", "none")}  # fmt: skip
    assert counts == {"team_0": 2, "team_1": 2, "team_2": None, "team_3": None, "other": 4, "none": 1}
    assert value(reg, "ferrogate_tokens_total", model="a", team="other", type="input") == 4
    metrics.close()


def test_flushes_add_only_what_is_new(mpdir: Path) -> None:
    metrics = Metrics(config(), PRICES)
    metrics.observe(ctx(usage=Usage(1, 1)), 1.0)
    metrics.flush()
    metrics.flush()  # nothing new: nothing added
    metrics.observe(ctx(usage=Usage(2, 3)), 2.0)
    metrics.observe(ctx(total_s=400.0))  # beyond the last bucket: +Inf
    metrics.flush()
    reg = read(mpdir)
    assert value(reg, "ferrogate_requests_total", route=CHAT, model="a", team="team_1", status="200") == 3
    assert value(reg, "ferrogate_tokens_total", model="a", team="team_1", type="output") == 4
    assert value(reg, "ferrogate_cost_usd_total", model="a", team="team_1") == 3.0
    assert value(reg, "ferrogate_request_duration_seconds_count", model="a") == 3
    assert value(reg, "ferrogate_request_duration_seconds_bucket", model="a", le=str(LATENCY_BUCKETS[-1])) == 2
    assert value(reg, "ferrogate_request_duration_seconds_bucket", model="a", le="+Inf") == 3
    metrics.close()


@pytest.mark.parametrize(
    ("error", "status", "family", "labels"),
    [
        (
            refusal("key_rpm", 2, 1.0, 3.0, None),
            429,
            "ferrogate_rate_limit_refusals_total",
            {"code": "key_rpm_exceeded"},
        ),
        (
            refusal("deployment_tpm", 10, 50.0, 3.0, "group x"),
            429,
            "ferrogate_rate_limit_refusals_total",
            {"code": "deployment_tpm_exceeded"},
        ),
        (
            GatewayError(ErrorKind.RATE_LIMITED_REQUESTS, "m", code="free text here"),
            429,
            "ferrogate_rate_limit_refusals_total",
            {"code": "other"},
        ),
        (
            BudgetExhausted("user", "The user budget of $1.00 (daily) cannot cover this request"),
            429,
            "ferrogate_budget_refusals_total",
            {"scope": "user"},
        ),
        (
            GatewayError(ErrorKind.INSUFFICIENT_QUOTA, "a refusal that names no budget"),
            429,
            "ferrogate_budget_refusals_total",
            {"scope": "unknown"},
        ),
        (
            GatewayError(ErrorKind.UPSTREAM_TIMEOUT, "upstream 'up' timed out"),
            504,
            "ferrogate_upstream_errors_total",
            {"upstream": "up", "reason": "upstream_timeout"},
        ),
        (
            GatewayError(ErrorKind.UPSTREAM_UNREACHABLE, "down"),
            502,
            "ferrogate_upstream_errors_total",
            {"upstream": "up", "reason": "upstream_unreachable"},
        ),
        (
            _core.SseError("bad frame"),
            200,
            "ferrogate_upstream_errors_total",
            {"upstream": "up", "reason": "upstream_bad_response"},
        ),
    ],
)
def test_refusals_and_faults(
    mpdir: Path, error: BaseException, status: int, family: str, labels: dict[str, str]
) -> None:
    metrics = Metrics(config(), PRICES)
    metrics.observe(ctx(status=status, error=error))
    metrics.observe(ctx(status=status, error=error))
    metrics.flush()
    reg = read(mpdir)
    assert value(reg, family, **labels) == 2
    assert value(reg, "ferrogate_requests_total", route=CHAT, model="a", team="team_1", status=str(status)) == 2
    refused = isinstance(error, GatewayError) and status == 429
    expected_latency = None if refused else 2  # a refusal is not timed, an upstream fault is
    assert value(reg, "ferrogate_request_duration_seconds_count", model="a") == expected_latency
    metrics.close()


@pytest.mark.parametrize(("status", "reason"), [(429, "status_429"), (400, "status_4xx"), (503, "status_5xx")])
def test_upstream_error_answers_passed_through(mpdir: Path, status: int, reason: str) -> None:
    metrics = Metrics(config(), PRICES)
    metrics.observe(ctx(status=status))
    metrics.observe(ctx(status=status, provider=Provider("not-configured")))
    metrics.observe(ctx(status=200))
    metrics.flush()
    reg = read(mpdir)
    assert value(reg, "ferrogate_upstream_errors_total", upstream="up", reason=reason) == 1
    assert value(reg, "ferrogate_upstream_errors_total", upstream="other", reason=reason) == 1
    assert value(reg, "ferrogate_rate_limit_refusals_total", code="key_rpm_exceeded") is None
    metrics.close()


def test_recorder_stats_are_collected_at_flush(mpdir: Path) -> None:
    stats = SimpleNamespace(stored=5, spooled=2, replayed=1, rejected=0, store_failures=1)
    recorder: Any = SimpleNamespace(stats=stats, spool_bytes=300, pending=4)
    metrics = Metrics(config(), PRICES, recorder)  # flushes once at start
    stats.stored, stats.store_failures = 9, 3
    recorder.spool_bytes, recorder.pending = 0, 1
    metrics.flush()
    reg = read(mpdir)
    assert value(reg, "ferrogate_usage_records_total", outcome="stored") == 9
    assert value(reg, "ferrogate_usage_records_total", outcome="spooled") == 2
    assert value(reg, "ferrogate_usage_records_total", outcome="replayed") == 1
    assert value(reg, "ferrogate_usage_records_total", outcome="rejected") is None
    assert value(reg, "ferrogate_usage_store_failures_total") == 3
    assert value(reg, "ferrogate_usage_spool_bytes") == 0
    assert value(reg, "ferrogate_usage_pending_records") == 1
    metrics.close()


def test_audit_writer_stats_are_collected_apart_from_the_recorder(mpdir: Path) -> None:
    usage = SimpleNamespace(stored=5, spooled=0, replayed=0, rejected=0, store_failures=0)
    audit_stats = SimpleNamespace(stored=7, spooled=3, replayed=0, rejected=1, store_failures=2)
    recorder: Any = SimpleNamespace(stats=usage, spool_bytes=0, pending=0)
    audit: Any = SimpleNamespace(stats=audit_stats, spool_bytes=120, pending=6)
    metrics = Metrics(config(), PRICES, recorder, audit)
    audit_stats.stored, audit_stats.replayed = 12, 3
    metrics.flush()
    reg = read(mpdir)
    outcomes = {"stored": 12, "spooled": 3, "replayed": 3, "rejected": 1}
    assert {o: value(reg, "ferrogate_audit_events_total", outcome=o) for o in outcomes} == outcomes
    gauges = ("ferrogate_audit_store_failures_total", "ferrogate_audit_spool_bytes", "ferrogate_audit_pending_events")
    assert [value(reg, name) for name in gauges] == [2, 120, 6]
    assert value(reg, "ferrogate_usage_records_total", outcome="stored") == 5  # each writer counted once
    metrics.close()


def test_workers_add_up_and_a_stopped_worker_drops_its_live_gauges(
    mpdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder: Any = SimpleNamespace(
        stats=SimpleNamespace(stored=0, spooled=0, replayed=0, rejected=0, store_failures=0)
    )
    recorder.spool_bytes, recorder.pending = 100, 0
    other = values.MultiProcessValue(process_identifier=lambda: 1)  # a second "worker": pid 1
    mine = values.ValueClass
    first = Metrics(config(), PRICES, recorder)
    monkeypatch.setattr(values, "ValueClass", other)
    second = Metrics(config(), PRICES, recorder)
    second.observe(ctx(usage=Usage(1, 2)), 1.0)
    second.flush()
    monkeypatch.setattr(values, "ValueClass", mine)
    first.observe(ctx(usage=Usage(3, 4)), 1.0)
    first.flush()
    reg = read(mpdir)
    assert value(reg, "ferrogate_requests_total", route=CHAT, model="a", team="team_1", status="200") == 2
    assert value(reg, "ferrogate_tokens_total", model="a", team="team_1", type="output") == 6
    assert value(reg, "ferrogate_usage_spool_bytes") == 200  # livesum over both
    first.close()  # mark_process_dead(this pid): its live gauges go, its counters stay
    assert not (mpdir / f"gauge_livesum_{os.getpid()}.db").exists()
    reg = read(mpdir)
    assert value(reg, "ferrogate_usage_spool_bytes") == 100
    assert value(reg, "ferrogate_requests_total", route=CHAT, model="a", team="team_1", status="200") == 2
    other.close_all_files()


def test_render_merges_the_directory_in_the_asked_format(mpdir: Path) -> None:
    metrics = Metrics(config(), PRICES)
    metrics.observe(ctx(usage=Usage(1, 1)), 0.5)  # render flushes first

    async def scrape(accept: str | None) -> tuple[bytes, str]:
        return await metrics.render(accept)

    body, content_type = asyncio.run(scrape(None))
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert [s.value for s in families["ferrogate_requests"].samples] == [1.0]
    assert families["ferrogate_request_duration_seconds"].type == "histogram"
    body, content_type = asyncio.run(scrape("application/openmetrics-text; version=1.0.0"))
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    metrics.close()


def test_without_a_directory_metrics_are_this_process_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    monkeypatch.setattr(values, "ValueClass", values.MutexValue)
    metrics = Metrics(config(), PRICES)
    assert metrics.directory is None
    metrics.observe(ctx(usage=Usage(2, 1)), 0.25)
    body, _ = asyncio.run(metrics.render())
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    samples = {(s.name, s.labels.get("type")): s.value for s in families["ferrogate_tokens"].samples}
    assert samples[("ferrogate_tokens_total", "input")] == 2
    assert samples[("ferrogate_tokens_total", "output")] == 1
    metrics.close()


def test_instance_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    assert instance_directory("8080") is None  # the user's own directory is left alone
    assert os.environ[MULTIPROC_ENV] == str(tmp_path)
    monkeypatch.delenv(MULTIPROC_ENV)
    made = instance_directory("8080")
    assert made is not None
    try:
        assert os.environ[MULTIPROC_ENV] == made
        path = Path(made)
        assert path.is_dir() and not any(path.iterdir())
        assert path.name.startswith(f"ferrogate-metrics-8080-{os.getpid()}-")
        assert path.stat().st_mode & 0o777 == 0o700
        assert instance_directory("8080") is None  # now set
    finally:
        os.rmdir(made)


def test_families_are_declared_once_with_bounded_labels() -> None:
    names = [f.name for f in FAMILIES]
    assert len(names) == len(set(names))
    assert all(n.startswith("ferrogate_") for n in names)
    forbidden = {"key", "key_id", "request_id", "user", "user_id", "message"}
    assert all(not forbidden & set(f.labels) for f in FAMILIES)
    assert REQUESTS.labels == ("route", "model", "team", "status")
    with pytest.raises(ValueError, match="declared twice"):
        counter(REQUESTS.name, "again")
    assert counter("ferrogate_not_declared_total", "x", declare=False) not in FAMILIES
