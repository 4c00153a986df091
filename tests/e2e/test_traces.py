"""OpenTelemetry traces of a real server, exported over OTLP/HTTP to an in-process collector.

The collector decodes each ``ExportTraceServiceRequest`` with opentelemetry-proto; the tests check the GenAI
attributes, the SERVER/CLIENT linkage, the client's trace id kept, ``x-trace-id`` and the ``traceparent``
the fake upstream received. Without an endpoint no tracer exists and a client's traceparent is forwarded.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.conftest import gateway_config
from tests.fakes.openai_upstream import FakeUpstream
from tests.support import Gateway

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
MESSAGES = [{"role": "user", "content": "Say hello."}]


class Collector:
    """An OTLP/HTTP trace receiver on 127.0.0.1: ``spans`` holds (resource attributes, span) pairs."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], Span]] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest.FromString(body)
                with collector.lock:
                    for rs in request.resource_spans:
                        resource = {a.key: _value(a.value) for a in rs.resource.attributes}
                        for ss in rs.scope_spans:
                            collector.spans.extend((resource, span) for span in ss.spans)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def trace(self, trace_id: str, n: int = 2, timeout: float = 10.0) -> list[Span]:
        """The spans of ``trace_id``, once ``n`` of them have arrived."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = [s for _, s in self.spans if s.trace_id.hex() == trace_id]
            if len(found) >= n or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(value: AnyValue) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


def attrs(span: Span) -> dict[str, Any]:
    return {a.key: _value(a.value) for a in span.attributes}


def pair(spans: list[Span]) -> tuple[Span, Span]:
    """The SERVER span and its one CLIENT child."""
    (server,) = [s for s in spans if s.kind == Span.SPAN_KIND_SERVER]
    (client,) = [s for s in spans if s.kind == Span.SPAN_KIND_CLIENT]
    assert client.parent_span_id == server.span_id
    assert client.start_time_unix_nano >= server.start_time_unix_nano
    assert client.end_time_unix_nano <= server.end_time_unix_nano
    return server, client


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


@pytest.fixture(scope="module")
def traced(collector: Collector, upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("traces")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    gw = Gateway(tmp, gateway_config(upstream.port), env=env).wait_ready()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def sdk(traced: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{traced.url}/v1", api_key="unused", max_retries=0) as client:
        yield client


def test_non_streaming_keeps_the_clients_trace(sdk: openai.OpenAI, collector: Collector) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="mock",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=5,
        extra_headers={"traceparent": TRACEPARENT, "x-request-id": "client-rid-1"},
    )
    reply = raw.parse()
    assert raw.headers["x-trace-id"] == TRACE_ID
    assert reply.usage is not None
    server, client = pair(collector.trace(TRACE_ID))
    assert server.parent_span_id.hex() == PARENT_ID  # a child of the client's span
    assert server.name == "chat mock" and client.name == "chat mock"
    sa = attrs(server)
    assert sa["gen_ai.operation.name"] == "chat"
    assert sa["gen_ai.request.model"] == "mock"
    assert sa["gen_ai.response.model"] == "mock"
    assert sa["gen_ai.request.max_tokens"] == 5
    assert sa["gen_ai.request.stream"] is False
    assert sa["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert sa["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens == 5
    assert sa["http.response.status_code"] == 200 and sa["ferrogate.status"] == 200
    assert sa["ferrogate.client_request_id"] == "client-rid-1"
    assert len(sa["ferrogate.request_id"]) == 24
    assert sa["ferrogate.key_id"] == "dev" and "ferrogate.team_id" not in sa  # --dev: the anonymous identity
    assert server.status.code != Status.STATUS_CODE_ERROR
    ca = attrs(client)
    assert (ca["gen_ai.provider.name"], ca["gen_ai.system"], ca["gen_ai.request.model"]) == ("mock", "mock", "mock")
    assert ca["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens
    resources = [r for r, s in collector.spans if s.span_id == server.span_id]
    assert resources[0]["service.name"] == "ferrogate"


def test_streaming_gets_a_new_root(sdk: openai.OpenAI, collector: Collector) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="mock",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    trace_id = raw.headers["x-trace-id"]
    assert len(trace_id) == 32 and int(trace_id, 16) and trace_id != TRACE_ID
    usage = [c.usage for c in raw.parse() if c.usage is not None]
    assert len(usage) == 1
    server, client = pair(collector.trace(trace_id))
    assert server.parent_span_id == b""  # a root
    sa = attrs(server)
    assert sa["gen_ai.request.stream"] is True
    assert sa["gen_ai.usage.input_tokens"] == usage[0].prompt_tokens
    assert sa["gen_ai.usage.output_tokens"] == usage[0].completion_tokens
    assert sa["gen_ai.response.model"] == "mock"
    assert attrs(client)["gen_ai.usage.output_tokens"] == usage[0].completion_tokens


def test_the_client_span_covers_the_relay(sdk: openai.OpenAI, collector: Collector) -> None:
    raw = sdk.chat.completions.with_raw_response.create(model="fake-slow-stream", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    started = time.monotonic()
    chunks = list(raw.parse())
    relay_s = time.monotonic() - started
    assert len(chunks) >= 5 and relay_s > 1.0  # 5 chunks, 0.3 s apart, after the head
    _, client = pair(collector.trace(raw.headers["x-trace-id"]))
    assert (client.end_time_unix_nano - client.start_time_unix_nano) / 1e9 >= 1.2
    assert attrs(client)["gen_ai.response.model"] == "slow-stream"


def test_upstream_receives_the_client_spans_traceparent(
    sdk: openai.OpenAI, collector: Collector, upstream: FakeUpstream
) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    raw = sdk.chat.completions.with_raw_response.create(
        model="fake-echo",
        messages=MESSAGES,  # type: ignore[arg-type]
        extra_headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01", "tracestate": "congo=t61rcWkgMzE,rojo=1"},
    )
    assert raw.headers["x-trace-id"] == trace_id
    sent = upstream.requests[-1]["headers"]["traceparent"]
    assert upstream.requests[-1]["headers"]["tracestate"] == "congo=t61rcWkgMzE,rojo=1"  # the vendors' entries go on
    server, client = pair(collector.trace(trace_id))
    assert sent == f"00-{trace_id}-{client.span_id.hex()}-01"
    assert client.name == "chat echo" and server.name == "chat fake-echo"
    ca = attrs(client)
    assert (ca["gen_ai.provider.name"], ca["gen_ai.system"]) == ("openai", "openai")
    assert (ca["server.address"], ca["server.port"]) == ("127.0.0.1", upstream.port)
    assert ca["gen_ai.usage.input_tokens"] == 11 and ca["gen_ai.usage.output_tokens"] == 6  # the fake's usage
    assert ca["http.response.status_code"] == 200


@pytest.mark.parametrize(
    ("model", "status", "code"), [("gone", 502, "upstream_unreachable"), ("fake-fail-500", 500, "fake")]
)
def test_failures_mark_the_spans(traced: Gateway, collector: Collector, model: str, status: int, code: str) -> None:
    resp = httpx.post(f"{traced.url}/v1/chat/completions", json={"model": model, "messages": MESSAGES}, timeout=10)
    assert resp.status_code == status
    assert resp.json()["error"]["code"] == code
    server, client = pair(collector.trace(resp.headers["x-trace-id"]))
    # a gateway refusal carries its OpenAI code; an upstream error passed through, its status
    expected = code if model == "gone" else "500"
    for span in (server, client):
        assert span.status.code == Status.STATUS_CODE_ERROR
        assert attrs(span)["error.type"] == expected
    assert attrs(server)["http.response.status_code"] == status


def test_a_refusal_before_the_upstream_has_no_client_span(traced: Gateway, collector: Collector) -> None:
    resp = httpx.post(f"{traced.url}/v1/chat/completions", json={"model": "nope", "messages": MESSAGES}, timeout=10)
    assert resp.status_code == 404
    collector.trace(resp.headers["x-trace-id"], n=1)
    time.sleep(0.3)  # a CLIENT span, if wrongly made, would have arrived with it
    spans = collector.trace(resp.headers["x-trace-id"], n=1)
    assert [s.kind for s in spans] == [Span.SPAN_KIND_SERVER]
    assert attrs(spans[0])["error.type"] == resp.json()["error"]["code"]


def test_untraced_gateway_forwards_the_clients_traceparent(gateway: Gateway, upstream: FakeUpstream) -> None:
    resp = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "fake-echo", "messages": MESSAGES},
        headers={"traceparent": TRACEPARENT, "tracestate": "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"},
        timeout=10,
    )
    assert resp.status_code == 200
    assert resp.headers["x-trace-id"] == TRACE_ID
    assert upstream.requests[-1]["headers"]["traceparent"] == TRACEPARENT  # unchanged
    assert upstream.requests[-1]["headers"]["tracestate"] == "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"
    resp = httpx.post(  # a tracestate sent as two fields goes on as one list
        f"{gateway.url}/v1/chat/completions",
        json={"model": "fake-echo", "messages": MESSAGES},
        headers=[("traceparent", TRACEPARENT), ("tracestate", "congo=1"), ("tracestate", "rojo=2")],
        timeout=10,
    )
    assert upstream.requests[-1]["headers"]["tracestate"] == "congo=1,rojo=2"
    resp = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "fake-echo", "messages": MESSAGES},
        headers={"traceparent": "00-zz-00f067aa0ba902b7-01", "tracestate": "congo=1"},  # malformed: dropped
        timeout=10,
    )
    assert resp.status_code == 200
    assert "x-trace-id" not in resp.headers
    assert "traceparent" not in upstream.requests[-1]["headers"]
    assert "tracestate" not in upstream.requests[-1]["headers"]  # no trace to belong to


_NO_TRACER = """
import asyncio, sys
from ferrogate.config import load_config_text
from ferrogate.server.app import Gateway
from ferrogate.server.settings import Settings
from ferrogate.store import open_store

url = sys.argv[1]
text = "upstreams: [{name: m, provider: mock}]\\nmodel_groups: [{name: mock, deployments: [{upstream: m}]}]\\n"
config = load_config_text(text, "t")
loop = asyncio.new_event_loop()
store = open_store(url)
loop.run_until_complete(store.migrate())
gw = Gateway(config, store, Settings("master-key-0123456789abcdef", True, url, None))
gw.__rsgi_init__(loop)
# redis-py imports opentelemetry's metrics API when installed; the trace SDK and exporter stay unloaded
loaded = {"opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http", "ferrogate.observability.traces"}
print(gw.tracer is None, gw.chat.tracer is None, bool(loaded & set(sys.modules)))
gw.__rsgi_del__(loop)
"""


def test_no_endpoint_no_tracer(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FERROGATE_"))}
    out = subprocess.run(
        [sys.executable, "-c", _NO_TRACER, f"sqlite:///{tmp_path / 's.db'}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "False"]
