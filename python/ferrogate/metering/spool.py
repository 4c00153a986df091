"""The usage spool: JSON-lines files where usage records wait while the store is down.

Each process writes its own file, ``usage-<pid>-<random>.jsonl`` in the spool directory, opened on first use
(so a recorder created before a fork still gets one file per worker) and held under an exclusive ``flock``
for the life of the process. Every append is one ``write`` of whole lines followed by ``fsync``. A file whose
lock is free belongs to a process that is gone: :meth:`Spool.claim` takes it over for replay, and two
processes claiming it at once cannot both win. Lines that cannot be parsed (a write torn by a crash) are
moved to ``usage-rejected.log`` in the same directory rather than dropped silently.

The spool is generic over what it holds: by default usage records (``usage-*`` files); the audit writer keeps
audit events in its own directory with ``Spool(directory, prefix="audit", decode=AuditEvent.from_json)``.
A spool only ever touches files with its own prefix.

Example:
    >>> # spool = Spool(Path("/var/lib/ferrogate/spool"))
    >>> # spool.append(records)               # durable when it returns
    >>> # records, offset = spool.read()      # ... insert them, then:
    >>> # spool.consume(offset)               # keep only what was appended meanwhile
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, overload

from ferrogate.store.errors import InvalidValue
from ferrogate.store.usage import UsageRecord

log = logging.getLogger("ferrogate.metering")
REJECTED = "usage-rejected.log"


class Spoolable(Protocol):
    """What a spool holds: anything that writes itself as one line of JSON."""

    def to_json(self) -> bytes:
        """One JSON object, no newline."""
        ...


R = TypeVar("R", bound=Spoolable)


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


class Spool(Generic[R]):
    """This process's spool file, plus the files that crashed predecessors left in the same directory.

    Args:
        directory: where spool files live (created if missing); share it between a host's workers.
        prefix: the file names' prefix (``<prefix>-<pid>-<random>.jsonl``, ``<prefix>-rejected.log``).
        decode: reads one line back (raises :class:`InvalidValue` for a line it cannot read).

    Raises:
        OSError: the directory cannot be created.
    """

    @overload
    def __init__(self: Spool[UsageRecord], directory: Path) -> None: ...
    @overload
    def __init__(self, directory: Path, *, prefix: str, decode: Callable[[bytes], R]) -> None: ...
    def __init__(
        self, directory: Path, *, prefix: str = "usage", decode: Callable[[bytes], Any] = UsageRecord.from_json
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self._decode = decode
        self.path: Path | None = None
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            path = self.directory / f"{self.prefix}-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh name: nobody else holds it
            self.path, self._fd = path, fd
        return self._fd

    def append(self, records: Iterable[R]) -> int:
        """Append ``records`` as JSON lines and ``fsync``; how many. Durable when it returns.

        Raises:
            OSError: the file cannot be written (disk full, permissions): the caller keeps the records.

        Example:
            >>> # spool.append(batch)  # 500
        """
        lines = [r.to_json() + b"\n" for r in records]
        if lines:
            fd = self._open()
            _write_all(fd, b"".join(lines))
            os.fsync(fd)
        return len(lines)

    def size(self) -> int:
        """Bytes in this process's file (0 before the first append).

        Example:
            >>> # spool.size() > 0  # records are waiting for the store
        """
        return 0 if self._fd is None else os.fstat(self._fd).st_size

    def read(self) -> tuple[list[R], int]:
        """The records in this process's file and the offset up to which they were read.

        Unparseable lines are moved to the rejected log (they still count towards the offset).

        Example:
            >>> # records, offset = spool.read()
        """
        if self.path is None or not self.size():
            return [], 0
        records, bad, end = parse_lines(self.path.read_bytes(), self._decode)
        self.reject(bad)
        return records, end

    def consume(self, offset: int) -> None:
        """Drop the first ``offset`` bytes of this process's file (their records are in the store).

        Example:
            >>> # spool.consume(offset)  # after insert_many succeeded
        """
        if self._fd is None or self.path is None or offset <= 0:
            return
        with self.path.open("rb") as f:
            f.seek(offset)
            tail = f.read()
        os.ftruncate(self._fd, 0)
        if tail:
            _write_all(self._fd, tail)
        os.fsync(self._fd)

    def leftovers(self) -> list[Path]:
        """Spool files (of this prefix) other than this process's own, oldest name first (live ones are skipped
        by :meth:`claim`).

        Example:
            >>> # for path in spool.leftovers(): ...
        """
        return sorted(p for p in self.directory.glob(f"{self.prefix}-*.jsonl") if p != self.path)

    @contextlib.contextmanager
    def claim(self, path: Path) -> Iterator[tuple[list[R], int] | None]:
        """Lock a file left by another process: its records and its fd, or ``None`` if it is live or gone.

        The lock is held until the block exits; call :meth:`finish` inside the block once the records are
        stored. The file is checked to be still the one locked (not replaced or unlinked meanwhile).

        Example:
            >>> # with spool.claim(path) as claimed:
            >>> #     if claimed: records, fd = claimed; ...; spool.finish(path, fd)
        """
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            yield None
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None  # its process is alive and owns it
                return
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                yield None  # replayed and removed by someone else meanwhile
                return
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read()
            records, bad, end = parse_lines(data, self._decode)
            self.reject(bad + ([data[end:]] if data[end:].strip() else []))  # a torn last line: its writer died
            yield records, fd
        finally:
            os.close(fd)

    def finish(self, path: Path, fd: int) -> None:
        """Remove a claimed file whose records are stored (only while ``fd`` still holds it).

        Example:
            >>> # spool.finish(path, fd)
        """
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()

    def reject(self, lines: list[bytes]) -> None:
        """Keep unparseable spool lines in the rejected log (and say so) instead of dropping them.

        Example:
            >>> # spool.reject([b'{"torn'])
        """
        if not lines:
            return
        rejected = self.directory / f"{self.prefix}-rejected.log"  # REJECTED for usage
        log.error("%s spool: %d unreadable line(s) moved to %s", self.prefix, len(lines), rejected)
        fd = os.open(rejected, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            _write_all(fd, b"".join(line.rstrip(b"\n") + b"\n" for line in lines))
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Release this process's file: removed when empty, else left (and unlocked) for a successor to replay.

        Example:
            >>> # spool.close()
        """
        if self._fd is not None and self.path is not None:
            if not self.size():
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            os.close(self._fd)
            self._fd, self.path = None, None
