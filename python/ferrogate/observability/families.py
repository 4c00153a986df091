"""Every Prometheus family ferrogate exports, each declared once, here.

A declaration is a :class:`Family`: name, help text, label names, and the histogram buckets or the gauge's
multiprocess mode. :class:`~ferrogate.observability.metrics.Metrics` builds one prometheus-client object and
one in-process aggregate per declared family, and its flush moves the aggregates into the objects, so adding
a family is one declaration below plus one call where its event happens (:meth:`Metrics.add` or
:meth:`Metrics.observe_value`). Declare none for a feature that does not exist yet.

Label values are bounded: model groups and upstreams come from the configuration (anything else becomes
:data:`OTHER`), teams are bounded by the number of teams, codes and reasons by the error table. No key ids,
request ids or free text.

Example:
    >>> REQUESTS.labels
    ('route', 'model', 'team', 'status')
    >>> counter("ferrogate_example_total", "An example.", "kind", declare=False).kind
    'counter'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "histogram", "gauge"]
#: How prometheus-client merges one gauge across worker processes (``live*``: dead workers' values dropped).
GaugeMode = Literal["livesum", "livemax", "livemin", "liveall", "sum", "max", "min", "all", "mostrecent"]

#: The label value for anything outside its bounded set (a model no group serves, an unknown upstream...).
OTHER = "other"
#: The label value when there is nothing to name (no team, no key).
NONE = "none"

#: Whole requests and upstream calls: 5 ms .. 5 min (streams of long answers last minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: The gateway's own time: 50 µs .. 1 s.
OVERHEAD_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
#: Time to first token: 25 ms .. 1 min.
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: what prometheus-client is told once, at start.

    ``buckets`` are the finite upper bounds of a histogram (``+Inf`` is added); ``mode`` is a gauge's
    multiprocess mode.
    """

    name: str
    help: str
    labels: tuple[str, ...]
    kind: Kind
    buckets: tuple[float, ...] = ()
    mode: GaugeMode = "livesum"


#: Every declared family, in declaration order (what :class:`Metrics` builds).
FAMILIES: list[Family] = []


def _declare(family: Family, declare: bool) -> Family:
    if declare:
        if any(f.name == family.name for f in FAMILIES):
            raise ValueError(f"metric family {family.name!r} is declared twice")
        FAMILIES.append(family)
    return family


def counter(name: str, help: str, *labels: str, declare: bool = True) -> Family:
    """Declare a counter (``name`` ends in ``_total``).

    Example:
        >>> counter("ferrogate_demo_total", "Demo events.", "kind", declare=False).labels
        ('kind',)
    """
    return _declare(Family(name, help, labels, "counter"), declare)


def histogram(
    name: str, help: str, labels: tuple[str, ...], buckets: tuple[float, ...], *, declare: bool = True
) -> Family:
    """Declare a histogram with the finite upper ``buckets`` (in seconds for durations).

    Example:
        >>> histogram("ferrogate_demo_seconds", "Demo.", (), (0.1, 1.0), declare=False).buckets
        (0.1, 1.0)
    """
    return _declare(Family(name, help, labels, "histogram", buckets), declare)


def gauge(
    name: str, help: str, labels: tuple[str, ...] = (), mode: GaugeMode = "livesum", *, declare: bool = True
) -> Family:
    """Declare a gauge; ``mode`` says how the workers' values combine (default: the sum over live workers).

    Example:
        >>> gauge("ferrogate_demo", "Demo.", declare=False).mode
        'livesum'
    """
    return _declare(Family(name, help, labels, "gauge", mode=mode), declare)


# ---- requests ------------------------------------------------------------------------------------------------
REQUESTS = counter(
    "ferrogate_requests_total",
    "Data-plane requests answered, by route, model group (other: not configured), team (none: no team) and "
    "HTTP status.",
    "route",
    "model",
    "team",
    "status",
)
REQUEST_SECONDS = histogram(
    "ferrogate_request_duration_seconds",
    "Time from the request's arrival to the end of its answer (streams: the last byte), for requests that were "
    "routed to an upstream, by model group.",
    ("model",),
    LATENCY_BUCKETS,
)
UPSTREAM_SECONDS = histogram(
    "ferrogate_upstream_duration_seconds",
    "Time spent on the upstream call (streams: until the upstream's last byte), by model group.",
    ("model",),
    LATENCY_BUCKETS,
)
OVERHEAD_SECONDS = histogram(
    "ferrogate_gateway_overhead_seconds",
    "The gateway's own time: total request time minus upstream time, by model group.",
    ("model",),
    OVERHEAD_BUCKETS,
)
TTFT_SECONDS = histogram(
    "ferrogate_time_to_first_token_seconds",
    "Streams: time from the request's arrival to its first chunk sent to the client, by model group.",
    ("model",),
    TTFT_BUCKETS,
)

# ---- usage and cost ------------------------------------------------------------------------------------------
TOKENS = counter(
    "ferrogate_tokens_total",
    "Tokens of answered requests, by model group, team and type (input: prompt, output: completion).",
    "model",
    "team",
    "type",
)
COST = counter(
    "ferrogate_cost_usd_total",
    "Cost of answered requests in USD at the price table's rates, by model group and team (unpriced models "
    "add nothing: see ferrogate_unpriced_requests_total).",
    "model",
    "team",
)
UNPRICED_REQUESTS = counter(
    "ferrogate_unpriced_requests_total",
    "Answered requests whose model has no price (their cost is unknown), by the model name the price table "
    "was asked for (the deployment's upstream model).",
    "model",
)
UNPRICED_MODELS = gauge(
    "ferrogate_unpriced_models",
    "1 for each configured (upstream) model the price table does not know, set at start.",
    ("model",),
    "livemax",
)

# ---- refusals and faults -------------------------------------------------------------------------------------
RATE_LIMIT_REFUSALS = counter(
    "ferrogate_rate_limit_refusals_total",
    "Requests refused by a rate limit (429), by the refusal's code (key_rpm_exceeded, team_tpm_exceeded, "
    "deployment_rpm_exceeded...).",
    "code",
)
BUDGET_REFUSALS = counter(
    "ferrogate_budget_refusals_total",
    "Requests refused with insufficient_quota (429) because a budget cannot cover them, by the budget's scope "
    "(key, user, team; unknown when it cannot be told).",
    "scope",
)
UPSTREAM_ERRORS = counter(
    "ferrogate_upstream_errors_total",
    "Upstream faults, by upstream and reason: upstream_unreachable, upstream_timeout, upstream_bad_response "
    "(also a stream broken midway), or the status class of an error answer passed through (status_429, "
    "status_4xx, status_5xx).",
    "upstream",
    "reason",
)

UPSTREAM_ATTEMPTS = counter(
    "ferrogate_upstream_attempts_total",
    "Attempts sent to each deployment (a request retried or failed over makes several), by upstream, upstream "
    "model and outcome: ok, error, rate_limited, timeout, unreachable.",
    "upstream",
    "model",
    "outcome",
)

# ---- circuit breakers (routing/health.py; the model label is the deployment's upstream model) --------------
CIRCUIT_STATE = gauge(
    "ferrogate_circuit_state",
    "Each configured deployment's circuit breaker, by upstream and upstream model: 0 closed, 1 open, 2 half-open "
    "(read from the instance's shared table at each flush; every worker reports the same value).",
    ("upstream", "model"),
    "livemax",
)
CIRCUIT_TRIPS = counter(
    "ferrogate_circuit_trips_total",
    "Circuit breakers tripped open by this instance's attempts (not trips applied from other instances through "
    "Redis), by upstream and upstream model.",
    "upstream",
    "model",
)

# ---- guardrails ------------------------------------------------------------------------------------------------
GUARDRAIL_FINDINGS = counter(
    "ferrogate_guardrail_findings_total",
    "Guardrail findings in requests (and in answers, when they are scanned), by rule id, category (secret, pii, "
    "injection, custom) and action (log, redact, block).",
    "rule",
    "category",
    "action",
)

# ---- structured outputs (routing/schema.py; counted by the respond phase) -----------------------------------
SCHEMA_CHECKS = counter(
    "ferrogate_schema_checks_total",
    "Whole answers checked against the request's JSON schema (chat response_format json_schema, Responses "
    "text.format, Anthropic output_config.format), by model group and result: valid; invalid (sent to the client "
    "marked x-ferrogate-schema: invalid); retried (invalid and asked again; the new answer is counted too); "
    "refused (invalid, answered with an error); unchecked (no text to check, or over the check's work budget).",
    "group",
    "result",
)

# ---- the usage recorder (collected at each flush) ------------------------------------------------------------
USAGE_RECORDS = counter(
    "ferrogate_usage_records_total",
    "Usage records by outcome: stored (new rows), spooled (to the local file while the store is down), "
    "replayed (from a spool into the store; also counted as stored), rejected (invalid).",
    "outcome",
)
USAGE_STORE_FAILURES = counter(
    "ferrogate_usage_store_failures_total",
    "Failed usage writes to the store (each sends its batch to the spool file).",
)
USAGE_SPOOL_BYTES = gauge(
    "ferrogate_usage_spool_bytes",
    "Bytes of usage records waiting in the workers' spool files for the store.",
)
USAGE_PENDING = gauge(
    "ferrogate_usage_pending_records",
    "Usage records waiting in the workers' memory for the next batch write.",
)

# ---- the audit writer (collected at each flush) -------------------------------------------------------------
AUDIT_EVENTS = counter(
    "ferrogate_audit_events_total",
    "Audit events by outcome: stored (new records of the chain), spooled (to the local file while the store is "
    "down), replayed (from a spool into the store; also counted as stored), rejected (invalid).",
    "outcome",
)
AUDIT_STORE_FAILURES = counter(
    "ferrogate_audit_store_failures_total",
    "Failed audit writes to the store (each sends its batch to the spool file).",
)
AUDIT_SPOOL_BYTES = gauge(
    "ferrogate_audit_spool_bytes",
    "Bytes of audit events waiting in the workers' spool files for the store.",
)
AUDIT_PENDING = gauge(
    "ferrogate_audit_pending_events",
    "Audit events waiting in the workers' memory for the next batch write.",
)

# ---- the store (set by each worker's probe, once a second) ---------------------------------------------------
STORE_UP = gauge(
    "ferrogate_store_up",
    "1 when the store answered this worker's last probe (SELECT 1 within FERROGATE_STORE_TIMEOUT_S), 0 while it "
    "cannot be reached (the data plane then answers from cached keys); one series per worker (pid).",
    mode="liveall",
)

# ---- the MCP tool gateway (mcp/calls.py, mcp/catalog.py) ---------------------------------------------------
# server: a configured or stored MCP server's id; tool: the upstream's tool name as the catalog lists it (bounded
# by the catalog: at most 10,000 tools per server; a name the catalog does not know is never a label)
MCP_TOOL_CALLS = counter(
    "ferrogate_mcp_tool_calls_total",
    "MCP tool calls through the gateway (REST and /mcp), by server, tool and outcome: ok, tool_error (an isError "
    "result from the tool), or the refusal's or fault's error code (tool_not_allowed, invalid_value, "
    "rate_limit_exceeded, content_policy_violation, mcp_server_unavailable, mcp_timeout, internal_error).",
    "server",
    "tool",
    "outcome",
)
MCP_TOOL_CALL_SECONDS = histogram(
    "ferrogate_mcp_tool_call_seconds",
    "Time of MCP tool calls through the gateway, from the call's authorization to its accounting (the upstream's "
    "time included), by server and tool.",
    ("server", "tool"),
    LATENCY_BUCKETS,
)
MCP_TOOL_CHANGES = counter(
    "ferrogate_mcp_tool_changes_total",
    "MCP tools whose definition (name, description, schemas) no longer matches the approved pin, counted once per "
    "new definition seen, by server and tool.",
    "server",
    "tool",
)
