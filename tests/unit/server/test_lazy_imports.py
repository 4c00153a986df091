"""A worker imports only what its configuration uses: without an MCP server, no MCP SDK (~55 MB with its
dependencies) and no ``cryptography`` (only for sealed MCP credentials)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

PROBE = """
import asyncio, os, sys, orjson
from ferrogate.manage import prepare_store
asyncio.run(prepare_store(os.environ["FERROGATE_DATABASE_URL"]))
from ferrogate.server.app import create_app
gateway = create_app()
loop = asyncio.new_event_loop()
gateway.__rsgi_init__(loop)
print(orjson.dumps(sorted(m for m in ("mcp", "mcp_types", "cryptography") if m in sys.modules)).decode())
"""


def _loaded(tmp_path: Path, config: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERROGATE_")}
    env.update(FERROGATE_DEV="1", FERROGATE_DATABASE_URL=f"sqlite:///{tmp_path}/store.db")
    if config is not None:
        path = tmp_path / "config.yaml"
        path.write_text(config)
        env["FERROGATE_CONFIG"] = str(path)
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    loaded: list[str] = orjson.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_the_default_worker_loads_no_mcp_sdk_and_no_cryptography(tmp_path: Path) -> None:
    assert _loaded(tmp_path, None) == []


def test_a_configured_mcp_server_loads_the_sdk(tmp_path: Path) -> None:
    config = "mcp:\n  servers:\n    - {id: files, transport: stdio, command: /bin/false}\n"
    assert set(_loaded(tmp_path, config)) >= {"mcp", "mcp_types"}
