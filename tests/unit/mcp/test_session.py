"""Signed /mcp session ids: bound to the key, the master key and a lifetime; nothing kept server-side."""

from __future__ import annotations

import re

import pytest

from ferrogate.mcp.session import SESSION_TTL_S, SessionSigner

NOW = 1_750_000_000.0


@pytest.fixture
def signer() -> SessionSigner:
    return SessionSigner(b"the master key of these tests")


def test_round_trip_keeps_the_protocol_version(signer: SessionSigner) -> None:
    for version in ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"):
        sid = signer.issue("key_1", version, now=NOW)
        assert signer.verify(sid, "key_1", now=NOW + 5) == version


def test_ids_are_visible_ascii_and_unique(signer: SessionSigner) -> None:
    ids = {signer.issue("key_1", "2025-11-25", now=NOW) for _ in range(200)}
    assert len(ids) == 200  # random part: two sessions of one key at the same second differ
    for sid in ids:
        assert re.fullmatch(r"[\x21-\x7e]+", sid)  # what the transport allows in Mcp-Session-Id
        assert len(sid) == 67


def test_another_instance_with_the_same_master_key_accepts_it(signer: SessionSigner) -> None:
    sid = signer.issue("key_1", "2025-11-25", now=NOW)
    assert SessionSigner(b"the master key of these tests").verify(sid, "key_1", now=NOW) == "2025-11-25"
    assert SessionSigner(b"another master key").verify(sid, "key_1", now=NOW) is None


def test_bound_to_the_key(signer: SessionSigner) -> None:
    sid = signer.issue("key_1", "2025-11-25", now=NOW)
    assert signer.verify(sid, "key_2", now=NOW) is None
    assert signer.verify(sid, "key_1", now=NOW) == "2025-11-25"


@pytest.mark.parametrize(
    ("offset", "valid"),
    [(0.0, True), (SESSION_TTL_S - 1, True), (SESSION_TTL_S + 1, False), (-60.0, True), (-3600.0, False)],
)
def test_lifetime_and_clock_skew(signer: SessionSigner, offset: float, valid: bool) -> None:
    sid = signer.issue("key_1", "2025-11-25", now=NOW)
    assert (signer.verify(sid, "key_1", now=NOW + offset) is not None) is valid


def test_tampering_is_refused(signer: SessionSigner) -> None:
    sid = signer.issue("key_1", "2025-11-25", now=NOW)
    body, tag = sid.split(".")
    flipped = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]
    for bad in (
        f"{flipped}.{tag}",  # the body changed: the MAC no longer matches
        f"{body}.{tag[:-1]}{'A' if tag[-1] != 'A' else 'B'}",
        f"{body}{tag}",
        sid + "x",
        "",
        "." * 67,
        "%" * 44 + "." + "%" * 22,
    ):
        assert signer.verify(bad, "key_1", now=NOW) is None, bad


def test_only_handshake_versions_are_issued(signer: SessionSigner) -> None:
    with pytest.raises(ValueError, match="handshake"):
        signer.issue("key_1", "2026-07-28", now=NOW)
