"""The mock upstream: nginx from Debian serving a fixed chat completion and a fixed SSE stream.

Routes (any method):
    POST /v1/chat/completions      -> nginx/chat_completion.json (application/json, with usage)
    POST /sse/v1/chat/completions  -> nginx/chat_stream.sse (text/event-stream, one flushed chunk per event
                                      when the echo module is there, otherwise one write)
    POST /anthropic/v1/messages    -> nginx/anthropic_stream.sse (an Anthropic Messages stream with the same text,
                                      written like the SSE route; gateway base_url http://127.0.0.1:PORT/anthropic/v1)
    GET  /v1/models, /sse/v1/models -> nginx/models.json

nginx runs in the foreground (daemon off) with one worker, its own prefix, pid file and temp dirs in a
temporary folder, and is stopped by PID.

Example:
    python load/upstream.py --port 8081 --cpu 1 --seconds 60   # serve for a minute, then stop
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import procs

HERE = Path(__file__).resolve().parent / "nginx"
ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")


def _quote(text: str) -> str:
    """Body as the inside of a single-quoted nginx string (nginx turns \\n back into a newline)."""
    if "$" in text:
        raise ValueError("nginx would read '$' in a body as a variable")
    return text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")


def _stream_directives(sse: str, per_event: bool) -> str:
    """The nginx directives that answer with an SSE stream: one echo + echo_flush per event, or one return."""
    if not per_event:
        return f"            return 200 '{_quote(sse)}';"
    events = [e + "\n\n" for e in sse.split("\n\n") if e]
    lines = [f"            echo -n '{_quote(e)}';\n            echo_flush;" for e in events]
    return "            echo_read_request_body;\n" + "\n".join(lines)


def render(port: int, prefix: Path, sse_writes: str = "event") -> str:
    """The nginx.conf for this port and prefix, bodies inlined from the payload files.

    sse_writes "event" flushes every SSE event as its own chunk (like a real model streaming); "single"
    sends the whole stream in one write (cheaper for nginx, one chunk for the proxy).
    """
    per_event = sse_writes == "event" and ECHO_MODULE.exists()
    values = {
        "@LOAD_ECHO_MODULE@": f"load_module {ECHO_MODULE};" if per_event else "",
        "@PREFIX@": str(prefix),
        "@PORT@": str(port),
        "@JSON_BODY@": _quote((HERE / "chat_completion.json").read_text().strip()),
        "@MODELS_BODY@": _quote((HERE / "models.json").read_text().strip()),
        "@SSE_DIRECTIVES@": _stream_directives((HERE / "chat_stream.sse").read_text(), per_event),
        "@ANTHROPIC_DIRECTIVES@": _stream_directives((HERE / "anthropic_stream.sse").read_text(), per_event),
    }
    conf = (HERE / "nginx.conf.in").read_text()
    for key, value in values.items():
        conf = conf.replace(key, value)
    return conf


class Upstream:
    """nginx on 127.0.0.1:port pinned to one CPU; use as a context manager."""

    def __init__(self, port: int, cpu: int | None, sse_writes: str = "event") -> None:
        self.port = port
        self.cpu = cpu
        self.sse_writes = sse_writes
        self.prefix = Path(tempfile.mkdtemp(prefix="ferrogate-nginx-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Upstream:
        (self.prefix / "tmp").mkdir()
        conf = self.prefix / "nginx.conf"
        conf.write_text(render(self.port, self.prefix, self.sse_writes))
        cmd = ["nginx", "-p", str(self.prefix), "-c", str(conf), "-e", str(self.prefix / "error.log")]
        self.proc = procs.start(cmd, cpu=self.cpu, log_path=self.prefix / "stdout.log")
        if not procs.wait_port(self.port, self.proc):
            log = (
                (self.prefix / "error.log").read_text(errors="replace") if (self.prefix / "error.log").exists() else ""
            )
            self.__exit__()
            raise RuntimeError(f"nginx did not start on port {self.port}:\n{log}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            procs.stop(self.proc)
            self.proc = None
        shutil.rmtree(self.prefix, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--cpu", type=int, default=None, help="pin nginx to this CPU (taskset)")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop after this many seconds")
    parser.add_argument("--sse-writes", choices=["event", "single"], default="event")
    args = parser.parse_args()
    procs.ensure_tools()
    with Upstream(args.port, args.cpu, args.sse_writes) as upstream:
        print(f"mock upstream on {upstream.base} (pid {upstream.proc.pid if upstream.proc else '?'})", flush=True)
        time.sleep(args.seconds)


if __name__ == "__main__":
    main()
