"""Signed session ids for 2025-11-25 (handshake-era) clients of ``/mcp``: sessions without server-side state.

A handshake-era client calls ``initialize`` once and then sends the ``Mcp-Session-Id`` the answer gave it on
every request. The gateway keeps nothing per session: the id itself says which key opened it, when, and at which
protocol version, and is signed, so any instance sharing the master key accepts it and nothing needs forgetting
when a client goes away (``DELETE /mcp`` answers 200).

Layout: ``base64url(key tag 16 | issued_at 8 | version 1 | random 8) + "." + base64url(HMAC-SHA256 tag 16)``.
The key tag is an HMAC of the key id (another key's session is refused: 404, as the specification says for an
unknown session, so the client initialises again); the MAC key is derived from the master key with its own label
(it signs nothing else); ids older than ``ttl_s`` (24 h) are refused the same way. Only visible ASCII, as the
transport requires.

Example:
    >>> signer = SessionSigner(b"master key of the test")
    >>> sid = signer.issue("key_1", "2025-11-25", now=1000.0)
    >>> signer.verify(sid, "key_1", now=1001.0), signer.verify(sid, "key_2", now=1001.0)
    ('2025-11-25', None)
    >>> signer.verify(sid, "key_1", now=1000.0 + 86401), signer.verify(sid[:-2] + "AA", "key_1", now=1001.0)
    (None, None)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct
import time
from typing import Final

from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, KNOWN_PROTOCOL_VERSIONS

#: How long a session id is accepted after it was issued.
SESSION_TTL_S: Final = 24 * 3600.0
#: How far in the future an issue time may lie (clocks of instances differ a little).
_SKEW_S: Final = 300.0
_LABEL: Final = b"ferrogate/mcp-session/v1"
_BODY = struct.Struct(">16sQB8s")  # key tag, issued at (epoch seconds), version index, random
_TAG_BYTES: Final = 16
_BODY_CHARS: Final = 44  # base64url of the 33-byte body, unpadded
_TAG_CHARS: Final = 22  # base64url of the 16-byte tag, unpadded
_SHAPE: Final = re.compile(rf"[A-Za-z0-9_-]{{{_BODY_CHARS}}}\.[A-Za-z0-9_-]{{{_TAG_CHARS}}}")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Issues and checks the signed ids of handshake-era ``/mcp`` sessions.

    Args:
        master_key: the instance's master secret (``FERROGATE_MASTER_KEY``); every instance sharing it accepts
            the ids of the others.
        ttl_s: how long an id is accepted after it was issued.
    """

    __slots__ = ("_mac_key", "_tags", "ttl_s")

    def __init__(self, master_key: bytes, ttl_s: float = SESSION_TTL_S) -> None:
        self._mac_key = hmac.new(master_key, _LABEL, hashlib.sha256).digest()
        self.ttl_s = ttl_s
        self._tags: dict[str, bytes] = {}  # key id -> tag, memoised (bounded below)

    def _tag(self, key_id: str) -> bytes:
        tag = self._tags.get(key_id)
        if tag is None:
            tag = hmac.new(self._mac_key, b"key\x00" + key_id.encode(), hashlib.sha256).digest()[:16]
            if len(self._tags) >= 65536:
                self._tags.clear()
            self._tags[key_id] = tag
        return tag

    def issue(self, key_id: str, protocol_version: str, *, now: float | None = None) -> str:
        """A new session id for ``key_id`` at ``protocol_version`` (a handshake-era version).

        Raises:
            ValueError: ``protocol_version`` is not a handshake-era version.
        """
        if protocol_version not in HANDSHAKE_PROTOCOL_VERSIONS:
            raise ValueError(f"not a handshake-era protocol version: {protocol_version!r}")
        issued = int(time.time() if now is None else now)
        body = _BODY.pack(self._tag(key_id), issued, KNOWN_PROTOCOL_VERSIONS.index(protocol_version), os.urandom(8))
        mac = hmac.new(self._mac_key, body, hashlib.sha256).digest()[:_TAG_BYTES]
        return f"{_b64(body)}.{_b64(mac)}"

    def verify(self, session_id: str, key_id: str, *, now: float | None = None) -> str | None:
        """The protocol version of ``session_id`` when it is valid for ``key_id``; ``None`` when it is not
        (malformed, tampered with, another key's, expired, or issued too far in the future)."""
        if _SHAPE.fullmatch(session_id) is None:
            return None
        try:
            body = _unb64(session_id[:_BODY_CHARS])
        except (binascii.Error, ValueError):
            return None
        if len(body) != _BODY.size:
            return None
        # the tag compared as text: its last character has spare bits, so two spellings would decode alike
        expected = _b64(hmac.new(self._mac_key, body, hashlib.sha256).digest()[:_TAG_BYTES])
        if not hmac.compare_digest(session_id[_BODY_CHARS + 1 :].encode(), expected.encode()):
            return None
        tag, issued, version, _ = _BODY.unpack(body)
        if not hmac.compare_digest(tag, self._tag(key_id)):
            return None
        clock = time.time() if now is None else now
        if issued > clock + _SKEW_S or clock - issued > self.ttl_s or version >= len(KNOWN_PROTOCOL_VERSIONS):
            return None
        found = KNOWN_PROTOCOL_VERSIONS[version]
        return found if found in HANDSHAKE_PROTOCOL_VERSIONS else None
