"""Process helpers for the load harness: tools, ports, start/stop by PID, CPU time from /proc.

Everything here is stdlib so the harness runs from the project venv without extra packages.

Example:
    >>> ensure_tools()  # apt-get installs nginx-light, wrk and hey if missing
    >>> proc = start(["sleep", "60"], cpu=1, log_path=Path("/tmp/sleep.log"))
    >>> cpu_seconds(proc.pid)
    0.0
    >>> stop(proc)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

# Debian package that provides each command the harness runs.
TOOLS = {"nginx": "nginx-light", "wrk": "wrk", "hey": "hey", "taskset": "util-linux"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
NICE = 0


def ensure_tools() -> None:
    """Install the missing load tools with apt-get (Debian packages only).

    Raises:
        SystemExit: when a tool is still missing after the install attempt.
    """
    missing = sorted({pkg for cmd, pkg in TOOLS.items() if shutil.which(cmd) is None})
    if missing:
        print(f"installing {' '.join(missing)} with apt-get", file=sys.stderr)
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run([*sudo, "apt-get", "install", "-y", "--no-install-recommends", *missing], check=True, env=env)
    still = [cmd for cmd in TOOLS if shutil.which(cmd) is None]
    if still:
        raise SystemExit(f"missing tools after install: {', '.join(still)}")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> bool:
    """Wait until something accepts on 127.0.0.1:port; False if proc died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def set_nice(value: int) -> None:
    """Niceness for everything the harness starts (negative needs root): keeps a concurrent build off our CPUs."""
    global NICE
    NICE = value


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    """cmd pinned to one CPU (taskset) at the harness niceness; both exec, so the PID stays cmd's."""
    argv = ["nice", "-n", str(NICE), *cmd] if NICE else cmd
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None else argv


def start(
    cmd: list[str], *, cpu: int | None, log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start cmd in its own session, pinned to one CPU with taskset, output to log_path, in log_path's directory
    (a gateway's journal, ``.ferrogate/spool``, lands there: one per server)."""
    argv = pinned(cmd, cpu)
    log: IO[bytes] = log_path.open("wb")
    return subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        cwd=log_path.parent,
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a process started by start(): SIGTERM to its process group (its own PID), then SIGKILL."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the parenthesised command name; the name itself may hold spaces.
    return raw[raw.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """PID and every live descendant of it (Granian forks worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def memory(pid: int) -> dict[str, Any]:
    """Resident memory of pid and its live descendants, from /proc/PID/smaps_rollup: per process its RSS and its
    PSS (shared pages divided among the processes that map them), and both summed, in MB (10^6 bytes)."""
    members = []
    for member in descendants(pid):
        fields: dict[str, int] = {}
        try:
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                name, _, rest = line.partition(":")
                if name in ("Rss", "Pss"):
                    fields[name] = int(rest.split()[0]) * 1024
            comm = Path(f"/proc/{member}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        rss, pss = fields["Rss"] / 1e6, fields["Pss"] / 1e6
        members.append({"pid": member, "cmd": comm.strip()[:80], "rss_mb": rss, "pss_mb": pss})
    return {
        "processes": members,
        "rss_mb": sum(m["rss_mb"] for m in members),
        "pss_mb": sum(m["pss_mb"] for m in members),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of pid and all its live descendants (all threads included)."""
    total = 0
    for member in descendants(pid):
        fields = _stat_fields(member)
        if fields is not None:
            # utime, stime, cutime, cstime are fields 14-17 of /proc/PID/stat (11-14 after the name).
            total += sum(int(v) for v in fields[11:15])
    return total / CLK_TCK


def core_busy() -> dict[int, tuple[int, int]]:
    """Per-CPU (busy, total) jiffies from /proc/stat, for utilisation between two samples."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3].isdigit():
            name, *vals = line.split()
            nums = [int(v) for v in vals]
            idle = nums[3] + nums[4]
            out[int(name[3:])] = (sum(nums) - idle, sum(nums))
    return out


def busy_percent(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> dict[int, float]:
    """Per-CPU busy percentage between two core_busy() samples."""
    result = {}
    for cpu, (busy, total) in after.items():
        b0, t0 = before.get(cpu, (0, 0))
        result[cpu] = 100.0 * (busy - b0) / max(total - t0, 1)
    return result
