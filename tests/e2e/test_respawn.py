"""A dead worker is replaced (issue 13): kill -9 one worker of two under load, the instance keeps answering, a new
worker serves within seconds, ``/ready`` stays 200; a worker that dies in a loop is backed off, not respawned hot,
and not a reason for the server to exit (Granian alone exits on a second death within 5.5 s)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support import Gateway, child_pids

CHAT = {"model": "mock", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def workers(gw: Gateway) -> set[int]:
    """The live worker processes of ``gw`` (children of the server process with its command line, not zombies)."""
    parent = gw.proc.pid
    mine = Path(f"/proc/{parent}/cmdline").read_bytes()
    found = set()
    for pid in child_pids(parent):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z" and Path(f"/proc/{pid}/cmdline").read_bytes() == mine:
                found.add(pid)
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue  # exited while we looked
    return found


def wait_for_workers(gw: Gateway, count: int, without: set[int], timeout: float = 10.0) -> set[int]:
    """Wait until ``gw`` has ``count`` live workers, none of them in ``without``; returns them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = workers(gw)
        if len(now) == count and not now & without:
            return now
        assert gw.proc.poll() is None, f"the server exited:\n{gw.log()}"
        time.sleep(0.02)
    raise AssertionError(f"workers {workers(gw)} (wanted {count}, none of {without}):\n{gw.log()}")


def metrics_dirs(gw: Gateway) -> list[Path]:
    """The instance's Prometheus multiprocess directory (named after its port and the server's pid)."""
    name = f"ferrogate-metrics-{gw.port}-{gw.proc.pid}-*"
    return [*Path("/dev/shm").glob(name), *Path(tempfile.gettempdir()).glob(name)]  # noqa: S108 (only read)


def wait_serving(gw: Gateway, pid: int, timeout: float = 10.0) -> None:
    """Wait for worker ``pid``'s start-up line ("worker <pid> ready")."""
    deadline = time.monotonic() + timeout
    while f"worker {pid} ready" not in gw.log():
        assert time.monotonic() < deadline, f"worker {pid} did not start:\n{gw.log()}"
        time.sleep(0.05)


class Load:
    """Threads sending requests, each on a new connection (so either worker may take it), one at a time."""

    def __init__(self, gw: Gateway, threads: int) -> None:
        self.gw = gw
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.chat: list[tuple[float, int | str]] = []  # (time, status or exception name)
        self.ready: list[tuple[float, int | str]] = []
        self.threads = [threading.Thread(target=self._chat) for _ in range(threads)]
        self.threads.append(threading.Thread(target=self._ready))

    def _send(self, into: list[tuple[float, int | str]], method: str, path: str, body: object = None) -> None:
        try:
            with httpx.Client(timeout=10) as client:
                outcome: int | str = client.request(method, f"{self.gw.url}{path}", json=body).status_code
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        with self.lock:
            into.append((time.monotonic(), outcome))

    def _chat(self) -> None:
        while not self.stop.is_set():
            self._send(self.chat, "POST", "/v1/chat/completions", CHAT)

    def _ready(self) -> None:
        while not self.stop.is_set():
            self._send(self.ready, "GET", "/ready")
            time.sleep(0.05)

    @contextmanager
    def running(self) -> Iterator[Load]:
        for t in self.threads:
            t.start()
        try:
            yield self
        finally:
            self.stop.set()
            for t in self.threads:
                t.join(15)


def served_by(gw: Gateway, pids: set[int], attempts: int = 100) -> dict[int, int]:
    """Chat requests on new connections (the kernel gives each to one worker) until each of ``pids`` has
    answered one; how many each answered. The answering worker is the process holding the server side of
    the connection (its inode in /proc/net/tcp, among the workers' file descriptors)."""
    answered = dict.fromkeys(pids, 0)
    body = json.dumps(CHAT).encode()
    request = b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
    request += b"content-length: %d\r\n\r\n%s" % (len(body), body)
    for _ in range(attempts):
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            sock.sendall(request)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 "), "a chat request failed"
            answered[owner(gw, pids, sock.getsockname()[1])] += 1
        if all(answered.values()):
            break
    return answered


def owner(gw: Gateway, pids: set[int], client_port: int) -> int:
    """Which of ``pids`` holds the server side of the connection from ``client_port`` to ``gw``."""
    local, remote = f"0100007F:{gw.port:04X}", f"0100007F:{client_port:04X}"
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    (inode,) = [f[9] for f in map(str.split, lines) if f[1] == local and f[2] == remote]
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
    raise AssertionError(f"no worker of {pids} holds socket {inode}")


def test_kill_9_of_one_worker_under_load(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, None, workers=2).wait_ready()
    try:
        first = wait_for_workers(gw, 2, set())
        victim, survivor = sorted(first)
        load = Load(gw, threads=2)
        with load.running():
            time.sleep(1.0)
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            (new,) = wait_for_workers(gw, 2, {victim}) - {survivor}
            respawned_at = time.monotonic()
            wait_serving(gw, new)
            time.sleep(1.0)
        assert respawned_at - killed_at < 5  # the default backoff of a young worker: 1 s
        metric_files = [f.name for d in metrics_dirs(gw) for f in d.iterdir()]
        assert any(f.endswith(f"_{survivor}.db") and "live" in f for f in metric_files), metric_files
        assert not [f for f in metric_files if f.endswith(f"_{victim}.db") and "live" in f]  # its gauges dropped
        assert any(f.startswith("counter") and f.endswith(f"_{victim}.db") for f in metric_files)  # counts kept
        answered = served_by(gw, {new, survivor})
        assert answered[new] > 0 and answered[survivor] > 0, answered  # both serve: the new worker too
        assert gw.proc.poll() is None
        assert gw.stop() == 0
    finally:
        gw.stop()
    chat_failed = [o for _, o in load.chat if o != 200]
    ready_failed = [o for _, o in load.ready if o != 200]
    # only what the killed worker had in flight is lost: at most one request per client thread, and no 5xx
    assert all(isinstance(o, str) for o in chat_failed + ready_failed), (chat_failed, ready_failed)
    assert len(chat_failed) <= 2 and len(ready_failed) <= 1, (chat_failed, ready_failed)
    answered_meanwhile = [o for t, o in load.chat if killed_at < t < respawned_at and o == 200]
    assert answered_meanwhile, "the surviving worker answered nothing while the other was replaced"
    assert len([o for t, o in load.chat if t > respawned_at and o == 200]) > 10
    assert len([o for _, o in load.ready if o == 200]) > 10
    log = gw.log()
    assert f"worker-1 (pid {victim})" in log or f"worker-2 (pid {victim})" in log
    assert "exit code -9" in log


def test_a_worker_that_dies_in_a_loop_is_backed_off(tmp_path: Path) -> None:
    config = """
server: {respawn_backoff_s: 0.4, respawn_backoff_max_s: 0.8}
upstreams: [{name: mock, provider: mock}]
model_groups: [{name: mock, deployments: [{upstream: mock}]}]
"""
    gw = Gateway(tmp_path, config, workers=1).wait_ready()
    try:
        (pid,) = wait_for_workers(gw, 1, set())
        waits = []
        for _ in range(3):  # each worker dies right after it started: 0.4 s, then 0.8 s, then 0.8 s (the cap)
            wait_serving(gw, pid)
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            (pid,) = wait_for_workers(gw, 1, {pid})
            waits.append(time.monotonic() - killed_at)
        wait_serving(gw, pid)
        assert httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, timeout=10).status_code == 200
        assert httpx.get(f"{gw.url}/ready", timeout=10).status_code == 200
        assert gw.stop() == 0
    finally:
        gw.stop()
    assert [w >= d for w, d in zip(waits, (0.4, 0.8, 0.8), strict=True)] == [True] * 3, waits
    assert all(w < d + 3 for w, d in zip(waits, (0.4, 0.8, 0.8), strict=True)), waits
    log = gw.log()
    assert "in 0.4 s (quick death 1 in a row)" in log and "in 0.8 s (quick death 3 in a row)" in log
    assert "crash loop detected" not in log


def test_a_shutdown_during_a_backoff_is_prompt(tmp_path: Path) -> None:
    config = """
server: {respawn_backoff_s: 30}
upstreams: [{name: mock, provider: mock}]
model_groups: [{name: mock, deployments: [{upstream: mock}]}]
"""
    gw = Gateway(tmp_path, config, workers=1).wait_ready()
    try:
        (pid,) = wait_for_workers(gw, 1, set())
        wait_serving(gw, pid)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while "respawning it in 30.0 s" not in gw.log():
            assert time.monotonic() < deadline, gw.log()
            time.sleep(0.05)
        stopped_at = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(10) == 0
        assert time.monotonic() - stopped_at < 5
    finally:
        gw.stop()


def test_a_worker_that_dies_during_another_ones_backoff_is_not_kept_waiting(tmp_path: Path) -> None:
    config = """
server: {respawn_backoff_s: 0.3, respawn_backoff_max_s: 30}
upstreams: [{name: mock, provider: mock}]
model_groups: [{name: mock, deployments: [{upstream: mock}]}]
"""
    gw = Gateway(tmp_path, config, workers=2).wait_ready()
    try:
        pids = wait_for_workers(gw, 2, set())
        looping, other = sorted(pids)
        for _ in range(5):  # one worker in a crash loop: its backoff grows to 0.3 * 2**4 = 4.8 s
            os.kill(looping, signal.SIGKILL)
            before = pids
            pids = wait_for_workers(gw, 2, {looping}, timeout=20)
            (looping,) = pids - (before - {looping})
        os.kill(looping, signal.SIGKILL)  # its sixth quick death: 9.6 s
        deadline = time.monotonic() + 10
        while "in 9.6 s (quick death 6 in a row)" not in gw.log():
            assert time.monotonic() < deadline, gw.log()
            time.sleep(0.05)
        killed_at = time.monotonic()
        os.kill(other, signal.SIGKILL)  # its first quick death: 0.3 s, not after the other's 9.6 s
        (replaced,) = wait_for_workers(gw, 1, {looping, other}, timeout=5)
        assert time.monotonic() - killed_at < 3  # while the looping one still waits out its 9.6 s
        wait_serving(gw, replaced)
        assert httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, timeout=10).status_code == 200
    finally:
        gw.stop()
