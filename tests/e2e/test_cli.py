"""The ``ferrogate`` command: version, config check, serve's start-up refusals, shutdown."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson

from tests.fakes.openai_upstream import WORDS, FakeUpstream
from tests.support import Gateway

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "example.yaml"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferrogate", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_version() -> None:
    out = run("version")
    assert out.returncode == 0
    assert out.stdout.startswith("ferrogate ")
    assert "core " in out.stdout


def test_config_check_accepts_the_example() -> None:
    env = {"OPENAI_API_KEY": "sk-x", "OPENROUTER_API_KEY": "sk-y", "PATH": "/usr/bin"}
    out = run("config", "check", str(EXAMPLE), env=env)
    assert out.returncode == 0, out.stderr
    assert "ok (" in out.stdout


BAD_CONFIG = """
upstreams:
  - name: a
    provider: openai
    base_url: ftp://nope
    timeouts: {connect_s: -1}
  - name: b
    provider: bogus
  - name: c
    provider: openai
    base_url: http://x/v1
    api_key: ${FERROGATE_TEST_UNSET_VAR}
model_groups:
  - name: m
    deployments: []
    colour: red
"""


def test_config_check_names_every_bad_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(BAD_CONFIG)
    out = run("config", "check", str(cfg))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    for path in [
        "upstreams[0].base_url",
        "upstreams[0].timeouts.connect_s",
        "upstreams[1].provider",
        "upstreams[2].api_key: environment variable FERROGATE_TEST_UNSET_VAR is not set",
    ]:
        assert path in out.stderr, out.stderr


def test_config_check_names_schema_paths(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "upstreams: [{name: a, provider: mock}]\nmodel_groups:\n  - {name: m, deployments: [], colour: red}\n"
    )
    out = run("config", "check", str(cfg))
    assert out.returncode == 1
    assert "model_groups[0].deployments" in out.stderr
    assert "model_groups[0].colour: Extra inputs are not permitted" in out.stderr


def test_config_check_unknown_upstream_reference(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("upstreams: [{name: a, provider: mock}]\nmodel_groups: [{name: m, deployments: [{upstream: z}]}]\n")
    out = run("config", "check", str(cfg))
    assert out.returncode == 1
    assert "model_groups[0].deployments[0].upstream: unknown upstream 'z'" in out.stderr


def test_serve_refuses_an_invalid_config_without_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("server: {max_body_bytes: 10}\n")
    out = run("serve", "--dev", "--port", "1", "--config", str(cfg))
    assert out.returncode == 1
    assert "server.max_body_bytes" in out.stderr
    assert "Traceback" not in out.stderr


def test_serve_refuses_an_unsupported_database_url() -> None:
    import os

    env = {**os.environ, "FERROGATE_DATABASE_URL": "mysql://x"}
    out = run("serve", "--dev", "--port", "1", env=env)
    assert out.returncode == 1
    assert "FERROGATE_DATABASE_URL" in out.stderr


def test_default_config_serves_mock_and_openai_models_when_keyed(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, None, env={"OPENAI_API_KEY": "sk-test"}).wait_ready()
    try:
        ids = [m["id"] for m in httpx.get(f"{gw.url}/v1/models").json()["data"]]
    finally:
        assert gw.stop() == 0
    assert ids[0] == "mock"
    assert "gpt-4o-mini" in ids


def test_sigterm_lets_an_in_flight_stream_finish(tmp_path: Path, upstream: FakeUpstream) -> None:
    config = f"""
server: {{grace_period_s: 10}}
upstreams: [{{name: fake, provider: openai, base_url: "http://127.0.0.1:{upstream.port}/v1"}}]
model_groups: [{{name: slow, deployments: [{{upstream: fake, model: slow-stream}}]}}]
"""
    gw = Gateway(tmp_path, config).wait_ready()
    got: list[str] = []
    body = orjson.dumps({"model": "slow", "messages": [{"role": "user", "content": "hi"}], "stream": True})

    def consume() -> None:
        with httpx.stream("POST", f"{gw.url}/v1/chat/completions", content=body, timeout=20) as r:
            got.extend(line for line in r.iter_lines() if line.startswith("data: "))

    reader = threading.Thread(target=consume)
    reader.start()
    time.sleep(0.5)  # the stream is under way (5 chunks, 0.3 s apart)
    gw.proc.send_signal(signal.SIGTERM)
    reader.join(20)
    code = gw.proc.wait(20)
    assert got[-1] == "data: [DONE]"
    text = "".join(orjson.loads(e[6:])["choices"][0]["delta"].get("content") or "" for e in got[:-1])
    assert text == "".join(WORDS[:5])
    assert code == 0
    gw.stop()


def test_two_workers_serve(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, None, workers=2).wait_ready()
    try:
        body = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client() as c:
            statuses = {c.post(f"{gw.url}/v1/chat/completions", json=body).status_code for _ in range(20)}
    finally:
        assert gw.stop() == 0
    assert statuses == {200}


def test_serve_refuses_to_start_without_a_master_key() -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("FERROGATE_")}
    out = run("serve", "--port", "1", env=env)
    assert out.returncode == 1
    assert "FERROGATE_MASTER_KEY is not set" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_main_process_is_a_small_supervisor_that_cleans_up(tmp_path: Path) -> None:
    """After its checks, ``serve`` replaces itself (same PID) with ``ferrogate.server.supervise``: the main process
    then maps neither the Rust core nor the application (its worker does), and at exit it still removes what the
    instance created (the circuit-breaker table)."""
    from ferrogate.routing.health import table_path
    from tests.support import child_pids

    gw = Gateway(tmp_path, None).wait_ready()
    circuits = table_path(str(gw.port))
    try:
        main = gw.proc.pid
        assert b"ferrogate.server.supervise" in Path(f"/proc/{main}/cmdline").read_bytes().split(b"\0")
        assert "_core.abi3.so" not in Path(f"/proc/{main}/maps").read_text()
        worker_maps = [Path(f"/proc/{pid}/maps").read_text() for pid in child_pids(main)]
        assert any("_core.abi3.so" in maps for maps in worker_maps)
        body = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=10).status_code == 200
        assert circuits.exists()
    finally:
        assert gw.stop() == 0
    assert not circuits.exists()


def test_sigterm_while_a_worker_is_starting_stops_the_instance_at_once(tmp_path: Path) -> None:
    """A stop that reaches a worker while it is still importing the application ends it (it has served nothing),
    instead of being lost until the kill timeout (``server.grace_period_s`` + 5 s) ends it."""
    gw = Gateway(tmp_path, None, workers=2)
    deadline = time.monotonic() + 30
    while "Spawning worker-2" not in gw.log():  # the workers are importing the application now
        assert gw.proc.poll() is None and time.monotonic() < deadline, gw.log()
        time.sleep(0.01)
    gw.proc.send_signal(signal.SIGTERM)
    try:
        gw.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        gw.kill()
        raise AssertionError(f"the instance did not stop within 15 s of SIGTERM:\n{gw.log()}") from None
    gw.stop()
    assert gw.proc.returncode == 0, gw.log()
