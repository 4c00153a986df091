"""Shared by the HTTP fuzz tests: a gateway of their own, with a memory ceiling, and the checks.

The fuzz tests send generated requests to a real ``ferrogate serve`` and collect every answer
that breaks a rule (a 5xx, an error body not in OpenAI's shape, a dead worker) instead of
stopping at the first: one run reports every class of failure, smallest input first. The
worker's address space is capped (``RLIMIT_AS``) so a request that makes the gateway allocate
without bound fails that request, not the machine the suite runs on.

``FERROGATE_FUZZ_EXAMPLES`` sets the number of examples per test (``make fuzz`` raises it).
"""

from __future__ import annotations

import json
import os
import re
import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, settings

from tests.support import Gateway, child_pids

MASTER_KEY = "fg-dev-master-key-insecure"
RSS_GROWTH_BOUND = 200 * 1024 * 1024
ADDRESS_SPACE_HEADROOM = 1024 * 1024 * 1024
_REQUEST_ID = re.compile(r"request id (\w+)")


def examples(default: int) -> int:
    """Examples per fuzz test: ``default``, or ``FERROGATE_FUZZ_EXAMPLES`` when set."""
    return int(os.environ.get("FERROGATE_FUZZ_EXAMPLES", default))


def fuzz_settings(default: int) -> settings:
    """Hypothesis settings of a fuzz test: bounded, no deadline, no database in the repository."""
    return settings(
        max_examples=examples(default),
        deadline=None,
        database=None,
        derandomize="FERROGATE_FUZZ_EXAMPLES" not in os.environ,  # the suite's run is reproducible
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def _status_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` in bytes (``VmRSS``)."""
    return _status_kb(pid, "VmRSS") * 1024


@dataclass
class Failure:
    """One answer that broke a rule."""

    rule: str
    request: str
    status: int | None
    detail: str

    def __str__(self) -> str:
        return f"[{self.rule}] status {self.status}: {self.detail}\n    request: {self.request}"


@dataclass
class Target:
    """The gateway under fuzz, its worker, and the failures seen so far."""

    gateway: Gateway
    worker: int
    rss_before: int
    failures: list[Failure] = field(default_factory=list)
    sent: int = 0

    @classmethod
    def start(cls, tmp: Path, config: str) -> Target:
        gateway = Gateway(tmp, config).wait_ready()
        workers = child_pids(gateway.proc.pid)
        assert len(workers) == 1, f"expected one worker, found {workers}"
        for pid in [gateway.proc.pid, *workers]:
            ceiling = _status_kb(pid, "VmSize") * 1024 + ADDRESS_SPACE_HEADROOM
            resource.prlimit(pid, resource.RLIMIT_AS, (ceiling, ceiling))
        client = httpx.Client(base_url=gateway.url, timeout=10)
        with client:  # warm up the paths so the memory baseline is not the first request's
            client.post("/v1/chat/completions", json={"model": "mock", "messages": [{"role": "user", "content": "hi"}]})
            client.get("/admin/v1/teams", headers={"Authorization": f"Bearer {MASTER_KEY}"})
        return cls(gateway, workers[0], rss_bytes(workers[0]))

    def begin(self) -> None:
        """Forget the failures and counts of an earlier test."""
        self.failures.clear()
        self.sent = 0

    def alive(self) -> bool:
        return self.gateway.proc.poll() is None and Path(f"/proc/{self.worker}").exists()

    def send(
        self, client: httpx.Client, method: str, path: str, body: bytes | None, headers: dict[str, str] | None = None
    ) -> httpx.Response | None:
        """Send one request; record a failure for a 5xx, a malformed error, or no answer."""
        shown = f"{method} {path} " + (repr(body[:300]) + ("..." if len(body) > 300 else "") if body else "")
        self.sent += 1
        try:
            resp = client.request(method, path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            self.failures.append(Failure("no answer", shown, None, f"{type(exc).__name__}: {exc}"))
            if not self.alive():
                raise AssertionError("the gateway died:\n" + "\n".join(map(str, self.failures))) from exc
            return None
        if resp.status_code >= 500:
            self.failures.append(Failure("5xx", shown, resp.status_code, resp.text[:300]))
        elif resp.status_code >= 400:
            problem = error_shape_problem(resp)
            if problem:
                self.failures.append(Failure("error shape", shown, resp.status_code, problem))
        elif b'"internal_error"' in resp.content:
            self.failures.append(Failure("error in a 2xx body", shown, resp.status_code, resp.text[-300:]))
        return resp

    def _explain(self, failure: Failure, log: list[str]) -> str:
        """The exception the log names for a 5xx (``"error"`` of its request log line), before its body."""
        found = _REQUEST_ID.search(failure.detail)
        for line in log if found else []:
            if found and found.group(1) in line and '"logger":"ferrogate.request"' in line:
                try:
                    return f"{json.loads(line).get('error')}: {failure.detail}"
                except ValueError:
                    break
        return failure.detail

    def check_health(self, client: httpx.Client) -> None:
        """The worker is the same process, answers ``/health``, and its memory stayed bounded."""
        assert self.alive(), "the gateway or its worker died"
        assert client.get("/health").status_code == 200
        assert child_pids(self.gateway.proc.pid) == [self.worker], "the worker was replaced: it died"
        grown = rss_bytes(self.worker) - self.rss_before
        assert grown < RSS_GROWTH_BOUND, f"worker RSS grew by {grown / 2**20:.0f} MiB over the run"

    def report(self) -> str:
        """The failures, deduplicated by rule, status and detail's first words; smallest request first."""
        log = self.gateway.log().splitlines()
        for failure in self.failures:
            failure.detail = self._explain(failure, log)
        seen: dict[tuple[str, int | None, str], Failure] = {}
        for failure in sorted(self.failures, key=lambda f: len(f.request)):
            seen.setdefault((failure.rule, failure.status, failure.detail.split(":")[0][:40]), failure)
        lines = [f"{len(self.failures)} of {self.sent} requests broke a rule ({len(seen)} distinct):"]
        lines += [str(failure) for failure in list(seen.values())[:40]]
        return "\n".join(lines)


def error_shape_problem(resp: httpx.Response) -> str | None:
    """What is wrong with a 4xx body, or ``None`` if it is OpenAI's error shape."""
    try:
        body: Any = resp.json()
    except ValueError:
        return f"not JSON: {resp.text[:200]!r}"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or set(error) != {"message", "type", "param", "code"}:
        return f"not {{'error': {{message, type, param, code}}}}: {resp.text[:200]}"
    if not isinstance(error["message"], str) or not error["message"]:
        return f"empty message: {resp.text[:200]}"
    if not isinstance(error["type"], str) or not (error["param"] is None or isinstance(error["param"], str)):
        return f"type/param of the wrong type: {resp.text[:200]}"
    return None
