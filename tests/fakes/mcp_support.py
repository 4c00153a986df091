"""Starting the fake MCP servers of :mod:`tests.fakes.mcp_servers` from tests.

``start_http_server("modern")`` starts one on a free port and returns ``(proc, url)`` once it printed
``READY <port>``; ``stop_server(proc)`` ends it by its PID. ``stdio_params()`` is what a stdio server's
configuration needs (the worker starts and ends that process itself).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MODULE = "tests.fakes.mcp_servers"


def _flags(opts: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for name, value in opts.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        out += [flag] if value is True else [flag, str(value)]
    return out


def start_http_server(generation: str, port: int = 0, *, timeout_s: float = 15.0, **opts: Any) -> tuple[Any, str]:
    """Start an HTTP fake (``legacy``, ``modern`` or ``both``); ``(proc, "http://127.0.0.1:<port>/mcp")``.

    ``opts``: ``tools=N``, ``name=...``, ``variant=...``, ``record=path``, ``sse=True``.
    """
    args = [sys.executable, "-m", MODULE, "--transport", "http", "--generation", generation, "--port", str(port)]
    proc = subprocess.Popen([*args, *_flags(opts)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    line = ""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while not line.startswith("READY ") and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if sel.select(timeout=0.1):
                line = proc.stdout.readline()
                if not line:
                    break
    proc.stdout.close()
    if not line.startswith("READY "):
        stop_server(proc)
        raise RuntimeError(f"the fake MCP server did not start (exit code {proc.returncode})")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/mcp"


def stop_server(proc: Any, timeout_s: float = 5.0) -> None:
    """End a fake started by :func:`start_http_server`, by its PID (SIGTERM, then SIGKILL)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout_s)


@contextlib.contextmanager
def http_server(generation: str, port: int = 0, **opts: Any) -> Iterator[str]:
    """:func:`start_http_server` as a context manager yielding the URL."""
    proc, url = start_http_server(generation, port, **opts)
    try:
        yield url
    finally:
        stop_server(proc)


def stdio_params(**opts: Any) -> dict[str, Any]:
    """``command``, ``args`` and ``cwd`` of a stdio fake (``opts`` as :func:`start_http_server`'s)."""
    return {"command": sys.executable, "args": ["-m", MODULE, "--transport", "stdio", *_flags(opts)], "cwd": str(ROOT)}


def port_of(url: str) -> int:
    """The port of a fake's URL (to start another on the same port)."""
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])
