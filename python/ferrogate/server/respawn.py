"""Worker respawn for ``ferrogate serve``: a worker that dies is replaced, and one that keeps dying is backed off.

Granian (2.8) respawns a failed worker when ``respawn_failed_workers`` is on, at once; but when the same worker
dies again within 5.5 s of its respawn it calls that a crash loop and shuts the whole server down, so a request
that kills a worker, sent twice in a row, would stop the instance. :class:`RespawningServer` keeps Granian's
respawn and replaces that exit with a backoff:

- a worker that ran for :data:`HEALTHY_S` or longer before it died is respawned at once;
- a worker that dies sooner after it started waits ``first_s`` before its respawn, doubling with every further
  quick death in a row, up to ``max_s`` (``server.respawn_backoff_s`` / ``server.respawn_backoff_max_s``);
- the other workers keep serving meanwhile (with one worker, connections wait in the listen backlog);
- SIGTERM / SIGINT during a wait stops the server as usual (the wait is cut short, nothing is respawned).

The dead worker's in-flight requests are lost with it (their clients see the connection close); its live
Prometheus gauges are dropped (``mark_process_dead``), its counters kept. This overrides one internal method of
Granian's ``MPServer`` (the server ``granian.Granian`` is on every GIL build of Python);
``tests/e2e/test_respawn.py`` pins the behaviour down across Granian upgrades.

Example:
    >>> Backoff(first_s=1, max_s=30).delay(streak=4)
    8.0
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

from granian.server.mp import MPServer

log = logging.getLogger("ferrogate.server")

#: A worker that ran this long before it died is not in a crash loop: its respawn is immediate.
HEALTHY_S = 60.0
_SLICE_S = 0.1  # how often a backoff wait looks for a shutdown signal


@dataclass(frozen=True, slots=True)
class Backoff:
    """The wait before respawning a worker that died ``streak`` times in a row, each time within
    :data:`HEALTHY_S` of its start: 0 for none, then ``first_s``, doubling, at most ``max_s``.

    Example:
        >>> [Backoff(first_s=0.5, max_s=3).delay(n) for n in range(6)]
        [0.0, 0.5, 1.0, 2.0, 3.0, 3.0]
    """

    first_s: float
    max_s: float

    def delay(self, streak: int) -> float:
        """Seconds to wait before the respawn (``streak`` quick deaths in a row, 0 when the last life was long)."""
        if streak <= 0:
            return 0.0
        return float(min(self.max_s, self.first_s * 2 ** min(streak - 1, 32)))


#: The signals that stop a worker.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_at_fork = False  # whether this process has registered its fork hooks (register_fork_hooks)
_mask_before_fork: set[int] = set()  # the forking thread's signal mask before _block_stop_signals


def default_stop_signals() -> dict[int, Any]:
    """SIGTERM and SIGINT at their default actions; their previous handlers.

    A worker runs it right after the fork (:func:`register_fork_hooks`) and around its own start
    (``server.app.Gateway.__rsgi_init__``): until Granian's handlers are set and the worker serves, the handlers
    it has do nothing with a stop (the supervisor's, inherited; Granian's, before it serves), so a SIGTERM would
    be lost and the worker serve on until killed at the end of ``workers_kill_timeout``. With the default action
    a worker still starting just ends (it has served nothing)."""
    return {sig: signal.signal(sig, signal.SIG_DFL) for sig in STOP_SIGNALS}


def _block_stop_signals() -> None:
    global _mask_before_fork
    _mask_before_fork = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def _restore_mask() -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, _mask_before_fork)


def _child_after_fork() -> None:
    default_stop_signals()
    _restore_mask()  # a stop sent meanwhile, pending, is delivered now: the child ends


def register_fork_hooks() -> None:
    """Fork workers that cannot lose a stop: SIGTERM / SIGINT are blocked in the forking thread across the fork,
    and the child sets their default actions before it unblocks them.

    Without the block, a stop sent to a worker just after its fork (a shutdown while workers spawn) can reach it
    before its first Python code runs: the supervisor's inherited handler takes it, and CPython clears what
    that handler recorded as part of the fork, so the worker never sees it. Blocked, the signal waits in the
    kernel and, once the default action is set, ends the child. Once per process (a hook cannot be removed)."""
    global _at_fork
    if not _at_fork:
        os.register_at_fork(before=_block_stop_signals, after_in_parent=_restore_mask, after_in_child=_child_after_fork)
        _at_fork = True


class RespawningServer(MPServer):
    """Granian's multi-process server with ``respawn_failed_workers`` on and a backoff instead of its exit on a
    crash loop (see the module docstring).

    Args:
        target: the application (as for ``granian.Granian``).
        backoff: the respawn waits of a worker in a crash loop.
        **kwargs: Granian's own settings.
    """

    def __init__(self, target: str, *, backoff: Backoff, **kwargs: Any) -> None:
        super().__init__(target, respawn_failed_workers=True, **kwargs)
        register_fork_hooks()
        self.backoff = backoff
        self._streaks: dict[int, int] = {}

    def _respawn_workers(self, workers: Any, spawn_target: Any, target_loader: Any, delay: float = 0) -> None:
        """Granian's respawn; for a worker that is dead (not a reload's live one), after its backoff. Workers are
        respawned as they come due, soonest first; a worker that dies while another waits out its backoff is
        taken in at once (a healthy one is not kept down behind a crash loop)."""
        due: dict[int, float] = {}  # dead worker index -> monotonic time of its respawn
        for idx in list(workers):
            if self.wrks[idx].is_alive():  # a reload or lifetime replacement: Granian's own path
                super()._respawn_workers([idx], spawn_target, target_loader, delay)
            else:
                due[idx] = time.monotonic() + self._schedule(idx)
        while due:
            idx = min(due, key=due.__getitem__)
            if not self._wait_until(due[idx], due):
                return  # shutting down: the dead workers stay listed, and stopping them is a no-op
            if time.monotonic() < due[idx]:  # another worker died meanwhile and may be due sooner
                continue
            del due[idx]
            super()._respawn_workers([idx], spawn_target, target_loader, delay)
        self.respawned_wrks.clear()  # Granian's crash-loop exit looks here: the backoff above replaces it

    def _schedule(self, idx: int) -> float:
        """The backoff of dead worker ``idx`` (its gauges dropped, its death logged)."""
        old = self.wrks[idx]
        lived = time.monotonic() - old.birth
        streak = self._streaks.get(idx, 0) + 1 if lived < HEALTHY_S else 0
        self._streaks[idx] = streak
        wait = self.backoff.delay(streak)
        log.warning(
            "worker-%d (pid %s) died after %.1f s (exit code %s): respawning it%s",
            idx + 1,
            old.inner.pid,
            lived,
            old.inner.exitcode,
            f" in {wait:.1f} s (quick death {streak} in a row)" if wait else "",
        )
        _forget_gauges(old.inner.pid)
        _forget_in_flight()
        return wait

    def _wait_until(self, deadline: float, due: dict[int, float]) -> bool:
        """Sleep until ``deadline`` unless a shutdown signal comes first (``False``) or another worker dies (it
        joins ``due``, and the wait ends early so the soonest is taken first)."""
        while not self.interrupt_signal:
            for idx in range(len(self.wrks)):
                if idx not in due and not self.wrks[idx].is_alive():  # type: ignore[no-untyped-call]
                    due[idx] = time.monotonic() + self._schedule(idx)
                    return True
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(_SLICE_S, left))
        return False


def _forget_in_flight() -> None:
    """A dead worker's attempts stay counted in flight in the circuit table: set the counts to 0 (the live
    workers' attempts then end on a count held at 0; right again once they have)."""
    path = os.environ.get("FERROGATE_CIRCUITS_PATH")
    if not path or not os.path.exists(path):
        return
    from ferrogate.routing.health import open_table

    try:
        open_table(path).clear_in_flight()
    except Exception as exc:  # the table is the workers'; a failure here must not stop the respawn
        log.warning("could not reset the in-flight counts of the circuit table: %s", exc)


def _forget_gauges(pid: int | None) -> None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if pid is None or not directory:
        return
    from prometheus_client.multiprocess import mark_process_dead

    try:
        mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
    except OSError as exc:
        log.warning("could not drop the metrics of dead worker %s: %s", pid, exc)
