"""The configuration schema: one YAML file, validated with pydantic at start.

Every model forbids unknown fields, so a typo in the file is an error that names its YAML
path instead of a setting silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ferrogate.config.mcp import McpSettings
from ferrogate.config.prices import Price
from ferrogate.config.routing import CircuitSettings, RetrySettings, RoutingSettings, SchemaCheck, Strategy

Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")]

#: What a guardrail rule does with a finding: nothing, count it (audit record and metric), replace it with
#: ``[REDACTED:<rule id>]`` before the request leaves, or refuse the request (400 content_policy_violation).
Action = Literal["off", "log", "redact", "block"]
#: A rule's category: actions are set per category or per rule id.
RuleCategory = Literal["secret", "pii", "injection", "custom"]
#: A request's classification and a deployment's clearance, from the least to the most sensitive.
Classification = Literal["public", "internal", "confidential", "restricted"]
#: :data:`Classification` values in order: a deployment serves a request whose classification is at most its
#: clearance (``CLASSIFICATIONS.index``).
CLASSIFICATIONS: tuple[Classification, ...] = ("public", "internal", "confidential", "restricted")
#: A guardrail rule's id: it names the rule in refusals, redactions (``[REDACTED:<id>]``), metrics and audit.
RuleId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
#: The actions of the categories when nothing sets them: secrets redacted, PII untouched, prompt-injection
#: phrases logged, user rules blocking.
DEFAULT_ACTIONS: dict[str, Action] = {"secret": "redact", "pii": "off", "injection": "log", "custom": "block"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Strict):
    """Upstream timeouts, in seconds.

    ``connect_s`` bounds opening a connection, ``read_s`` the wait for any next byte (so a
    stalled stream is cut), ``total_s`` the whole exchange including a long stream.
    """

    connect_s: float = Field(5.0, gt=0)
    read_s: float = Field(120.0, gt=0)
    total_s: float = Field(600.0, gt=0)


class MockSettings(_Strict):
    """How the built-in ``mock`` provider answers: deterministic text, real token counts."""

    chunks: int = Field(8, ge=1, le=10_000, description="content chunks in a streamed answer")
    chunk_delay_ms: float = Field(0.0, ge=0, le=60_000, description="pause before each streamed chunk")
    words: int = Field(24, ge=1, le=100_000, description="words in an answer (max_tokens may cut it)")


class Upstream(_Strict):
    """One upstream endpoint: a provider, where it is, and how to talk to it."""

    name: Name
    provider: Literal["openai", "anthropic", "mock"]
    base_url: str | None = Field(
        None,
        description="e.g. https://api.openai.com/v1 (required for openai; anthropic: https://api.anthropic.com/v1)",
    )
    api_key: SecretStr | None = None
    responses: bool = Field(
        False,
        description="openai: the upstream serves POST /responses itself (else Responses requests go as chat)",
    )
    anthropic_version: str = Field("2023-06-01", min_length=1, description="anthropic: the anthropic-version header")
    headers: dict[str, str] = Field(default_factory=dict, description="extra headers sent upstream")
    timeouts: Timeouts = Field(default_factory=Timeouts)
    max_connections: int = Field(1000, ge=1, le=100_000, description="pooled keep-alive connections")
    mock: MockSettings = Field(default_factory=MockSettings)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _needs_base_url(self) -> Upstream:
        if self.provider == "openai" and not self.base_url:
            raise ValueError("base_url is required for provider 'openai'")
        return self


class Deployment(_Strict):
    """One place a model group is served: an upstream, the model name it knows it by, and optionally the
    requests/tokens per minute it may take from all callers together (e.g. the upstream's own quota)."""

    upstream: Name
    model: str | None = Field(None, min_length=1, description="the upstream's model name; default: the group's")
    price: Price | None = Field(None, description="overrides the price table for this deployment's model")
    rpm: int | None = Field(None, gt=0, description="requests per minute sent to this deployment, all keys together")
    tpm: int | None = Field(
        None, gt=0, description="tokens per minute (prompt + max output, settled to usage) for this deployment"
    )
    clearance: Classification = Field(
        "restricted",
        description="the most sensitive request classification this deployment may serve (default: every one)",
    )
    weight: float = Field(1.0, gt=0, le=1_000_000, description="strategy weighted: its share of the requests")
    priority: int = Field(0, ge=-1_000_000, le=1_000_000, description="strategy priority: lower serves first")
    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, description="labels routing rules can test (e.g. self-hosted)"
    )


class ModelGroup(_Strict):
    """A model name clients ask for (or one of its ``aliases``), the deployments that serve it and, when they all
    fail, the groups tried next (docs/routing.md)."""

    name: Name
    aliases: list[Name] = Field(default_factory=list, description="other names clients may ask for this group by")
    deployments: list[Deployment] = Field(min_length=1)
    owned_by: str = "ferrogate"
    strategy: Strategy | None = Field(None, description="how deployments are ordered (None: routing.strategy)")
    retries: RetrySettings | None = Field(None, description="None: routing.retries")
    circuit: CircuitSettings | None = Field(None, description="its deployments' circuit breakers (None: routing's)")
    fallbacks: list[Name] = Field(default_factory=list, description="groups tried in order when all deployments fail")
    context_window_fallbacks: list[Name] = Field(
        default_factory=list, description="groups tried when a deployment says the request exceeds its context window"
    )
    content_policy_fallbacks: list[Name] = Field(
        default_factory=list, description="groups tried when a deployment refuses the request on its content policy"
    )
    schema_check: SchemaCheck = Field(
        "off", description="a response_format JSON schema checked against the answer: off, report, retry or error"
    )


class ServerSettings(_Strict):
    """Limits of the HTTP server itself."""

    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    grace_period_s: float = Field(30.0, ge=0, le=3600, description="in-flight requests may finish for this long")
    prices_file: str | None = Field(
        None,
        description="prices added to (or replacing, by model name) the table packaged with ferrogate; "
        "None: the packaged table alone; a relative path is relative to the working directory",
    )
    spool_dir: str = Field(
        ".ferrogate/spool",
        description="the journal: every usage record and audit event is written here before its request is"
        " answered, and waits here while the store is down (docs/journal.md)",
    )
    journal: bool = Field(
        True,
        description="off: records reach the journal only while the store is down (a killed process loses"
        " what it held in memory; for measuring the journal's cost)",
    )
    journal_fsync_ms: float = Field(
        50.0,
        gt=0,
        le=10_000,
        description="the journal is fsync'd this often, off the event loop (a power loss"
        " takes at most this much; a killed process loses nothing)",
    )
    default_max_tokens: int = Field(
        4096, ge=1, description="output tokens a request without max_tokens reserves against tokens-per-minute"
    )
    respawn_backoff_s: float = Field(
        1.0, ge=0, le=600, description="a worker that died within 60 s of its start waits this before its respawn"
    )
    respawn_backoff_max_s: float = Field(
        30.0, ge=0, le=3600, description="the wait doubles with each such death in a row, up to this"
    )


class RequestBounds(_Strict):
    """Ceilings on the numbers and counts a chat request may carry: the receive phase refuses (400) any
    request above them, so no client number sizes the gateway's work beyond what is configured here."""

    max_output_tokens: int = Field(
        131_072, ge=1, le=10_000_000, description="max_tokens / max_completion_tokens at most this"
    )
    max_n: int = Field(128, ge=1, le=128, description="choices per request (n) at most this (OpenAI's 128)")
    max_messages: int = Field(2048, ge=1, le=1_000_000, description="messages per request at most this")
    max_tools: int = Field(128, ge=1, le=10_000, description="tools (or functions) per request (OpenAI's 128)")
    max_stop: int = Field(4, ge=1, le=64, description="stop sequences per request (OpenAI's 4)")
    max_logit_bias: int = Field(300, ge=1, le=100_000, description="logit_bias entries (OpenAI's 300)")


class MeteringSettings(_Strict):
    """Usage metering: one record per request, written in batches off the hot path."""

    enabled: bool = Field(True, description="off: no usage records (and budgets see no spend)")
    batch_size: int = Field(500, ge=1, le=10_000, description="records per store transaction")
    interval_s: float = Field(0.5, gt=0, le=60, description="the longest a record waits in memory")


class BudgetSettings(_Strict):
    """How budgets (set per key, user and team through the admin API) are enforced and reported."""

    soft_limit_pct: float = Field(80.0, gt=0, le=100, description="notify when a budget's spend reaches this")
    webhook_url: str | None = Field(None, description="POSTed JSON events: budget.soft_limit, budget.exhausted")
    webhook_secret: SecretStr | None = Field(None, description="signs events: x-ferrogate-signature: sha256=...")
    reservation_ttl_s: float = Field(
        900.0, ge=1, le=86_400, description="a reservation whose request never reported is dropped after this"
    )
    on_store_error: Literal["refuse", "allow"] = Field(
        "refuse", description="when the store cannot be reached: 503 (refuse) or admit unchecked (allow)"
    )
    unpriced: Literal["refuse", "allow"] = Field(
        "refuse",
        description="a budgeted request for a model with no price: 403 model_not_priced (refuse) or admit it "
        "with an unknown cost (allow)",
    )

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if not value:  # "" (e.g. an unset ${VAR:-}) means no webhook
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class AuditSettings(_Strict):
    """The hash-chained audit trail (docs/audit.md). Admin changes are always audited."""

    requests: bool = Field(True, description="one audit record per data-plane request (ids, status, tokens, cost)")
    batch_size: int = Field(2000, ge=1, le=10_000, description="records per store transaction")
    interval_s: float = Field(0.5, gt=0, le=60, description="the longest a record waits in memory")


class MetricsSettings(_Strict):
    """Prometheus metrics on ``GET /metrics`` (docs/metrics.md)."""

    enabled: bool = Field(True, description="off: requests are not counted (/metrics still answers)")
    max_teams: int = Field(
        500, ge=1, le=100_000, description="team label values per worker; teams seen after these count as 'other'"
    )


class LoggingSettings(_Strict):
    """Logs on standard error; the level is ``--log-level`` / ``FERROGATE_LOG_LEVEL``."""

    format: Literal["json", "text"] = Field("json", description="the process log: JSON lines or text")
    requests: bool = Field(True, description="one JSON line per data-plane request (at info level)")


class UserRule(_Strict):
    """A guardrail rule of the configuration: a regex (Rust ``regex`` syntax), with the checks that make a match a
    finding. ``action`` (default: the category's) is the rule's own; ``guardrails.actions`` may set it again by
    id."""

    id: RuleId
    regex: str = Field(min_length=1)
    category: RuleCategory = "custom"
    action: Action | None = Field(None, description="the rule's action (None: its category's)")
    description: str = ""
    keywords: list[str] = Field(
        default_factory=list, description="case-insensitive literals every match contains (a fast prefilter)"
    )
    entropy: float | None = Field(None, ge=0, le=8, description="minimum Shannon entropy (bits per char) of the secret")
    secret_group: int = Field(0, ge=0, le=99, description="the capture group that is the secret (0: the whole match)")
    allowlist: list[str] = Field(default_factory=list, description="regexes: a secret matching one is not a finding")
    stopwords: list[str] = Field(default_factory=list, description="a secret containing one is not a finding")


class DenyPattern(_Strict):
    """A phrase or pattern requests must not carry (category ``injection``), refused by default."""

    id: RuleId
    regex: str = Field(min_length=1)
    action: Action = "block"
    description: str = ""


class GuardrailSettings(_Strict):
    """Guardrails: secrets, PII and deny patterns found in every request (docs/guardrails.md).

    ``actions`` is keyed by category (secret, pii, injection, custom) or rule id (a rule id wins); the
    categories it leaves out keep their defaults (:data:`DEFAULT_ACTIONS`). Teams and keys override it through
    the admin API.
    """

    enabled: bool = Field(True, description="off: nothing is scanned (x-ferrogate-guardrails: off)")
    responses: bool = Field(False, description="scan answers too, whole and streamed (masked, never blocked)")
    actions: dict[str, Action] = Field(default_factory=lambda: dict(DEFAULT_ACTIONS))
    rules: list[UserRule] = Field(default_factory=list)
    gitleaks_rules: str | None = Field(
        None,
        description="a Gitleaks rule file (TOML) whose rules are added as secrets; a relative path is relative"
        " to the working directory",
    )
    deny_patterns: list[DenyPattern] = Field(default_factory=list)
    default_classification: Classification = Field(
        "internal", description="a request's classification when it sends no x-ferrogate-classification header"
    )

    @field_validator("actions")
    @classmethod
    def _actions(cls, value: dict[str, Action]) -> dict[str, Action]:
        for name in value:
            if not name or len(name) > 128 or not (name[0].isalnum() and name.isascii()):
                raise ValueError(f"{name!r} is neither a category nor a rule id")
        return {**DEFAULT_ACTIONS, **value}

    @model_validator(mode="after")
    def _unique_ids(self) -> GuardrailSettings:
        _unique([r.id for r in self.rules], "rules", "id")
        _unique([p.id for p in self.deny_patterns], "deny_patterns", "id")
        return self


class Config(_Strict):
    """The whole configuration file."""

    server: ServerSettings = Field(default_factory=ServerSettings)
    requests: RequestBounds = Field(default_factory=RequestBounds)
    metering: MeteringSettings = Field(default_factory=MeteringSettings)
    budgets: BudgetSettings = Field(default_factory=BudgetSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    guardrails: GuardrailSettings = Field(default_factory=GuardrailSettings)
    upstreams: list[Upstream] = Field(default_factory=list)
    model_groups: list[ModelGroup] = Field(default_factory=list)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    mcp: McpSettings = Field(default_factory=McpSettings)

    @model_validator(mode="after")
    def _references(self) -> Config:
        _unique([u.name for u in self.upstreams], "upstreams")
        _unique([s.id for s in self.mcp.servers], "mcp.servers", "id")
        _unique([g.name for g in self.model_groups], "model_groups")
        named = {g.name: gi for gi, g in enumerate(self.model_groups)}
        for gi, group in enumerate(self.model_groups):
            for ai, alias in enumerate(group.aliases):
                if named.setdefault(alias, gi) != gi or alias in group.aliases[:ai]:
                    raise ValueError(f"model_groups[{gi}].aliases[{ai}]: {alias!r} already names a model group")
        known = {u.name for u in self.upstreams}
        groups = {g.name for g in self.model_groups}
        for gi, group in enumerate(self.model_groups):
            for field in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
                for fi, name in enumerate(getattr(group, field)):
                    if name not in groups or name == group.name:
                        raise ValueError(
                            f"model_groups[{gi}].{field}[{fi}]: {name!r} is not another model group"
                            f" (known: {', '.join(sorted(groups - {group.name})) or 'none'})"
                        )
            for di, dep in enumerate(group.deployments):
                if dep.upstream not in known:
                    raise ValueError(
                        f"model_groups[{gi}].deployments[{di}].upstream: unknown upstream {dep.upstream!r}"
                        f" (known: {', '.join(sorted(known)) or 'none'})"
                    )
        return self


def _unique(names: list[str], where: str, field: str = "name") -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise ValueError(f"{where}[{i}].{field}: duplicate {field} {name!r}")
        seen.add(name)
