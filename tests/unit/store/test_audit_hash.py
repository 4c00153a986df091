"""The audit record hash of the Rust core against its Python reference: byte-identical canonical JSON, for
records given as fields and for request records encoded from their facts.

Chains already stored were hashed by the Python encoding (orjson, sorted keys); the core's must give the
same digest for every input, or `ferrogate audit verify` would flag good records. The reference below is
that encoding, kept here as the specification.
"""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from ferrogate._core import audit_hash, audit_request_data, audit_requests
from ferrogate.store.audit import GENESIS, REQUEST_DATA_KEYS, RequestFacts, canonical, check_facts, record_hash
from ferrogate.store.errors import InvalidValue
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


def random_facts(rng: random.Random, n: int) -> RequestFacts:
    start = datetime(1970, 1, 1, tzinfo=UTC)
    maybe = lambda: rng.choice([None, text(rng)])  # noqa: E731
    number = lambda: rng.choice([0, 1, rng.randrange(10**9), -rng.randrange(10**6), 2**63 - 1])  # noqa: E731
    floats = [
        rng.random() * 10 ** rng.randrange(-12, 12),
        rng.uniform(-1, 1) * 10.0 ** rng.randrange(-320, 300),
        round(rng.random() * 1000, 3),
        rng.randrange(10**6) / 1000,
        0.0,
        -0.0,
        5e-324,
        1e16,
        0.1,
        1e-7,
    ]
    return RequestFacts(
        (
            f"req_{n}{text(rng, 4)}",
            start + timedelta(microseconds=rng.randrange(10**17)),  # 1970 .. 5138
            text(rng),
            "chat.completions",
            maybe(),
            maybe(),
            maybe(),
            maybe(),
            maybe(),
            maybe(),
            maybe(),
            rng.choice([200, 404, 429, 500, 502]),
            maybe(),
            rng.random() < 0.5,
            number(),
            number(),
            number(),
            number(),
            rng.random() < 0.5,
            rng.choice([None, rng.choice(floats)]),
            rng.choice(floats),
        )
    )


def test_request_records_encoded_by_the_core_match_the_python_reference() -> None:
    # the account phase hands the writer facts, whose data the core encodes: it must be what canonical()
    # writes for the same data as a dict (a record read back is re-encoded that way and hashed by verify)
    rng = random.Random(20261126)
    for n in range(5_000):
        facts = random_facts(rng, n)
        at, data = audit_request_data(facts)
        event = facts.event()
        assert tuple(orjson.loads(data)) == REQUEST_DATA_KEYS
        assert (at, data) == (stamp(event.created_at), canonical(event.data)), facts
    batch = [random_facts(rng, n) for n in range(300)]
    text_, last, earliest, latest, actors, teams = audit_requests(41, GENESIS, batch)
    records = orjson.loads(text_)
    assert (earliest, latest) == (min(stamp(f[1]) for f in batch), max(stamp(f[1]) for f in batch))
    assert (actors, teams) == (sorted({f[2] for f in batch}), sorted({f[5] for f in batch if f[5] is not None}))
    prev = GENESIS
    for seq, (facts, record) in enumerate(zip(batch, records, strict=True), 41):
        event = facts.event()
        digest = reference(seq, event.event_id, stamp(event.created_at), "request", event.actor, event.action,
                           event.target, event.team_id, canonical(event.data), prev)  # fmt: skip
        # compact: the record's fields, then its data's values alone (in REQUEST_DATA_KEYS order), then the hash
        fields = [seq, event.event_id, stamp(event.created_at), event.actor, event.action, event.target, event.team_id]
        assert record[:7] == fields and record[8] == digest
        assert canonical(dict(zip(REQUEST_DATA_KEYS, record[7], strict=True))) == canonical(event.data)
        prev = digest
    assert last == prev


def test_request_facts_of_the_wrong_shape_are_refused_by_name() -> None:
    facts = random_facts(random.Random(1), 1)
    with pytest.raises(TypeError, match="status has the wrong type"):
        audit_request_data(RequestFacts((*facts[:11], "200", *facts[12:])))
    with pytest.raises(TypeError, match="expected a tuple of 21 fields"):
        audit_request_data(RequestFacts(facts[:20]))
    paris = datetime(2025, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))  # another zone: its UTC time
    assert audit_request_data(RequestFacts((facts[0], paris, *facts[2:])))[0] == "2024-12-31T23:30:00.000000Z"
    with pytest.raises(ValueError, match="is not an aware time"):
        audit_request_data(RequestFacts((facts[0], datetime(2025, 1, 1), *facts[2:])))
    with pytest.raises(InvalidValue, match="status has the wrong type"):
        check_facts(RequestFacts((*facts[:11], "200", *facts[12:])))
    assert RequestFacts.from_json(facts.to_json()) == facts
    with pytest.raises(InvalidValue, match="request facts"):
        RequestFacts.from_json(b'["req_1", "not a time"]')
