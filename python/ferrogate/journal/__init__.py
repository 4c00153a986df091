"""The journal: every usage record and audit event is in a local append-only file before its request is
answered, and waits there while the store is down (docs/journal.md).

:mod:`ferrogate.journal.file` holds the files, :mod:`ferrogate.journal.syncer` makes them durable in groups off
the event loop, :mod:`ferrogate.journal.writer` is the batched store writer that the usage recorder and the
audit writer share.
"""
