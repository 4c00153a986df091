"""The structured logs: the JSON formatter, the request log's whole-line atomic writes, traceparent parsing."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest

from ferrogate.auth.identity import Identity
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.observability.logs import ATOMIC_WRITE, JsonFormatter, RequestLog, logging_config
from ferrogate.pipeline.chain import trace_id
from ferrogate.pipeline.context import RequestContext


def test_json_formatter_keeps_extras_and_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        exc = sys.exc_info()
    record = logging.LogRecord("ferrogate.t", logging.ERROR, "f.py", 3, "failed %s", ("x",), exc)
    record.request_id = "r1"
    line = orjson.loads(JsonFormatter().format(record))
    assert (line["level"], line["logger"], line["msg"], line["request_id"]) == (
        "error",
        "ferrogate.t",
        "failed x",
        "r1",
    )
    assert "ValueError: boom" in line["exc"]
    assert line["ts"].endswith("+00:00")


def test_logging_config_formats() -> None:
    assert logging_config("debug", "json")["root"]["level"] == "DEBUG"
    assert "()" not in logging_config("info", "text")["formatters"]["main"]


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


def _ctx(i: int, error: BaseException | None = None) -> RequestContext:
    ctx = RequestContext(f"req{i:06d}")
    ctx.identity = Identity("key_1", "team_1", None, ("*",), None, None)
    ctx.model, ctx.status = "gpt-4o", 200 if error is None else 429
    if error is not None:
        ctx.fail(error)
    return ctx


class _Recording(RequestLog):
    """A request log that records each write (and performs it)."""

    writes: list[bytes]

    def _write(self, data: bytes) -> None:
        self.writes.append(data)
        super()._write(data)


def test_request_log_writes_whole_lines_in_atomic_chunks(pipe: tuple[int, int]) -> None:
    r, w = pipe
    log = _Recording(True, fd=w, max_buffer=10**9)
    log.writes = []
    for i in range(100):  # ~45 KB: fits the pipe, read after the flush
        log.log(_ctx(i), 1.5, 0.25)
    log.flush()
    assert len(log.writes) > 1
    assert all(len(x) <= ATOMIC_WRITE and x.endswith(b"\n") for x in log.writes)
    data = b""
    while len(data.splitlines()) < 100:
        data += os.read(r, 65536)
    lines = [orjson.loads(x) for x in data.splitlines()]
    assert [x["request_id"] for x in lines] == [f"req{i:06d}" for i in range(100)]
    assert lines[0]["key_id"] == "key_1" and lines[0]["cost_usd"] == 0.25 and lines[0]["error"] is None


def test_request_log_names_refusal_codes_and_can_be_off(pipe: tuple[int, int]) -> None:
    r, w = pipe
    log = RequestLog(True, fd=w)
    refused = GatewayError(ErrorKind.RATE_LIMITED_REQUESTS, "slow down", code="key_rpm_exceeded")
    log.log(_ctx(1, refused), 0.2, None)
    log.log(_ctx(2, GatewayError(ErrorKind.INSUFFICIENT_QUOTA, "no money")), 0.2, None)
    log.log(_ctx(3, RuntimeError("bug")), 0.2, None)
    log.flush()
    errors = [orjson.loads(x)["error"] for x in os.read(r, 65536).splitlines()]
    assert errors == ["key_rpm_exceeded", "insufficient_quota", "RuntimeError"]
    off = RequestLog(False, fd=w, max_buffer=1)  # would flush at once if it buffered anything
    off.log(_ctx(4), 0.2, None)
    off.flush()
    log.log(_ctx(5), 0.2, None)
    log.flush()
    assert [orjson.loads(x)["request_id"] for x in os.read(r, 65536).splitlines()] == ["req000005"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),
        ("00-xyz-00f067aa0ba902b7-01", None),
        ("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", None),
        ("garbage", None),
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None),  # version ff is invalid
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", None),  # all-zero parent id
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01", None),  # parent id not hex
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", None),  # version 00 has four fields
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", None),  # flags are two hex digits
    ],
)
def test_traceparent(header: str, expected: str | None) -> None:
    assert trace_id(header) == expected


def test_request_log_time_is_isoformat_in_milliseconds() -> None:
    log = RequestLog(True)
    for _ in range(3):
        before = datetime.now(UTC)
        stamp = log._now()
        after = datetime.now(UTC)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", stamp), stamp
        assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= datetime.fromisoformat(stamp) <= after
        time.sleep(0.4)  # across a second: the cached prefix moves on
