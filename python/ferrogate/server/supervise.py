"""The instance's main process once ``ferrogate serve`` has checked everything: Granian's supervisor, alone.

``ferrogate serve`` loads and checks the configuration, migrates the store and compiles the guardrail and routing
rules, which imports most of the package (~75 MB resident). It then replaces itself with this module
(``os.execv``: the same PID, so signals, process managers and ``kill`` see one process), which imports Granian
and :mod:`ferrogate.server.respawn` only (~30 MB). The workers it forks load the application themselves, as they
did before. What ``serve`` decided travels in one environment variable, :data:`SPEC` (JSON), read and removed
at start:

- ``granian``: the keyword arguments of :class:`~ferrogate.server.respawn.RespawningServer`, with ``interface``
  and ``loop`` as their names;
- ``backoff``: ``[first_s, max_s]`` of the respawn backoff;
- ``log_config``: the ``logging.config.dictConfig`` of this process (Granian applies it in the workers too);
- ``remove_dirs`` / ``remove_files``: what this instance created and removes at exit (the Prometheus
  multiprocess directory, the circuit-breaker table).

Example:
    >>> import json; json.loads(spec_json({"port": 8080}, (1.0, 30.0), {"version": 1}, [], []))["backoff"]
    [1.0, 30.0]
"""

from __future__ import annotations

import json
import logging.config
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: The environment variable that carries ``serve``'s decisions to this process.
SPEC = "FERROGATE_SUPERVISE"


def spec_json(
    granian: dict[str, Any], backoff: tuple[float, float], log_config: dict[str, Any],
    remove_dirs: Sequence[str], remove_files: Sequence[str],
) -> str:  # fmt: skip
    """The :data:`SPEC` value ``serve`` hands over."""
    return json.dumps(
        {
            "granian": granian,
            "backoff": list(backoff),
            "log_config": log_config,
            "remove_dirs": list(remove_dirs),
            "remove_files": list(remove_files),
        }
    )


def exec_supervisor(spec: str) -> None:
    """Replace this process with ``python -m ferrogate.server.supervise`` (returns only if that cannot start:
    ``sys.executable`` unknown). ``serve``'s arguments follow, unread, so ``ps`` still shows what was started."""
    if not sys.executable:
        return
    os.environ[SPEC] = spec
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os.execv(sys.executable, [sys.executable, "-m", "ferrogate.server.supervise", *sys.argv[1:]])  # noqa: S606


def run(spec: dict[str, Any]) -> int:
    """Serve with Granian until stopped, then remove what the instance created."""
    from granian.constants import Interfaces, Loops

    from ferrogate.server.respawn import Backoff, RespawningServer

    logging.config.dictConfig(spec["log_config"])
    kwargs = dict(spec["granian"])
    kwargs["interface"] = Interfaces(kwargs["interface"])
    kwargs["loop"] = Loops(kwargs["loop"])
    first_s, max_s = spec["backoff"]
    try:
        RespawningServer(
            kwargs.pop("target"), backoff=Backoff(first_s, max_s), log_dictconfig=spec["log_config"], **kwargs
        ).serve()
    finally:
        for path in spec["remove_dirs"]:
            shutil.rmtree(path, ignore_errors=True)
        for path in spec["remove_files"]:
            Path(path).unlink(missing_ok=True)
    return 0


def main() -> int:
    raw = os.environ.pop(SPEC, None)
    if raw is None:
        print("ferrogate.server.supervise is started by `ferrogate serve`, not by hand", file=sys.stderr)
        return 2
    return run(json.loads(raw))


if __name__ == "__main__":
    sys.exit(main())
