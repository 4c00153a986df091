"""Rust core of ferrogate (``ferrogate._core``): SSE parsing, stream metering, token counting, rate limits.

Written by hand and checked with ``python -m mypy.stubtest ferrogate._core``. CPU work runs
with the GIL released. Every error is a :class:`CoreError`.

Example:
    >>> from ferrogate._core import SseParser, count_tokens
    >>> [e.data for e in SseParser().feed(b"data: hi\\n\\n")]
    ['hi']
    >>> count_tokens("hello world")
    2
"""

import os
from collections.abc import Sequence
from typing import ClassVar, Generic, Protocol, TypeVar, final

class _HasRulePair(Protocol):
    @property
    def rule_pair(self) -> tuple[int, int]: ...

_Paired = TypeVar("_Paired", bound=_HasRulePair)

__all__ = [
    "ChatStreamMeter",
    "CircuitError",
    "CircuitPolicy",
    "Circuits",
    "CoreError",
    "GuardPolicy",
    "InvalidBodyError",
    "InvalidRateError",
    "JsonSchema",
    "LimiterError",
    "RateLimiter",
    "RoutePolicy",
    "RoutePolicyError",
    "RouteRequest",
    "RouteTargets",
    "RuleError",
    "ScanResult",
    "Scanner",
    "SchemaError",
    "SseError",
    "SseEvent",
    "SseParser",
    "StreamRelay",
    "UnknownEncodingError",
    "__version__",
    "audit_block",
    "audit_hash",
    "audit_request_data",
    "audit_requests",
    "count_chat_prompt",
    "count_tokens",
    "encoding_for_model",
    "model_encoding",
    "rate_headers",
    "reset_duration",
]

__version__: str

class CoreError(Exception):
    """Base class of every error raised by ferrogate._core."""

class UnknownEncodingError(CoreError):
    """The encoding name is not a bundled one (o200k_base, cl100k_base)."""

class SseError(CoreError):
    """An SSE stream broke the parser's bounds (a line or an event over max_event_bytes)."""

class InvalidBodyError(CoreError):
    """A chat request body is not JSON with a messages array of message objects."""

class LimiterError(CoreError):
    """The rate limiter's table could not be opened (file error, other layout or capacity, bad capacity)."""

class InvalidRateError(CoreError):
    """A rate limit, period or cost that is not a usable number."""

class RuleError(ValueError):
    """A guardrail rule that does not compile; the message names the rule's id and index."""

@final
class SseEvent:
    """One server-sent event; immutable, compared by value."""

    __hash__: ClassVar[None]  # type: ignore[assignment]
    @property
    def event(self) -> str:
        """The event type, ``"message"`` by default."""
    @property
    def data(self) -> str:
        """The data lines joined by ``"\\n"``."""
    @property
    def id(self) -> str | None:
        """The last event id of the stream (it persists across events), if any."""
    @property
    def retry(self) -> int | None:
        """The ``retry`` value (ms) given in this event's block, if any."""
    def __eq__(self, value: object, /) -> bool: ...

@final
class SseParser:
    """Incremental SSE parser (WHATWG rules): bytes in, split anywhere; complete events out.

    A line, or the data of one event, longer than ``max_event_bytes`` raises :class:`SseError`
    (events completed before it are returned first; the error is then sticky).

    Example:
        >>> p = SseParser()
        >>> p.feed(b"data: a\\r")
        []
        >>> [e.data for e in p.feed(b"\\n\\n")]
        ['a']
    """

    def __new__(cls, max_event_bytes: int = 1048576) -> SseParser: ...
    @property
    def max_event_bytes(self) -> int:
        """The bound on one line and on the data of one event."""
    def feed(self, data: bytes) -> list[SseEvent]:
        """Feeds the next chunk; returns the events it completes."""
    def finish(self) -> list[SseEvent]:
        """Ends the stream; returns a pending unterminated event, if any, and resets."""

@final
class ChatStreamMeter:
    """Meters one OpenAI chat-completions SSE stream from its raw upstream bytes.

    Example:
        >>> m = ChatStreamMeter()
        >>> m.feed(b'data: {"model":"gpt-4o","choices":[{"delta":{"content":"hi"}}]}\\n\\n')
        >>> m.model, m.completion_text, m.usage
        ('gpt-4o', 'hi', None)
    """

    def __new__(cls, encoding: str = "o200k_base") -> ChatStreamMeter: ...
    def feed(self, data: bytes) -> bool:
        """Feeds raw upstream bytes; returns whether ``data: [DONE]`` has been seen.

        The GIL is released for chunks of 16 KiB or more. Raises SseError on an oversize event.
        """
    def finish(self) -> None:
        """Ends the stream: an unterminated final event is still metered."""
    @property
    def usage(self) -> tuple[int, int, int, int] | None:
        """``(prompt, completion, cached, reasoning)`` tokens from the upstream's usage."""
    @property
    def model(self) -> str | None:
        """The response model, if the upstream named one."""
    @property
    def done(self) -> bool:
        """Whether ``data: [DONE]`` has been seen."""
    @property
    def error(self) -> str | None:
        """The raw JSON of an upstream ``error`` value, if one was sent."""
    @property
    def completion_text(self) -> str:
        """The accumulated completion text (content, reasoning, tool call names and arguments)."""
    @property
    def encoding(self) -> str:
        """The encoding used to count completion tokens."""
    @property
    def malformed_events(self) -> int:
        """How many data events were neither ``[DONE]`` nor a readable JSON object."""
    def count_completion_tokens(self) -> int:
        """Counts the tokens of :attr:`completion_text` (the fallback when no usage arrived)."""

@final
class StreamRelay:
    """Relays one upstream SSE stream to the client: parses, meters usage, translates between protocols and strips
    or inserts the usage chunk, in one call per chunk.

    ``source`` is ``"openai.chat"``, ``"anthropic.messages"`` or ``"openai.responses"``, and so is ``target``; a
    Responses upstream can only be passed through (another pair is a ``ValueError``). When source and target are
    the same, the upstream's bytes pass unchanged (an OpenAI chat stream loses its usage-only chunk unless
    ``include_usage``, or gains a counted one before ``[DONE]`` when the upstream sent none). Reasoning is dropped
    on the way to ``openai.responses``, and from ``openai.chat`` to ``anthropic.messages`` (a thinking block needs
    Anthropic's signature); it is still metered. An OpenAI refusal is a text block to Anthropic and a refusal part
    to Responses.

    With a ``guard`` (a :class:`GuardPolicy` with any rule on), the answer is masked as it streams: answer text,
    reasoning, refusals and each tool call's arguments, exactly as each would be redacted whole, however the
    upstream splits them (a channel's text is held back only as long as the longest match of the policy's rules
    needs, and sent when the channel ends). Redact and block rules mask, log rules count
    (:meth:`guard_findings`); the usage is metered on the upstream's text. Such a relay always translates, also
    between the same protocols (an OpenAI chat stream then keeps only choice 0), except a Responses stream, masked
    in place (the same events, with their text masked).

    Example:
        >>> r = StreamRelay("anthropic.messages", "openai.chat", request_id="r1")
        >>> r.feed(b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude"}}\n\n')[:32]
        b'data: {"id":"chatcmpl-r1","objec'
        >>> r.feed(b'event: message_stop\ndata: {"type":"message_stop"}\n\n'), r.done
        (b'data: [DONE]\n\n', True)
    """

    def __new__(
        cls,
        source: str,
        target: str,
        *,
        encoding: str = "o200k_base",
        include_usage: bool = False,
        request_id: str = "",
        model: str = "",
        created: int = 0,
        prompt_tokens: int = -1,
        json_tool: str | None = None,
        max_event_bytes: int = 1048576,
        guard: GuardPolicy | None = None,
    ) -> StreamRelay: ...
    def feed(self, data: bytes) -> bytes:
        """Feeds raw upstream bytes; returns the whole events to send now (``b""`` when none is complete).

        A passthrough chunk of whole events that needs no change is returned as the same object. The GIL is
        released for chunks of 16 KiB or more. Raises SseError on an oversize event (events before it in the
        chunk are returned first; the error then comes with the next call).
        """
    def finish(self) -> bytes:
        """The upstream ended: an unterminated last event is still processed; returns what is left to send.

        No terminal event is invented when the upstream broke off (send :meth:`error_event` then).
        """
    def error_event(self, message: str, type: str = "api_error", code: str | None = None) -> bytes:
        """An error event in the target protocol; it marks the stream done."""
    @property
    def done(self) -> bool:
        """Whether the source's terminal event (``[DONE]``, ``message_stop``, ``response.completed`` ...) or an
        error was seen."""
    @property
    def usage(self) -> tuple[int, int, int, int, int] | None:
        """``(prompt, completion, cached, reasoning, cache_creation)`` tokens as the upstream reported them, or as
        counted (see :attr:`usage_counted`)."""
    @property
    def usage_counted(self) -> bool:
        """Whether the relay synthesized the usage (the client's stream needed it; the upstream sent none)."""
    @property
    def model(self) -> str | None:
        """The upstream's response model, if it named one."""
    @property
    def error(self) -> str | None:
        """The raw JSON of an upstream error object, if one was sent."""
    @property
    def completion_text(self) -> str:
        """The completion text: answer and reasoning text, tool call names and arguments."""
    @property
    def content_started(self) -> bool:
        """Whether any content (text, reasoning, refusal or a tool call) reached the stream yet: until then a
        failed stream can still be failed over to another deployment."""
    @property
    def malformed_events(self) -> int:
        """How many data events the source decoder could not read."""
    def count_completion_tokens(self) -> int:
        """Counts the tokens of :attr:`completion_text` with the relay's encoding."""
    @property
    def guarded(self) -> bool:
        """Whether the relay masks the stream with a guard policy."""
    def guard_findings(self) -> list[tuple[str, str, int, int]]:
        """A guarded relay's findings so far, per rule that has any: ``(rule id, category, action, count)``
        (action 1 log, 2 redact, 3 block: masked like redact); ``[]`` without a guard."""

def audit_block(
    first_seq: int,
    prev_hash: str,
    entries: Sequence[tuple[str, str, str, str, str | None, str | None, str]],
) -> tuple[str, str]:
    """Chains data-plane records into one block: ``entries`` are ``(event_id, created_at, actor, action, target,
    team_id, data)`` (the fixed-width UTC stamp, canonical JSON text), numbered from ``first_seq`` after a record
    whose hash is ``prev_hash``; returns the block's JSON text and the hash of its last record."""

def audit_request_data(facts: tuple[object, ...]) -> tuple[str, str]:
    """The fixed-width UTC stamp and the canonical ``data`` text of one request's record
    (``ferrogate.store.audit.RequestFacts``); ``TypeError`` naming a field of the wrong type, ``ValueError`` for a
    naive ``created_at`` (an aware one in another zone is stamped in UTC)."""

def audit_requests(
    first_seq: int, prev_hash: str, facts: Sequence[tuple[object, ...]]
) -> tuple[str, str, str, str, list[str], list[str]]:
    """Chains data-plane requests (``RequestFacts``) into one block, encoding each record's ``data`` from its
    facts; returns the block's JSON text, the hash of its last record, the earliest and latest stamp, and the
    distinct actors and teams (sorted)."""

def audit_hash(
    seq: int,
    event_id: str,
    created_at: str,
    kind: str,
    actor: str,
    action: str,
    target: str | None,
    team_id: str | None,
    data: str,
    prev_hash: str,
) -> str:
    """SHA-256 (hex) over the canonical JSON of an audit record's fields (``created_at`` as its fixed-width
    UTC stamp, ``data`` its stored JSON text): what ``ferrogate.store.audit.record_hash`` returns."""

def rate_headers(taken: Sequence[tuple[float, float, float, bool]]) -> list[tuple[str, str]]:
    """OpenAI's ``x-ratelimit-*`` headers for the tightest bucket of each kind (fewest remaining, the first
    on ties), requests first: ``taken`` are ``(limit, remaining, reset_s, tokens)``.

    Example:
        >>> [value for _, value in rate_headers([(100, 99.5, 0.6, False)])]
        ['100', '99', '600ms']
    """

def reset_duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms`` under a second (at least ``1ms``), else whole seconds rounded up,
    as ``6m0s`` from a minute.

    Example:
        >>> reset_duration(0.0004), reset_duration(1.2), reset_duration(360.0)
        ('1ms', '2s', '6m0s')
    """

def count_tokens(text: str, encoding: str = "o200k_base") -> int:
    """Counts the tokens of ``text`` in ``encoding`` (``o200k_base`` or ``cl100k_base``)."""

def count_chat_prompt(body: bytes, encoding: str = "o200k_base") -> int:
    """Counts the prompt tokens of an OpenAI chat request body, with OpenAI's message overhead."""

def encoding_for_model(model: str) -> str:
    """The encoding name for ``model`` (``o200k_base`` as an estimate for unknown models)."""

def model_encoding(model: str) -> tuple[str, bool]:
    """``(encoding, is_estimate)`` for ``model``; ``is_estimate`` is true for unknown models."""

@final
class RateLimiter:
    """Cost-weighted GCRA buckets keyed by string, in a bounded table.

    ``path=None`` keeps the table in this process; a path (e.g. under ``/dev/shm``) maps a shared
    file that the first process creates, so every worker process of an instance shares the
    buckets exactly. ``capacity`` is rounded up to a multiple of 16. Decisions take well under a
    microsecond and keep the GIL (releasing it would cost more).

    Example:
        >>> limiter = RateLimiter(capacity=1024)
        >>> limiter.check("rpm:key:1", 2, 60.0)[0], limiter.check("rpm:key:1", 2, 60.0)[0]
        (True, True)
        >>> allowed, remaining, retry_after_s, reset_s = limiter.check("rpm:key:1", 2, 60.0)
        >>> allowed, remaining < 1, round(retry_after_s), round(reset_s)
        (False, True, 30, 60)
    """

    def __new__(cls, path: str | os.PathLike[str] | None = None, capacity: int = 65536) -> RateLimiter: ...
    def check(self, key: str, limit: float, period_s: float, cost: float = 1.0) -> tuple[bool, float, float, float]:
        """``(allowed, remaining, retry_after_s, reset_s)``; the cost is consumed when allowed.

        ``retry_after_s`` is 0 when allowed, ``inf`` when ``cost`` exceeds ``limit`` (never fits).
        """
    def take_many(
        self, buckets: Sequence[tuple[str, float, bool]], period_s: float, tokens_cost: float
    ) -> tuple[int, float, list[tuple[str, str]]]:
        """Takes a request's chain of buckets all or none, in order, at one instant.

        ``buckets`` are ``(key, limit, tokens)``: a tokens bucket costs ``tokens_cost``, a requests bucket 1.
        Returns ``(refused, retry_after_s, headers)``: the index of the first bucket that did not fit (what
        the earlier ones took is given back) or -1, its retry-after (0 when none refused; ``inf`` when the
        cost exceeds the limit), and OpenAI's ``x-ratelimit-*`` headers for the tightest bucket of each kind
        (fewest remaining, the first on ties; the refusing bucket included), requests first.

        Example:
            >>> limiter = RateLimiter(capacity=1024)
            >>> limiter.take_many([("rpm:key:1", 10, False), ("tpm:key:1", 1000, True)], 60.0, 400.0)[:2]
            (-1, 0.0)
            >>> refused, wait, headers = limiter.take_many([("rpm:key:1", 10, False), ("tpm:key:1", 1000, True)],
            ...                                            60.0, 700.0)
            >>> refused, round(wait), headers[4]
            (1, 6, ('x-ratelimit-remaining-tokens', '600'))
            >>> limiter.peek("rpm:key:1", 10, 60.0)[0] >= 8  # the refused request's request was given back
            True
        """
    def refund(self, key: str, limit: float, period_s: float, cost: float) -> None:
        """Gives ``cost`` units back to ``key``; the bucket never becomes more than full."""
    def charge(self, key: str, limit: float, period_s: float, cost: float) -> None:
        """Consumes ``cost`` units of ``key`` even when they do not fit (settling a request that used more
        than it reserved): the bucket may go into debt, which later requests wait out. A charge never puts
        the bucket more than two periods ahead of now.
        """
    def peek(self, key: str, limit: float, period_s: float) -> tuple[float, float]:
        """``(remaining, reset_s)`` of ``key`` without consuming."""
    def occupancy(self) -> tuple[int, int]:
        """``(slots holding a key, slots whose bucket is in use)``."""
    @property
    def capacity(self) -> int:
        """The number of slots (the most keys held at once)."""
    @property
    def path(self) -> str | None:
        """The shared file's path, or ``None`` for process-local memory."""

@final
class Scanner:
    """Compiled guardrail rules: one per worker, shared by every :class:`GuardPolicy` made from it.

    A rule is a dict with the keys ``id`` and ``regex`` (Rust ``regex`` syntax) and optionally
    ``category`` (``"secret"``, ``"pii"``, ``"injection"``, ``"custom"``; default ``"custom"``),
    ``description``, ``keywords`` (case-insensitive literals, one of which every match contains),
    ``entropy`` (minimum Shannon bits per character of the secret), ``secret_group`` (the capture
    group that is the secret), ``allowlist`` (regexes of non-secrets), ``stopwords``,
    ``validator`` (``"none"``, ``"luhn"``, ``"iban"``) and ``max_len``. Raises :class:`RuleError`
    for the first rule that does not compile.

    Example:
        >>> scanner = Scanner([{"id": "demo", "regex": r"demo_[a-z0-9]{8}", "keywords": ["demo_"]}])
        >>> scanner.policy(bytes([2])).redact_text("key demo_a1b2c3d4")
        'key [REDACTED:demo]'
    """

    def __new__(cls, rules: list[dict[str, object]]) -> Scanner: ...
    @staticmethod
    def builtin_rules() -> list[dict[str, object]]:
        """The built-in rules (secrets, PII, prompt injection), as dicts a ``Scanner`` takes."""
    @property
    def rule_ids(self) -> list[str]:
        """The rules' ids, in order."""
    @property
    def categories(self) -> list[str]:
        """The rules' categories, in order."""
    def policy(self, actions: bytes) -> GuardPolicy:
        """The policy of ``actions``: one byte per rule, 0 off, 1 log, 2 redact, 3 block (``ValueError`` otherwise)."""

@final
class GuardPolicy:
    """A :class:`Scanner` with one action per rule; immutable and cheap to keep per team and key."""

    @property
    def active(self) -> bool:
        """Whether any rule is not off."""
    def scan_json(self, body: bytes) -> ScanResult | None:
        """Scans every string value of a JSON request body; ``None`` when nothing is found.

        Paths name each finding's string (``messages[1].content[0].text``); strings starting
        with ``data:`` and the strings of keys ``data``, ``file_data``, ``signature`` and
        ``encrypted_content`` are skipped. Raises :class:`InvalidBodyError` for a body that is
        not JSON. Runs with the GIL released.
        """
    def scan_text(self, text: str) -> ScanResult | None:
        """Scans a text (MCP tool arguments and results); ``None`` when nothing is found."""
    def redact_text(self, text: str) -> str:
        """``text`` with every redact and block finding replaced by ``[REDACTED:<rule id>]``."""

@final
class ScanResult:
    """What a scan found."""

    @property
    def findings(self) -> list[tuple[str, str, int, str, int, int]]:
        """Every finding: (rule id, category, action, path, start, end); UTF-8 byte spans in the unescaped string."""
    @property
    def body(self) -> bytes | None:
        """``scan_json``: the redacted body (only its redacted strings re-encoded), if some redact and no block."""
    @property
    def text(self) -> str | None:
        """``scan_text``: the redacted text, when some finding is redact and none is block."""
    @property
    def blocked(self) -> tuple[str, str, int, str, int, int] | None:
        """The first finding whose action is block."""

# ---- circuit breakers (rust_core/src/circuit, docs/routing.md) ----------------------------------------------

class CircuitError(CoreError):
    """The circuit breakers' table: a bad policy setting, a full table, a slot out of range, or a table file that
    cannot be opened (another layout or capacity)."""

@final
class CircuitPolicy:
    """A model group's circuit breaker and retry budget settings (``CircuitSettings``, the budget fields of
    ``RetrySettings``, ``routing.latency_alpha``), checked once; raises :class:`CircuitError` naming a bad one.

    Example:
        >>> p = CircuitPolicy(enabled=True, window_s=30.0, min_requests=10, error_rate=0.5, consecutive=5,
        ...     cooldown_s=5.0, cooldown_max_s=300.0, probes=1, latency_alpha=0.2, retry_budget_pct=20.0,
        ...     retry_budget_min=10, retry_budget_window_s=10.0)
        >>> p.window_s, p.probes
        (30.0, 1)
    """

    def __new__(
        cls,
        *,
        enabled: bool,
        window_s: float,
        min_requests: int,
        error_rate: float,
        consecutive: int,
        cooldown_s: float,
        cooldown_max_s: float,
        probes: int,
        latency_alpha: float,
        retry_budget_pct: float,
        retry_budget_min: int,
        retry_budget_window_s: float,
    ) -> CircuitPolicy: ...
    @property
    def enabled(self) -> bool:
        """Whether breakers trip (``False``: attempts are still counted, never refused)."""
    @property
    def window_s(self) -> float:
        """The sliding window failures are counted over."""
    @property
    def probes(self) -> int:
        """Half-open probes let through at once."""
    @property
    def cooldown_s(self) -> float:
        """The first cool-down."""
    @property
    def cooldown_max_s(self) -> float:
        """The longest cool-down."""

@final
class Circuits:
    """Per deployment key: a circuit breaker, attempts in flight, latency EWMAs and a retry budget, in a bounded
    table (``path=None``: this process; a path under ``/dev/shm``: every worker process mapping it shares it
    exactly). Every call keeps the GIL and takes well under a microsecond.

    Example:
        >>> p = CircuitPolicy(enabled=True, window_s=30.0, min_requests=10, error_rate=0.5, consecutive=2,
        ...     cooldown_s=5.0, cooldown_max_s=300.0, probes=1, latency_alpha=0.2, retry_budget_pct=20.0,
        ...     retry_budget_min=10, retry_budget_window_s=10.0)
        >>> c = Circuits(None, 64)
        >>> s = c.slot("openai/gpt-4o")
        >>> [c.admit(s, p) == 0 and c.done(s, p, False, 0.1, -1.0, 0.0, False, 503) for _ in range(2)]
        [False, True]
        >>> c.admit(s, p), c.view(s)[0]
        (-1, 1)
    """

    def __new__(cls, path: str | os.PathLike[str] | None = None, capacity: int = 4096) -> Circuits: ...
    def slot(self, key: str) -> int:
        """The slot of deployment key ``key`` (``f"{upstream}/{model}"``), the same in every process mapping the
        file; claimed on first use, never given back (:class:`CircuitError` when every slot is taken)."""
    def admit(self, slot: int, policy: CircuitPolicy) -> int:
        """Before an attempt: 0 closed (send it), 1 half-open probe granted (send it, pass ``probe=True`` to
        :meth:`done`), -1 skip (open, or every probe place taken). An admitted attempt counts +1 in flight and
        one request of the retry budget."""
    def done(
        self,
        slot: int,
        policy: CircuitPolicy,
        ok: bool,
        latency_s: float,
        ttft_s: float,
        retry_after_s: float,
        probe: bool,
        status: int,
    ) -> bool:
        """After an admitted attempt: in flight -1; the attempt counted in the sliding window and the failures in
        a row; the EWMAs (``latency_s``, and ``ttft_s`` when >= 0; a failure only raises them); ``status`` the
        HTTP status, 0 a connection fault, 1 a timeout; ``retry_after_s`` > 0 sets the cool-down of a trip (up
        to ``cooldown_max_s``). ``True`` when this call tripped the breaker open (publish it:
        ``Health.tripped``)."""
    def retry_allowed(self, slot: int, policy: CircuitPolicy) -> bool:
        """Whether the retry budget allows one more retry on this deployment (counted when ``True``)."""
    def trip(self, slot: int, open_for_s: float) -> None:
        """Open the breaker for ``open_for_s`` seconds (a trip another instance saw); an open one only lengthens."""
    def state(self, slot: int) -> int:
        """Just the state (0 closed, 1 open, 2 half-open, as in :meth:`view`): one read, nothing counted; cheaper
        than ``view(slot)[0]`` for a check before :meth:`admit`."""
    def view(self, slot: int) -> tuple[int, float, int, int, float, int, int, float, float, int, float]:
        """``(state, error_rate, window_requests, consecutive_failures, open_remaining_s, trips_in_a_row,
        in_flight, ttft_ewma_s, latency_ewma_s, last_status, last_failure_age_s)``: state 0 closed, 1 open, 2
        half-open (also an open breaker whose cool-down is over); -1 for an EWMA, status or age not known yet."""
    def facts(self, slots: Sequence[int]) -> list[tuple[int, int, float, float, float]]:
        """Per slot, in one call (ordering a group's deployments): ``(state, in_flight, error_rate,
        latency_ewma_s, ttft_ewma_s)``."""
    @property
    def capacity(self) -> int:
        """The number of slots."""
    @property
    def path(self) -> str | None:
        """The shared file's path, or ``None`` for process-local memory."""
    def occupancy(self) -> int:
        """Slots holding a deployment key."""
    def rank(self, slots: Sequence[int], by: int) -> list[int]:
        """The positions of ``slots`` in ascending order of ``by`` (0: in-flight count, 1: latency EWMA, 2: time to
        first token EWMA; one not known yet first), ties in the given order."""
    def clear_in_flight(self) -> None:
        """Set every in-flight count to 0: after a worker was killed mid-request (its attempts would stay counted);
        the live workers' attempts then end on a count held at 0, and the counts are right once they have."""

# ---- structured outputs (rust_core/src/schema) --------------------------------------------------

class SchemaError(CoreError):
    """A JSON schema that does not compile (not JSON, over 256 KiB, not a schema of its draft, an unresolvable or
    remote ``$ref``, a pattern that needs backtracking), or an answer that checking would take over its work
    budget (from :meth:`JsonSchema.errors`: the answer is not checked)."""

@final
class JsonSchema:
    """A compiled JSON schema (drafts 4 to 2020-12; 2020-12 unless ``$schema`` says otherwise): build it once per
    distinct schema, check any number of answers. Nothing is ever fetched (a remote ``$ref`` does not compile);
    ``format`` is asserted; ``pattern`` runs in linear time. Raises :class:`SchemaError`.

    Example:
        >>> s = JsonSchema(b'{"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}')
        >>> s.errors(b'{"n": 1}'), s.errors(b'{"n": "x"}'), s.errors(b'{}')
        ([], [('/n', 'value is not of type "integer"')], [('', '"n" is a required property')])
        >>> s.errors(b"not json")[0][0]
        ''
    """

    def __new__(cls, schema: bytes) -> JsonSchema: ...
    def errors(self, instance: bytes, limit: int = 5) -> list[tuple[str, str]]:
        """At most ``limit`` violations ``(JSON pointer, message)`` of the answer ``instance`` (JSON bytes), the
        answer's values masked out of the messages; ``[]`` when valid (a ``limit`` below 1 reads as 1); one at
        ``""`` when it is not JSON. Raises :class:`SchemaError` when checking it would take over its budget of
        evaluations (100 000 plus 64 per value of the answer): the answer is not checked. The GIL is released
        for answers of 64 KiB or more."""

# ---- routing rules (rust_core/src/policy, docs/routing.md) --------------------------------------------------

class RoutePolicyError(CoreError):
    """Routing rules that do not parse, do not validate against the routing schema, or carry a bad ``@id`` /
    ``@priority``: one line per problem, ``"<source>:<line>:<col>: <what>"``."""

@final
class RouteRequest:
    """A request's facts as the routing rules know them (``principal`` and ``context`` attributes), built once per
    request and passed to every decision.

    Example:
        >>> RouteRequest(team="t1", sla_ms=800).budget_left_cents
        -1
    """

    def __new__(
        cls,
        team: str = "",
        key: str = "",
        user: str = "",
        classification: str = "",
        sla_ms: int = 0,
        budget_left_cents: int = -1,
        model: str = "",
        stream: bool = False,
        ingress: str = "openai",
    ) -> RouteRequest: ...
    @property
    def team(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def user(self) -> str: ...
    @property
    def classification(self) -> str: ...
    @property
    def sla_ms(self) -> int: ...
    @property
    def budget_left_cents(self) -> int: ...
    @property
    def model(self) -> str: ...
    @property
    def stream(self) -> bool: ...
    @property
    def ingress(self) -> str: ...

@final
class RouteTargets(Generic[_Paired]):
    """A model group's targets for one classification in their base order, each one's ``rule_pair`` read once
    (what :meth:`RoutePolicy.order_group` orders per request)."""

    def __new__(cls, targets: Sequence[_Paired]) -> RouteTargets[_Paired]: ...
    def __len__(self) -> int: ...

@final
class RoutePolicy:
    """Routing rules (Cedar policies over principal ``Key``, action ``Action::"route"``, resource ``Deployment``)
    and the deployments registered with them.

    A candidate is eligible unless a ``forbid`` matches; each matching ``permit`` with ``@priority("N")`` adds N
    to its score. Rule ids: ``@id("...")``, else ``policy<N>``. Raises :class:`RoutePolicyError`.

    Example:
        >>> p = RoutePolicy('@id("open") forbid(principal, action, resource) when { resource.circuit == "open" };', "x")
        >>> p.deployment("up/m", "openai", "up", "m", "fast", [], 0, 0)
        0
        >>> p.decide(RouteRequest("t", "k", model="fast"), [(0, 100, 50, 0, "open", 0)])
        [(0, False, 0, ['open'])]
    """

    def __new__(cls, text: str, source: str) -> RoutePolicy: ...
    @staticmethod
    def from_sources(sources: list[tuple[str, str]]) -> RoutePolicy:
        """The rules of several ``(text, source)`` pairs as one set (a rule file and inline rules); ids are unique
        across them, ``policy<N>`` counts every rule from the first source on."""
    def deployment(
        self,
        key: str,
        provider: str,
        upstream: str,
        model: str,
        group: str,
        tags: list[str],
        input_price_micro_usd: int,
        output_price_micro_usd: int,
    ) -> int:
        """Registers a deployment's fixed attributes (prices: micro-USD per 1M tokens); returns its id."""
    def decide(
        self,
        request: RouteRequest,
        candidates: list[tuple[int, int, int, int, str, int]],
    ) -> list[tuple[int, bool, int, list[str]]]:
        """Per candidate ``(id, latency_ms, ttft_ms, error_rate_pct, circuit, in_flight)``, in input order:
        ``(id, eligible, score, ids of the rules that decided)`` (the forbids that matched when not eligible,
        else the permits that matched). ``circuit`` is ``closed``, ``open`` or ``half_open`` (``ValueError``
        otherwise, and for an id ``deployment`` did not return)."""
    def order(
        self,
        request: RouteRequest,
        candidates: list[tuple[int, int, int, int, str, int]],
    ) -> list[int]:
        """The eligible candidates' ids, highest score first, ties in input order (:meth:`decide` reduced to the
        router's need)."""
    def order_group(
        self,
        request: RouteRequest,
        circuits: Circuits,
        group: RouteTargets[_Paired],
        by: int,
        first: int,
        base: list[int] | None = None,
    ) -> list[_Paired]:
        """The router's whole ordering of a group in one call: ``group``'s targets in their base order (or in
        ``base``, positions in it: an order the strategy made itself); then ``first`` (>= 0: that position
        first, the others in order: ``weighted``'s draw) or ``by`` (>= 0: ranked by in-flight count (0),
        latency EWMA (1) or time-to-first-token EWMA (2), unknown EWMAs first, ties kept); then the rules: a new
        list of the eligible targets, highest score first, ties in that order. Raises ``ValueError`` for a
        ``base`` position outside the group."""
    @property
    def ids(self) -> list[str]:
        """The rules' ids, in source order."""
