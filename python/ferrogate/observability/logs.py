"""Structured logs: the process log as JSON lines (or text), and one JSON line per request.

The process log goes through :mod:`logging`: :func:`logging_config` is the ``dictConfig`` every Granian
worker applies (``log_dictconfig``), so worker and server records share one format and level.

The request log does not go through :mod:`logging` (its ~10 µs per record would be the largest cost on the
hot path): :class:`RequestLog` encodes one JSON object per request with orjson into a per-worker buffer and
writes it to standard error in whole lines, each ``write`` at most ``PIPE_BUF`` bytes so the lines of
several workers sharing a pipe never interleave. It is flushed every ``interval_s`` (a background task),
when the buffer passes ``max_buffer`` bytes, and at shutdown. Lines carry ids, never key material.

Example:
    >>> import logging.config
    >>> logging.config.dictConfig(logging_config("info", "json"))
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from ferrogate.errors import GatewayError

if TYPE_CHECKING:
    from ferrogate.pipeline.context import RequestContext

#: Attributes every LogRecord has: anything else on a record is an ``extra`` field worth logging.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime", "taskName"}
)
#: Writes to a pipe of at most this many bytes are atomic (POSIX PIPE_BUF, 4096 on Linux).
ATOMIC_WRITE = getattr(select, "PIPE_BUF", 4096)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts``, ``level``, ``logger``, ``msg``, the record's extras, ``exc``.

    Example:
        >>> record = logging.LogRecord("ferrogate.x", logging.INFO, "f.py", 1, "hello %s", ("you",), None)
        >>> orjson.loads(JsonFormatter().format(record))["msg"]
        'hello you'
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def logging_config(level: str, fmt: str = "json") -> dict[str, Any]:
    """The ``dictConfig`` for the server and its workers: ``fmt`` "json" or "text", at ``level``.

    Granian's own loggers (``_granian``, ``granian.access``) get the same handler and format. The HTTP client
    and the MCP SDK the MCP gateway uses (``httpx2``, ``httpcore2``, ``mcp``) log every request at INFO (with
    session ids): they log from WARNING up, unless ``level`` is debug.
    """
    formatter: dict[str, Any] = (
        {"()": "ferrogate.observability.logs.JsonFormatter"}
        if fmt == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    handler = {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stderr"}
    lvl = level.upper()
    quiet = lvl if lvl == "DEBUG" else "WARNING"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "handlers": {"console": handler},
        "root": {"handlers": ["console"], "level": lvl},
        "loggers": {
            "_granian": {"handlers": ["console"], "level": lvl, "propagate": False},
            "granian.access": {"handlers": ["console"], "level": lvl, "propagate": False},
            **{name: {"level": quiet} for name in ("httpx2", "httpcore2", "mcp")},
        },
    }


def _error_code(error: BaseException | None) -> str | None:
    """The OpenAI ``code`` of a refusal, the exception's class name for anything else."""
    if error is None:
        return None
    if isinstance(error, GatewayError):
        return error.wire_code
    return type(error).__name__


class RequestLog:
    """One JSON line per data-plane request, buffered per worker (see the module docstring).

    Args:
        enabled: ``False`` makes :meth:`log` a no-op.
        fd: where lines go (standard error by default).
        interval_s: how often the background task flushes.
        max_buffer: bytes that trigger a flush from :meth:`log` itself.
    """

    def __init__(self, enabled: bool, *, fd: int = 2, interval_s: float = 0.5, max_buffer: int = 64 * 1024) -> None:
        self.enabled = enabled
        self._fd = fd
        self._interval_s = interval_s
        self._max = max_buffer
        self._lines: list[bytes] = []
        self._size = 0
        self._second = -1  # the second self._prefix spells (see _now)
        self._prefix = ""

    def _now(self) -> str:
        """Now as ``datetime.now(UTC).isoformat(timespec="milliseconds")`` writes it, for a third of its cost
        (the text up to the second is kept while the second lasts)."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, UTC).isoformat()[:-6]
        return f"{self._prefix}.{int((now - second) * 1000):03d}+00:00"

    def log(self, ctx: RequestContext, latency_ms: float, cost: float | None) -> None:
        """Append the line of ``ctx`` (after the account phase priced it); nothing when not ``enabled``."""
        if not self.enabled:
            return
        identity, usage, provider, error = ctx.identity, ctx.usage, ctx.provider, ctx.error
        line = orjson.dumps(
            {
                "ts": self._now(),
                "level": "info",
                "logger": "ferrogate.request",
                "msg": "request",
                "request_id": ctx.client_request_id or ctx.request_id,
                "gateway_request_id": ctx.request_id,
                "trace_id": ctx.trace_id,
                "key_id": identity.key_id if identity is not None else None,
                "team_id": identity.team_id if identity is not None else None,
                "user_id": identity.user_id if identity is not None else None,
                "model": ctx.model or None,
                "upstream": provider.name if provider is not None else None,
                "status": ctx.status,
                "stream": ctx.stream,
                "latency_ms": round(latency_ms, 3),
                "prompt_tokens": usage.prompt_tokens if usage is not None else None,
                "completion_tokens": usage.completion_tokens if usage is not None else None,
                "cost_usd": cost,
                "error": _error_code(error),
            }
        )
        self._lines.append(line)
        self._size += len(line) + 1
        if self._size >= self._max:
            self.flush()

    def flush(self) -> None:
        """Write the buffered lines, in writes of whole lines of at most ``ATOMIC_WRITE`` bytes."""
        if not self._lines:
            return
        lines, self._lines, self._size = self._lines, [], 0
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            if chunk and size + len(line) + 1 > ATOMIC_WRITE:
                self._write(b"\n".join(chunk) + b"\n")
                chunk, size = [], 0
            chunk.append(line)
            size += len(line) + 1
        if chunk:
            self._write(b"\n".join(chunk) + b"\n")

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._fd, view) :]
            except InterruptedError:
                continue
            except OSError:  # nowhere to log to (closed stderr): drop, never fail a request
                return

    async def run(self) -> None:
        """Flush every ``interval_s`` until cancelled (then flush once more)."""
        try:
            while True:
                await asyncio.sleep(self._interval_s)
                self.flush()
        finally:
            self.flush()
