"""The routing part of the configuration: strategies, retries, circuit breakers, routing rules (docs/routing.md).

``routing`` holds the defaults; a model group may set its own ``strategy``, ``retries`` and ``circuit``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: How a model group orders its deployments for a request (the first that is healthy and has room serves; the
#: others are the retry order):
#: ``priority``: by each deployment's ``priority`` (lower first), then configuration order;
#: ``weighted``: random, in proportion to ``weight``;
#: ``least_in_flight``: fewest requests in flight on the deployment (every worker of the instance counted);
#: ``latency``: lowest EWMA of recent latency (time to first token for streams, total for whole answers);
#: ``cost``: lowest price per token (the price table, or the deployment's ``price``);
#: ``capacity``: most remaining requests/tokens per minute (``rpm``/``tpm``; a deployment without counts last).
Strategy = Literal["priority", "weighted", "least_in_flight", "latency", "cost", "capacity"]
#: What the gateway does when a model group's ``response_format`` JSON schema does not match the answer.
SchemaCheck = Literal["off", "report", "retry", "error"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrySettings(_Strict):
    """Retries of one request across attempts (the same deployment again, or the next one in order).

    An attempt is retried on 429, 5xx (but 501), a refused or broken connection and a timeout; never on
    another 4xx. The wait before attempt ``n`` is a random duration in ``[0, min(backoff_max_ms, backoff_ms *
    2**n)]`` (full jitter), or the upstream's ``retry-after-ms`` / ``retry-after`` when it is longer and still
    fits the deadline; a retry that cannot start before ``deadline_s`` is not made.
    """

    attempts: int = Field(3, ge=1, le=20, description="attempts per request in all (1: no retries)")
    backoff_ms: float = Field(25.0, ge=0, le=60_000, description="the first retry waits at most this")
    backoff_max_ms: float = Field(2_000.0, ge=0, le=600_000, description="no wait is longer than this")
    deadline_s: float = Field(120.0, gt=0, le=3_600, description="no attempt starts after this since arrival")
    budget_pct: float = Field(
        20.0, ge=0, le=100, description="retries sent to a deployment at most this share of its requests"
    )
    budget_min: int = Field(10, ge=0, le=100_000, description="retries always allowed per window, whatever the share")
    budget_window_s: float = Field(10.0, gt=0, le=3_600, description="the window the retry budget is counted over")


class CircuitSettings(_Strict):
    """A deployment's circuit breaker (state shared by every worker of an instance and, with Redis, by every
    instance).

    Closed: requests flow; failures are counted over a sliding ``window_s``. It opens when ``consecutive``
    attempts in a row failed, or when at least ``min_requests`` were made in the window and at least
    ``error_rate`` of them failed. Open: no request is sent for the cool-down: ``cooldown_s``, doubled on every
    trip in a row up to ``cooldown_max_s``; a provider's ``Retry-After`` on the tripping answer sets it
    instead when shorter (or longer, up to ``cooldown_max_s``). Then half-open: at most ``probes`` requests are
    let through at once; one success closes it, one failure opens it again (the next cool-down).
    """

    enabled: bool = True
    window_s: float = Field(30.0, gt=0, le=3_600, description="the sliding window failures are counted over")
    min_requests: int = Field(10, ge=1, le=1_000_000, description="the error rate counts from this many attempts")
    error_rate: float = Field(0.5, gt=0, le=1, description="open at this share of failed attempts in the window")
    consecutive: int = Field(5, ge=1, le=1_000_000, description="open after this many failed attempts in a row")
    cooldown_s: float = Field(5.0, gt=0, le=3_600, description="the first cool-down")
    cooldown_max_s: float = Field(300.0, gt=0, le=86_400, description="cool-downs double up to this")
    probes: int = Field(1, ge=1, le=1_000, description="requests let through at once while half-open")

    @model_validator(mode="after")
    def _cooldowns(self) -> CircuitSettings:
        if self.cooldown_max_s < self.cooldown_s:
            raise ValueError("cooldown_max_s must be at least cooldown_s")
        return self


class RoutingSettings(_Strict):
    """Defaults of every model group, and the routing rules (Cedar policies, docs/routing.md)."""

    strategy: Strategy = "priority"
    retries: RetrySettings = Field(default_factory=RetrySettings)
    circuit: CircuitSettings = Field(default_factory=CircuitSettings)
    latency_alpha: float = Field(
        0.2, gt=0, le=1, description="the weight of the newest sample in the latency EWMAs (time to first token, total)"
    )
    rules_file: str | None = Field(
        None, description="a Cedar policy file of routing rules; a relative path is relative to the working directory"
    )
    rules: str = Field("", description="routing rules (Cedar policies) written in the configuration itself")
    sla_header: str = Field(
        "x-ferrogate-latency-sla-ms", min_length=1, description="the request header a latency SLA comes in (ms)"
    )
    watch: bool = Field(True, description="reload the configuration file when it changes (docs/routing.md)")
