"""The per-request context every phase reads and writes (pingora's ``CTX``)."""

from __future__ import annotations

from time import perf_counter
from typing import Any


class Usage:
    """Token usage of one request; ``counted`` is True when the gateway counted it itself."""

    __slots__ = ("cached_tokens", "completion_tokens", "counted", "prompt_tokens", "reasoning_tokens")

    def __init__(
        self, prompt: int, completion: int, cached: int = 0, reasoning: int = 0, *, counted: bool = False
    ) -> None:
        self.prompt_tokens = prompt
        self.completion_tokens = completion
        self.cached_tokens = cached
        self.reasoning_tokens = reasoning
        self.counted = counted

    def as_openai(self) -> dict[str, Any]:
        """OpenAI's usage object for this usage."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }


class RequestContext:
    """State of one data-plane request as it moves through the phases.

    Filled in phase order: ``receive`` sets ``request`` (the typed request: protocol, body, payload) and
    ``model``/``stream`` (the request's, kept here for the observers); ``guard`` sets ``classification``,
    ``guard_findings`` and ``answer_guard``; ``route`` sets ``upstream_model``/``provider``; ``forward`` sets
    ``reply``; ``respond`` sets ``status`` and ``usage``; ``account`` reads everything, ``error`` included.
    """

    __slots__ = (
        "answer_guard",
        "booked",
        "classification",
        "client_request_id",
        "cost",
        "deployment_index",
        "error",
        "group",
        "guard_findings",
        "held",
        "identity",
        "model",
        "plan",
        "prompt_tokens",
        "provider",
        "relay",
        "relay_ended",
        "reply",
        "request",
        "request_id",
        "response_model",
        "started",
        "status",
        "stream",
        "tpm_keys",
        "tpm_reserved",
        "trace",
        "trace_id",
        "traceparent",
        "tracestate",
        "ttft_s",
        "upstream_model",
        "upstream_s",
        "usage",
    )

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.client_request_id: str | None = None  # the client's x-request-id, when it sent a well-formed one
        self.trace_id: str | None = None  # from a valid W3C traceparent header, or of the request's span
        self.traceparent: str | None = None  # sent upstream: the client's (tracing off) or the CLIENT span's
        self.tracestate: str | None = None  # sent upstream with it: the client's W3C tracestate, vendors' entries
        self.trace: Any = None  # the request's spans (ferrogate.observability.traces), tracing on only
        self.upstream_s = -1.0  # seconds spent on the upstream exchange (forward + relaying a stream)
        self.ttft_s = -1.0  # seconds from arrival to the first streamed byte sent to the client
        self.started = perf_counter()
        self.request: Any = None  # ferrogate.protocols.request.Request, set by receive
        self.model = ""
        self.stream = False
        self.reply: Any = None  # ferrogate.providers.base.Reply, set by forward
        self.group = ""
        self.identity: Any = None  # ferrogate.auth.identity.Identity, set by authenticate
        self.deployment_index = 0
        self.upstream_model = ""
        self.provider: Any = None
        self.status = 0
        self.usage: Usage | None = None
        self.tpm_reserved = 0.0  # tokens the limit phase reserved against tokens-per-minute
        self.tpm_keys: tuple[tuple[str, int], ...] = ()  # (limiter key, limit) the reservation was taken from
        self.prompt_tokens = -1  # counted by the core once (limit or budget phase); -1: not yet
        self.response_model: str | None = None
        self.error: BaseException | None = None
        self.booked = False  # its usage record and audit facts are queued (journaled): pipeline.account.Books
        self.cost: float | None = None  # priced when booked (None: unpriced or not recorded)
        self.classification = ""  # public .. restricted, set by guard ("": none given; every deployment serves)
        #: What the guardrails found: ``(rule id, category, action, path)`` each, never the text (the audit record).
        self.guard_findings: tuple[tuple[str, str, str, str], ...] = ()
        self.answer_guard: Any = None  # _core.GuardPolicy masking the answer (None: answers are not scanned)
        self.plan: Any = None  # ferrogate.pipeline.failover.Plan: the attempts, set by route
        self.relay: Any = None  # the stream's _core.StreamRelay, primed by forward (streams only)
        self.held = b""  # what the relay gave before the stream's first content, sent when it is answered
        self.relay_ended = False  # the primed stream ended already (it had no more than its opening)

    def fail(self, error: BaseException) -> None:
        """Record the error the request ended with (its traceback dropped: no reference cycle)."""
        self.error = error.with_traceback(None)
