"""The audit record hash of the Rust core against its Python reference: byte-identical canonical JSON.

Chains already stored were hashed by the Python encoding (orjson, sorted keys); the core's must give the
same digest for every input, or `ferrogate audit verify` would flag good records. The reference below is
that encoding, kept here as the specification.
"""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from ferrogate._core import audit_hash
from ferrogate.store.audit import GENESIS, canonical, record_hash
from ferrogate.store.fields import stamp


def reference(
    seq: int,
    event_id: str,
    created_at: str,
    kind: str,
    actor: str,
    action: str,
    target: str | None,
    team_id: str | None,
    data: str,
    prev_hash: str,
) -> str:
    body = {
        "seq": seq,
        "event_id": event_id,
        "created_at": created_at,
        "kind": kind,
        "actor": actor,
        "action": action,
        "target": target,
        "team_id": team_id,
        "data": orjson.Fragment(data),
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


# every control character, JSON's specials, DEL, Latin-1, the line separators JSON leaves alone, astral planes
ALPHABET = [chr(c) for c in range(0x20)] + ['"', "\\", "/", "\x7f", "a", "Z", "é", "\u2028", "\u2029", "中", "😀", " "]


def text(rng: random.Random, most: int = 12) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(most + 1)))


def test_the_core_matches_the_reference_on_random_records() -> None:
    rng = random.Random(20261125)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for _ in range(3_000):
        fields = (
            rng.choice([1, 2, 10**12, 2**63 - 1]),
            text(rng),
            stamp(start + timedelta(microseconds=rng.randrange(10**14))),
            rng.choice(["admin", "request", text(rng)]),
            text(rng),
            text(rng),
            rng.choice([None, text(rng)]),
            rng.choice([None, text(rng)]),
            canonical({text(rng): [text(rng), rng.random(), None, {"n": rng.randrange(-99, 99)}]}),
            rng.choice([GENESIS, text(rng, 64)]),
        )
        assert audit_hash(*fields) == reference(*fields), fields


def test_record_hash_takes_a_datetime_or_its_stamp() -> None:
    at = datetime(2025, 1, 31, 12, tzinfo=UTC)
    args = ("e1", "admin", "master", "team.create", "team_1", None, '{"after":{"name":"ml"}}', GENESIS)
    expected = reference(7, args[0], stamp(at), *args[1:])
    assert record_hash(7, args[0], at, *args[1:]) == expected
    assert record_hash(7, args[0], stamp(at), *args[1:]) == expected
    assert record_hash(8, args[0], at, *args[1:]) != expected


def test_text_python_cannot_encode_is_refused() -> None:
    with pytest.raises(UnicodeEncodeError):
        audit_hash(1, "\ud800", stamp(datetime(2025, 1, 1, tzinfo=UTC)), "admin", "a", "x", None, None, "{}", GENESIS)
