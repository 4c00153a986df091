"""The journal: append-only JSON-lines files where every usage record and audit event is written before the
request that made it is answered, and where they wait while the store is down.

Each writer of each process (the usage recorder, the audit writer) has its own journal in the journal
directory: segment files ``<prefix>-<pid>-<random>-<n>.jsonl``, each held under an exclusive ``flock`` while
its process lives. :meth:`Journal.write` is the hot path: one line copied into the current segment's shared
memory mapping, no system call and no ``fsync`` (the pages are the file's page cache: the kernel keeps them,
and writes them out, when the process dies; the :mod:`ferrogate.journal.syncer`
thread fsyncs in groups, which bounds what a power loss can take). A write round of the writer
:meth:`Journal.seal` ends the current segment (it then holds exactly the items the round takes from memory) and
:meth:`Journal.release` removes it once they are in the store, so on a healthy store a journal holds one round's items.
While the store is down, segments stay and are replayed (idempotent by id) when it answers again. A segment
whose lock is free belongs to a process that is gone (crashed or killed): :meth:`Journal.claim` takes it over
for replay, and two processes claiming it at once cannot both win. Lines that cannot be parsed (a write torn
by a crash) are moved to ``<prefix>-rejected.log`` in the same directory rather than dropped silently.

The journal is generic over what it holds: by default usage records (``usage-*`` files); the audit writer keeps
audit events with ``Journal(directory, prefix="audit", decode=read_item)``. A journal only ever touches files
with its own prefix.

Example:
    >>> # journal = Journal(Path("/var/lib/ferrogate/journal"))
    >>> # journal.write(record)               # before the request is answered: a memory copy, no fsync
    >>> # segment = journal.seal()            # a write round: the items it takes from memory are in there
    >>> # ... store them, then:
    >>> # journal.release(segment)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import mmap
import os
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, overload

from ferrogate.journal.syncer import Syncer
from ferrogate.store.errors import InvalidValue
from ferrogate.store.usage import UsageRecord

log = logging.getLogger("ferrogate.journal")
REJECTED = "usage-rejected.log"


class Journaled(Protocol):
    """What a journal holds: anything that writes itself as one line of JSON."""

    def to_json(self) -> bytes:
        """One JSON value, no newline."""
        ...


R = TypeVar("R", bound=Journaled)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@overload
def parse_lines(data: bytes) -> tuple[list[UsageRecord], list[bytes], int]: ...
@overload
def parse_lines(data: bytes, decode: Callable[[bytes], R]) -> tuple[list[R], list[bytes], int]: ...
def parse_lines(
    data: bytes, decode: Callable[[bytes], Any] = UsageRecord.from_json
) -> tuple[list[Any], list[bytes], int]:
    """The records in the complete lines of ``data``, the lines that failed to parse, and the bytes consumed.

    A trailing piece without a newline is not consumed (it may still be being written). ``decode`` reads one
    line (usage records by default) and raises :class:`InvalidValue` for a line it cannot read.

    Example:
        >>> parse_lines(b'not json\\n{"partial')
        ([], [b'not json'], 9)
    """
    end = data.rfind(b"\n") + 1
    records: list[Any] = []
    bad: list[bytes] = []
    for line in data[:end].split(b"\n"):
        if not line.strip():
            continue
        try:
            records.append(decode(line))
        except InvalidValue:
            bad.append(line)
    return records, bad, end


#: Bytes a new segment maps at first (a sparse file: disk is used as lines are written); doubled when full.
SEGMENT_BYTES = 1 << 20


def _allocate(fd: int, size: int) -> None:
    """Give the file ``size`` bytes of real disk space: a full disk is an OSError here, not a SIGBUS when the
    mapping is written (file systems without fallocate get a plain, sparse ftruncate)."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
        os.ftruncate(fd, size)


def _owner_lock(segment: Path) -> int:
    """The lock of the process that wrote ``segment`` (``<prefix>-<pid>-<random>.lock``): -2 when that process
    still holds it (alive), else the descriptor now holding it (the caller releases it), or -1 when there is no
    lock file (a segment of an earlier version: its own lock decides)."""
    lock = segment.with_name(segment.name.rsplit("-", 1)[0] + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return -2
    return fd


def _drop_owner(segment: Path, fd: int) -> None:
    """Release a gone process's lock; remove its lock file once none of its segments is left."""
    try:
        owner = segment.name.rsplit("-", 1)[0]
        if not any(segment.parent.glob(f"{owner}-*.jsonl")):
            with contextlib.suppress(FileNotFoundError):
                segment.with_name(owner + ".lock").unlink()
    finally:
        os.close(fd)


class Segment:
    """One journal file of this process: its path, and while it is the current one its descriptor and shared
    memory mapping; the bytes written to it (the rest of the file is zeros, cut off when it is closed)."""

    __slots__ = ("cap", "fd", "mm", "n", "path", "size")

    def __init__(self, path: Path, fd: int, cap: int, n: int = 0) -> None:
        _allocate(fd, cap)
        self.n = n  # its number in this journal (the file name's last part): later segments have larger ones
        self.path = path
        self.fd = fd
        self.cap = cap
        self.mm: mmap.mmap | None = mmap.mmap(fd, cap)  # MAP_SHARED: the page cache, kept if the process dies
        self.size = 0

    def grow(self, need: int) -> None:
        """Make room for ``need`` more bytes (the mapping doubles, at least).

        Raises:
            OSError: no room on the disk.
        """
        assert self.mm is not None
        cap = max(self.cap * 2, self.size + need)
        _allocate(self.fd, cap)
        self.mm.resize(cap)  # mremap
        self.cap = cap

    def unmap(self) -> None:
        """Drop the mapping and cut the file to what was written (the descriptor stays open)."""
        if self.mm is not None:
            self.mm.close()
            self.mm = None
            os.ftruncate(self.fd, self.size)

    def close(self, *, keep: bool) -> None:
        """Unmap and close; ``keep``: cut the file to what was written (else it is removed)."""
        if keep:
            self.unmap()
        elif self.mm is not None:
            self.mm.close()
            self.mm = None
        if not keep:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Journal(Generic[R]):
    """This process's journal of one writer, plus the segments that gone processes left in the same directory.

    Args:
        directory: where journal files live (created if missing); share it between a host's workers.
        prefix: the file names' prefix (``<prefix>-<pid>-<random>-<n>.jsonl``, ``<prefix>-rejected.log``).
        decode: reads one line back (raises :class:`InvalidValue` for a line it cannot read).
        fsync_interval_s: how often the syncer thread makes this journal's writes durable.

    Raises:
        OSError: the directory cannot be created.
    """

    @overload
    def __init__(self: Journal[UsageRecord], directory: Path, *, fsync_interval_s: float = ...) -> None: ...
    @overload
    def __init__(
        self, directory: Path, *, prefix: str, decode: Callable[[bytes], R], fsync_interval_s: float = ...
    ) -> None: ...
    def __init__(
        self,
        directory: Path,
        *,
        prefix: str = "usage",
        decode: Callable[[bytes], Any] = UsageRecord.from_json,
        fsync_interval_s: float = 0.05,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self._decode = decode
        self._fsync_interval_s = fsync_interval_s
        self._name = ""  # <prefix>-<pid>-<random>, fixed at the first segment (after a fork: the worker's pid)
        self._n = 0
        self._current: Segment | None = None
        self._sealed: list[Segment] = []
        self._dirty = False  # the current segment was written since the syncer's last pass
        self._handoff: list[int] = []  # descriptors of sealed segments to fsync, then close (the syncer's)
        self._owner_fd = -1  # the lock held for the life of the process (<name>.lock)
        self._new_file = False  # a segment was created since the syncer's last pass: sync the directory
        self._lock = threading.Lock()  # against the syncer thread: it duplicates descriptors under it
        self._syncer: Syncer | None = None

    # ---- hot path ------------------------------------------------------------------------------------------
    def write(self, item: R) -> None:
        """Append one item as one line, copied into the segment's shared mapping: no system call, no ``fsync``.
        In the file's page cache when it returns (so it survives the death of the process); durable within
        the fsync interval.

        Raises:
            OSError: the file cannot be written (disk full, permissions).
            TypeError: the item cannot be encoded.
        """
        line = item.to_json() + b"\n"
        segment = self._current or self._open()
        size = segment.size + len(line)
        if size > segment.cap:
            segment.grow(len(line))
        segment.mm.write(line)  # type: ignore[union-attr]  # a copy into the page cache at the mapping's position: no system call
        segment.size = size
        self._dirty = True

    def _open(self) -> Segment:
        if not self._name:
            # the owner's lock, held for the life of the process, before any segment exists: a segment whose
            # owner lock is free belongs to a process that is gone (sealed segments are closed files)
            name = f"{self.prefix}-{os.getpid()}-{secrets.token_hex(4)}"
            lock = os.open(self.directory / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh name: nobody else holds it
            self._name, self._owner_fd = name, lock
        self._n += 1
        path = self.directory / f"{self._name}-{self._n}.jsonl"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh name: nobody else holds it
            segment = Segment(path, fd, SEGMENT_BYTES, self._n)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        self._current = segment
        self._new_file = True
        if self._syncer is None:
            self._syncer = Syncer.shared(self._fsync_interval_s)
            self._syncer.register(self)
        return segment

    # ---- write rounds ---------------------------------------------------------------------------------------
    def seal(self) -> Segment | None:
        """End the current segment (if anything was written to it) and return it; later writes go to a new one.

        Example:
            >>> # segment = journal.seal()   # holds what the round is about to store
        """
        segment = self._current
        if segment is None or not segment.size:
            return None
        segment.unmap()  # a sealed segment keeps no mapping and no descriptor: an outage cannot run out of them
        with self._lock:
            if self._dirty:
                self._handoff.append(segment.fd)  # the syncer fsyncs, then closes it
                self._dirty = False
            else:
                os.close(segment.fd)
            segment.fd = -1
            self._sealed.append(segment)
            self._current = None
        return segment

    def sealed(self) -> list[Segment]:
        """This process's sealed segments whose items are not known to be stored, oldest first."""
        return list(self._sealed)

    def read(self, segment: Segment) -> list[R]:
        """The items of one of this process's segments (unparseable lines go to the rejected log)."""
        with segment.path.open("rb") as f:
            data = f.read(segment.size)
        records, bad, end = parse_lines(data, self._decode)
        self.reject(bad + ([data[end:]] if data[end:].strip() else []))
        return records

    def release(self, segment: Segment | None) -> None:
        """Remove a sealed segment whose items are in the store.

        Example:
            >>> # journal.release(segment)   # after the round stored its items
        """
        if segment is None:
            return
        with self._lock:
            if segment in self._sealed:
                self._sealed.remove(segment)
            segment.close(keep=False)

    def backlog(self) -> int:
        """Bytes in sealed segments (items the store has not taken yet).

        Example:
            >>> # journal.backlog() > 0  # records wait for the store
        """
        return sum(s.size for s in self._sealed)

    def size(self) -> int:
        """Bytes in all of this process's segments (0 before the first write)."""
        return self.backlog() + (self._current.size if self._current is not None else 0)

    def append(self, records: Iterable[R]) -> int:
        """Append ``records`` and ``fsync``; how many. Durable when it returns (for items that must be, such as
        an admin change answered while the store is down, and at shutdown).

        Raises:
            OSError: the file cannot be written: the caller keeps the records.
        """
        count = 0
        for record in records:
            self.write(record)
            count += 1
        if count:
            self.sync()
        return count

    # ---- durability ----------------------------------------------------------------------------------------
    def unsynced(self) -> list[int]:
        """For the syncer thread: descriptors written since its last pass (duplicates, or sealed segments' own),
        which it closes."""
        with self._lock:
            fds, self._handoff = self._handoff, []  # sealed segments' descriptors: the caller closes them
            if self._dirty and self._current is not None:
                self._dirty = False
                fds.append(os.dup(self._current.fd))
            if self._new_file:
                self._new_file = False
                fds.append(os.open(self.directory, os.O_RDONLY))
        return fds

    def sync(self) -> None:
        """``fsync`` what this journal wrote, now, in the calling thread."""
        for fd in self.unsynced():
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def leftovers(self) -> list[Path]:
        """Journal files (of this prefix) other than this process's own, oldest name first (live ones are skipped
        by :meth:`claim`).

        Example:
            >>> # for path in journal.leftovers(): ...
        """
        mine = f"{self._name}-" if self._name else None
        return sorted(
            p for p in self.directory.glob(f"{self.prefix}-*.jsonl") if mine is None or not p.name.startswith(mine)
        )

    @contextlib.contextmanager
    def claim(self, path: Path) -> Iterator[tuple[list[R], int] | None]:
        """Lock a file left by another process: its records and its fd, or ``None`` if it is live or gone.

        The lock is held until the block exits; call :meth:`finish` inside the block once the records are
        stored. The file is checked to be still the one locked (not replaced or unlinked meanwhile).

        Example:
            >>> # with journal.claim(path) as claimed:
            >>> #     if claimed: records, fd = claimed; ...; journal.finish(path, fd)
        """
        owner = _owner_lock(path)
        if owner == -2:  # its process is alive (it holds its owner lock)
            yield None
            return
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            if owner >= 0:
                os.close(owner)
            yield None
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None  # its process is alive and owns it, or another claimer has it
                return
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                yield None  # replayed and removed by someone else meanwhile
                return
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read().rstrip(b"\0")  # a killed writer leaves its mapping's unwritten zeros
            records, bad, end = parse_lines(data, self._decode)
            self.reject(bad + ([data[end:]] if data[end:].strip() else []))  # a torn last line: its writer died
            yield records, fd
        finally:
            os.close(fd)
            if owner >= 0:
                _drop_owner(path, owner)

    def finish(self, path: Path, fd: int) -> None:
        """Remove a claimed file whose records are stored (only while ``fd`` still holds it).

        Example:
            >>> # journal.finish(path, fd)
        """
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()

    async def replay_leftovers(self, store: Callable[[list[R]], Awaitable[bool]]) -> bool:
        """Claim every segment left by a process that is gone, hand its items to ``store`` and remove it once
        ``store`` says they are in; ``False`` when it did not (that segment stays for the next try).

        Example:
            >>> # await journal.replay_leftovers(lambda items: writer.store_replayed(items))
        """
        for path in self.leftovers():
            try:
                with self.claim(path) as claimed:
                    if claimed is None:
                        continue
                    items, fd = claimed
                    if not await store(items):
                        return False
                    self.finish(path, fd)
                    if items:
                        log.warning("%s journal %s replayed (%d items)", self.prefix, path.name, len(items))
            except OSError as exc:
                log.error("%s journal %s: cannot replay: %s", self.prefix, path, exc)
        return True

    def reject(self, lines: list[bytes]) -> None:
        """Keep unparseable journal lines in the rejected log (and say so) instead of dropping them.

        Example:
            >>> # journal.reject([b'{"torn'])
        """
        if not lines:
            return
        rejected = self.directory / f"{self.prefix}-rejected.log"  # REJECTED for usage
        log.error("%s journal: %d unreadable line(s) moved to %s", self.prefix, len(lines), rejected)
        fd = os.open(rejected, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            _write_all(fd, b"".join(line.rstrip(b"\n") + b"\n" for line in lines))
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Sync and release this process's segments: empty ones are removed, the others are left (and unlocked)
        for a successor to replay.

        Example:
            >>> # journal.close()
        """
        segments = [*self._sealed, *([self._current] if self._current is not None else [])]
        with contextlib.suppress(OSError):
            self.sync()
        with self._lock:
            for segment in segments:
                segment.close(keep=segment.size > 0)
            self._sealed.clear()
            self._current = None
            self._dirty = False
            if self._owner_fd >= 0:  # released: what is left is a successor's to replay
                if not any(s.size for s in segments):
                    with contextlib.suppress(FileNotFoundError):
                        (self.directory / f"{self._name}.lock").unlink()
                os.close(self._owner_fd)
                self._owner_fd = -1
                self._name = ""
        if self._syncer is not None:
            self._syncer.unregister(self)
            self._syncer = None
