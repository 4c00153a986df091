"""The release wheel, installed into a fresh venv and started from an empty directory outside the repository,
prices gpt-4o-mini from the price table packaged inside it (issue 13: prices travel with the package).

Slow (a release wheel build, cached by the same Cargo target directory as ``maturin develop --release``; a
venv; ``pip install`` of the dependencies): ``pytest -m slow`` selects it, ``-m "not slow"`` leaves it out.
Skipped only when maturin is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
DEV_MASTER = {"Authorization": "Bearer fg-dev-master-key-insecure"}
CONFIG = """
upstreams: [{name: mock, provider: mock, mock: {words: 7}}]
model_groups: [{name: gpt-4o-mini, deployments: [{upstream: mock}]}]
metering: {interval_s: 0.05}
"""


def clean_env() -> dict[str, str]:
    """The environment without this checkout's venv or ferrogate settings (so nothing points at the repository)."""
    drop = ("FERROGATE_", "PYTHON", "VIRTUAL_ENV", "OPENAI_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT)))
    return env


def step(args: list[str], cwd: Path, timeout: float) -> None:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=clean_env())
    assert done.returncode == 0, f"{args[:3]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_wheel_installed_in_a_fresh_venv_prices_gpt_4o_mini(tmp_path: Path) -> None:
    maturin = shutil.which("maturin", path=str(Path(sys.executable).parent)) or shutil.which("maturin")
    if maturin is None:
        pytest.skip("maturin is not installed")
    dist, venv, empty = tmp_path / "dist", tmp_path / "venv", tmp_path / "run"
    empty.mkdir()
    # the repository's own target directory (Cargo's default): the release build of `make install` is reused
    step([maturin, "build", "--release", "--quiet", "--out", str(dist)], ROOT, 150)
    (wheel,) = dist.glob("ferrogate-*.whl")
    step([sys.executable, "-m", "venv", str(venv)], tmp_path, 60)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    step([*pip, "install", str(wheel)], tmp_path, 150)

    (empty / "gateway.yaml").write_text(CONFIG)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [str(venv / "bin" / "ferrogate"), "serve", "--dev", "--host", "127.0.0.1", "--port", str(port)]
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([*args, "--config", "gateway.yaml"], cwd=empty, env=clean_env(), stdout=log, stderr=log)
    try:
        wait_healthy(url, proc, log_path)
        team = admin(url, "POST", "/teams", {"name": "wheel", "budget": 1})  # a budget: refused if unpriced
        key = admin(url, "POST", "/keys", {"name": "wheel", "team_id": team["id"]})["key"]
        with openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0) as sdk:
            reply = sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert reply.usage is not None
        prompt, completion = reply.usage.prompt_tokens, reply.usage.completion_tokens
        assert prompt > 0 and completion > 0
        row = usage_row(url)
        assert (row["group"], row["requests"], row["unpriced_requests"]) == ("gpt-4o-mini", 1, 0)
        assert row["cost_usd"] == pytest.approx((prompt * 0.15 + completion * 0.6) / 1e6, rel=1e-9)
    finally:
        proc.terminate()
        proc.wait(30)
    text = log_path.read_text(errors="replace")
    assert "no price for" not in text, text
    assert str(ROOT) not in text  # nothing was loaded from the checkout


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log_path.read_text(errors="replace")
        try:
            if httpx.get(f"{url}/health", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the installed gateway did not become healthy:\n{log_path.read_text(errors='replace')}")


def admin(url: str, method: str, path: str, body: object = None) -> dict[str, object]:
    resp = httpx.request(method, f"{url}/admin/v1{path}", json=body, headers=DEV_MASTER, timeout=10)
    assert resp.status_code < 300, resp.text
    data: dict[str, object] = resp.json()
    return data


def usage_row(url: str) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while True:  # usage records are written in batches every 50 ms
        rows = admin(url, "GET", "/usage?group_by=model")["data"]
        assert isinstance(rows, list)
        if rows or time.monotonic() > deadline:
            assert len(rows) == 1, rows
            row: dict[str, object] = rows[0]
            return row
        time.sleep(0.1)
