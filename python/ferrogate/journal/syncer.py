"""The journal's fsync thread: makes what the journals wrote durable in groups, off the event loop.

A journal write on the hot path is a copy into a shared mapping of the file, i.e. into the page cache: the kernel
keeps it when the process dies, so a killed worker loses nothing it answered. What a power loss (or a kernel crash)
can take is bounded by this thread, which calls ``fsync`` on every journal file written since its last pass, every
``interval_s`` (``server.journal_fsync_ms``, default 50 ms), and the journal directory after a file was created in
it. One thread per process, started with the first journal; it never touches the event loop.

Example:
    >>> Syncer(0.05).interval_s   # Syncer.shared(interval_s) is the process's one
    0.05
"""

from __future__ import annotations

import logging
import os
import threading
from typing import ClassVar, Protocol

log = logging.getLogger("ferrogate.journal")


class Syncable(Protocol):
    """What the thread syncs: a journal that hands out duplicates of the descriptors it wrote to."""

    def unsynced(self) -> list[int]:
        """Descriptors (duplicates, the caller closes them) written since the last call, directories included."""
        ...


class Syncer:
    """One daemon thread that fsyncs the registered journals every ``interval_s`` seconds."""

    _shared: ClassVar[Syncer | None] = None
    _shared_pid: ClassVar[int] = 0
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._journals: list[Syncable] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0

    @classmethod
    def shared(cls, interval_s: float) -> Syncer:
        """This process's syncer (a forked worker gets its own; the shortest interval asked for wins)."""
        with cls._guard:
            if cls._shared is None or cls._shared_pid != os.getpid():
                cls._shared, cls._shared_pid = Syncer(interval_s), os.getpid()
            cls._shared.interval_s = min(cls._shared.interval_s, interval_s)
            return cls._shared

    def register(self, journal: Syncable) -> None:
        """Sync ``journal`` from now on (starts the thread on first use)."""
        with self._lock:
            self._journals.append(journal)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ferrogate-journal-fsync", daemon=True)
                self._thread.start()

    def unregister(self, journal: Syncable) -> None:
        """Stop syncing ``journal`` (it synced itself when it closed)."""
        with self._lock:
            if journal in self._journals:
                self._journals.remove(journal)

    def sync_now(self) -> None:
        """One pass, in the calling thread (tests, and shutdown)."""
        with self._lock:
            journals = list(self._journals)
        for journal in journals:
            for fd in journal.unsynced():
                try:
                    os.fsync(fd)
                except OSError as exc:  # a full or failing disk: the data is still in the page cache
                    log.error("journal fsync failed: %s", exc)
                finally:
                    os.close(fd)
        self.passes += 1

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
            try:
                self.sync_now()
            except Exception:  # never let the thread die: the next pass tries again
                log.exception("journal fsync pass failed")
