"""Starting the real gateway as a subprocess on a free port (as granian's own tests do)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def child_pids(pid: int) -> list[int]:
    """The child processes of ``pid``, read from each of its threads' ``children`` file.

    A thread that exits between the directory listing and the read is skipped: the
    children it had are re-parented to the process and show up under another thread.
    """
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Gateway:
    """A ``ferrogate serve`` process; ``url`` is its base URL."""

    def __init__(
        self,
        tmp: Path,
        config: str | None,
        workers: int = 1,
        env: dict[str, str] | None = None,
        dev: bool = True,
        database_url: str | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"gateway-{self.port}.log"
        args = [
            sys.executable,
            "-m",
            "ferrogate",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
        ]
        if dev:
            args.append("--dev")
        if config is not None:
            cfg = tmp / f"config-{self.port}.yaml"
            cfg.write_text(config)
            args += ["--config", str(cfg)]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("FERROGATE_", "OPENAI_"))}
        full_env["FERROGATE_DATABASE_URL"] = database_url or f"sqlite:///{tmp}/store-{self.port}.db"
        full_env.update(env or {})
        self.master_key = full_env.get("FERROGATE_MASTER_KEY")
        self._log = self.log_path.open("ab")
        # started from its own directory (the journal, .ferrogate/spool, lands there: one per test, as one per
        # store in production) and in its own process group, so a test can kill it whole (kill())
        self.proc = subprocess.Popen(
            args, env=full_env, stdout=self._log, stderr=subprocess.STDOUT, cwd=tmp, start_new_session=True
        )

    def wait_ready(self, timeout: float = 20.0) -> Gateway:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log()
                self.kill()
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{log}")
            try:
                if httpx.get(f"{self.url}/health", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        log = self.log()
        self.kill()  # never leave a half-started gateway behind
        raise RuntimeError(f"gateway did not become healthy:\n{log}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole process group (server and workers at once: what an OOM kill or a node failure does)."""
        with contextlib.suppress(ProcessLookupError):  # the group may outlive its leader: workers left behind
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._log.close()

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its workers too (its own process group)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def admin(gw: Gateway, method: str, path: str, body: Any = None) -> Any:
    """Call ``/admin/v1{path}`` on ``gw`` with its master key; the JSON answer (the status must be a 2xx)."""
    headers = {"Authorization": f"Bearer {gw.master_key}"}
    resp = httpx.request(method, f"{gw.url}/admin/v1{path}", json=body, headers=headers, timeout=10)
    assert resp.status_code < 300, resp.text
    return resp.json()
