"""The credential sealer: AES-256-GCM under a key derived from the master key. A token opens only under the same
master key and unaltered; it never holds the value in clear; splitting and merging a server document round-trips."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ferrogate.mcp.secrets import INFO, PREFIX, Sealer, SealError, merge_credentials, split_credentials

MASTER = b"test-master-key-0123456789"
CREDS = {"headers": {"X-Api-Key": "hdr-secret-value-1"}, "bearer_token": "bearer-secret-value-2"}


def raw(token: str) -> bytes:
    body = token.removeprefix(PREFIX)
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def test_round_trip_and_no_value_in_clear() -> None:
    sealer = Sealer(MASTER)
    token = sealer.seal(CREDS)
    assert token.startswith("v1.") and "=" not in token
    assert sealer.unseal(token) == CREDS
    for secret in ("hdr-secret-value-1", "bearer-secret-value-2", "X-Api-Key"):
        assert secret not in token and secret.encode() not in raw(token)
    assert Sealer(MASTER.decode()).unseal(token) == CREDS  # the master key as text: the same key


def test_each_seal_uses_a_fresh_nonce() -> None:
    sealer = Sealer(MASTER)
    first, second = sealer.seal(CREDS), sealer.seal(CREDS)
    assert first != second and raw(first)[:12] != raw(second)[:12]
    assert sealer.unseal(first) == sealer.unseal(second) == CREDS


def test_the_key_is_hkdf_sha256_of_the_master_key_and_the_format_is_nonce_then_ciphertext() -> None:
    """An independent decryption with the documented derivation opens the token (so the format is stable)."""
    token = Sealer(MASTER).seal({"env": {"TOKEN": "t"}})
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(MASTER)
    data = raw(token)
    assert AESGCM(key).decrypt(data[:12], data[12:], INFO) == b'{"env":{"TOKEN":"t"}}'


def test_another_master_key_cannot_open_a_token() -> None:
    token = Sealer(MASTER).seal(CREDS)
    with pytest.raises(SealError, match="another master key, or altered"):
        Sealer(b"another-master-key").unseal(token)


@pytest.mark.parametrize("where", [3, 12, 20, -1])  # a byte of the nonce, the ciphertext, the tag
def test_an_altered_token_is_refused(where: int) -> None:
    sealer = Sealer(MASTER)
    data = bytearray(raw(sealer.seal(CREDS)))
    data[where] ^= 0x01
    altered = PREFIX + base64.urlsafe_b64encode(bytes(data)).decode().rstrip("=")
    with pytest.raises(SealError, match="cannot be opened"):
        sealer.unseal(altered)


@pytest.mark.parametrize("token", ["", "v2.AAAA", "v1.", "v1.AAAA", "v1.!!!!", "plain-text-token"])
def test_what_is_not_a_token_is_refused(token: str) -> None:
    with pytest.raises(SealError, match="not a v1 token"):
        Sealer(MASTER).unseal(token)


def test_refusals_never_name_the_value() -> None:
    with pytest.raises(TypeError) as info:
        Sealer(MASTER).seal({"bearer_token": object()})
    assert "object" not in str(info.value)
    with pytest.raises(TypeError, match="only a JSON object"):
        Sealer(MASTER).seal(["bearer-secret-value-2"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="master key is empty"):
        Sealer(b"")
    assert repr(Sealer(MASTER)) == "Sealer(<key>)" and MASTER.decode() not in repr(Sealer(MASTER))


def test_split_and_merge_a_server_document() -> None:
    doc = {
        "id": "gh",
        "transport": "http",
        "url": "https://mcp.example.com/mcp",
        "headers": {"X-Api-Key": "hdr-secret-value-1"},
        "bearer_token": "bearer-secret-value-2",
    }
    public, secret = split_credentials(doc)
    assert public == {"id": "gh", "transport": "http", "url": "https://mcp.example.com/mcp"}
    assert secret == CREDS
    assert merge_credentials(public, Sealer(MASTER).unseal(Sealer(MASTER).seal(secret))) == doc
    stdio = {"id": "fs", "transport": "stdio", "command": "fs-mcp", "args": ["--ro"], "env": {}}
    assert split_credentials(stdio) == ({"id": "fs", "transport": "stdio", "command": "fs-mcp", "args": ["--ro"]}, {})
    assert merge_credentials({"id": "fs", "env": {"stale": "x"}}, None) == {"id": "fs"}  # never a stale credential
