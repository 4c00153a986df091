"""A worker forked by the supervisor never loses a stop sent right after its fork (server.respawn's fork hooks)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Forks children the way multiprocessing does (os.fork) from a process whose SIGTERM handler is a Python function
# (the supervisor's), and sends each SIGTERM the moment fork returns in the parent, before the child has run: the
# window in which the signal used to be taken by the inherited handler and cleared by CPython's after-fork reset.
_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    from ferrogate.server.respawn import register_fork_hooks

    register_fork_hooks()
    signal.signal(signal.SIGTERM, lambda *_: None)  # the supervisor's handler: it records and returns
    survived = 0
    for _ in range(int(sys.argv[1])):
        pid = os.fork()
        if pid == 0:
            time.sleep(3)  # a worker importing the application
            os._exit(0)
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
        survived += not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM)
    print(survived)
    """
)


def _survivors(forks: int) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(forks)], capture_output=True, text=True, timeout=120, check=True
    )
    return int(out.stdout)


def test_a_stop_sent_right_after_the_fork_ends_the_child() -> None:
    assert _survivors(20) == 0  # without the block, 19 of 20 survived


def test_the_parent_still_takes_its_own_stops_after_forking() -> None:
    """The block is lifted in the parent after each fork: its own handler still runs."""
    script = textwrap.dedent(
        """
        import os, signal
        from ferrogate.server.respawn import register_fork_hooks

        register_fork_hooks()
        got = []
        signal.signal(signal.SIGTERM, lambda *_: got.append(1))
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == set(), "the mask was not restored"
        os.kill(os.getpid(), signal.SIGTERM)
        print(len(got))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "1"
