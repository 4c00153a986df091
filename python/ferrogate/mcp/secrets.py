"""Credentials of MCP servers, sealed under the master key: what the store holds instead of a token in clear.

An MCP server added through the admin API may carry credentials (static header values, a bearer token, the
environment of a stdio command). Unlike an LLM upstream's ``api_key`` (an ``${ENV}`` reference only), these are
literal values: the store keeps them as one :meth:`Sealer.seal` token, AES-256-GCM under a key derived from the
master key (``FERROGATE_MASTER_KEY``) with HKDF-SHA256 (``info`` :data:`INFO`), so a copy of the database without
the master key reveals nothing, and a token altered in the database (or sealed under another master key) is
refused by :meth:`Sealer.unseal` instead of giving a wrong credential.

Why the ``cryptography`` package: AES-GCM and HKDF are not in the standard library, and ``cryptography`` (OpenSSL)
is already installed as a dependency of the ``mcp`` SDK (``pyjwt[crypto]``); ferrogate names it in its own
dependencies because it imports it. Nothing here logs or formats a credential (errors name no value).

:func:`split_credentials` and :func:`merge_credentials` cut a server document (the ``McpServer`` configuration
model as JSON) into what the store keeps in clear and what it seals, and put it back together.

Example:
    >>> sealer = Sealer(b"the master key")
    >>> token = sealer.seal({"bearer_token": "t0ps3cret"})
    >>> token.startswith("v1.") and "t0ps3cret" not in token
    True
    >>> sealer.unseal(token)
    {'bearer_token': 't0ps3cret'}
    >>> Sealer(b"another master key").unseal(token)
    Traceback (most recent call last):
    ...
    ferrogate.mcp.secrets.SealError: the sealed credentials cannot be opened (another master key, or altered)
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: The HKDF ``info`` (and the AES-GCM associated data) of the credential key: another use of the master key
#: derives another key.
INFO = b"ferrogate/mcp-credentials/v1"
#: The prefix of a token, naming its format (a new format gets a new prefix; old tokens stay readable).
PREFIX = "v1."
#: The fields of a server document that are credentials (each a mapping of names to secret values, or a value).
CREDENTIAL_FIELDS = ("headers", "bearer_token", "env")
_NONCE = 12


class SealError(ValueError):
    """A token that cannot be opened: not a token, sealed under another master key, or altered."""


class Sealer:
    """Seals and opens JSON objects with AES-256-GCM under a key derived from the master key.

    Args:
        master_key: ``FERROGATE_MASTER_KEY`` (text is encoded as UTF-8).

    Raises:
        ValueError: an empty master key.
    """

    __slots__ = ("_cipher", "_secret")

    def __init__(self, master_key: bytes | str) -> None:
        secret = master_key.encode() if isinstance(master_key, str) else bytes(master_key)
        if not secret:
            raise ValueError("the master key is empty: MCP credentials cannot be sealed")
        self._secret = secret
        self._cipher: AESGCM | None = None

    @property
    def _aead(self) -> AESGCM:
        """The AES-GCM cipher, derived on first use (``cryptography`` is loaded only by a worker that seals or
        opens credentials: ~6 MB of memory otherwise unused)."""
        if self._cipher is None:
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
            from cryptography.hazmat.primitives.kdf.hkdf import HKDF

            key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(self._secret)
            self._cipher = AESGCM(key)
        return self._cipher

    def __repr__(self) -> str:
        return "Sealer(<key>)"

    def seal(self, obj: Mapping[str, Any]) -> str:
        """``obj`` (a JSON object) encrypted and authenticated: ``"v1." + base64url(nonce | ciphertext)``.

        A fresh random nonce each time: sealing the same object twice gives two different tokens.

        Raises:
            TypeError: ``obj`` is not a mapping, or holds a value JSON cannot carry.

        Example:
            >>> s = Sealer(b"k")
            >>> s.seal({"a": 1}) != s.seal({"a": 1})
            True
        """
        if not isinstance(obj, Mapping):
            raise TypeError(f"only a JSON object can be sealed, not {type(obj).__name__}")
        try:
            plain = orjson.dumps(dict(obj))
        except TypeError:
            raise TypeError("the credentials hold a value that is not JSON") from None
        nonce = os.urandom(_NONCE)
        sealed = nonce + self._aead.encrypt(nonce, plain, INFO)
        return PREFIX + base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def unseal(self, token: str) -> dict[str, Any]:
        """The object sealed in ``token``.

        Raises:
            SealError: not a token of this format, sealed under another master key, or altered.

        Example:
            >>> Sealer(b"k").unseal("v1.AAAA")
            Traceback (most recent call last):
            ...
            ferrogate.mcp.secrets.SealError: the sealed credentials are not a v1 token
        """
        if not isinstance(token, str) or not token.startswith(PREFIX):
            raise SealError("the sealed credentials are not a v1 token")
        body = token[len(PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise SealError("the sealed credentials are not a v1 token") from None
        if len(raw) < _NONCE + 16:  # a nonce and a GCM tag at least
            raise SealError("the sealed credentials are not a v1 token")
        aead = self._aead
        from cryptography.exceptions import InvalidTag

        try:
            plain = aead.decrypt(raw[:_NONCE], raw[_NONCE:], INFO)
        except InvalidTag:
            raise SealError("the sealed credentials cannot be opened (another master key, or altered)") from None
        value = orjson.loads(plain)
        if not isinstance(value, dict):
            raise SealError("the sealed credentials are not a JSON object")
        return value


def split_credentials(doc: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A server document cut in two: the document without its credentials, and the credentials (empty fields left
    out: ``{}`` when the server has none).

    Example:
        >>> split_credentials({"id": "gh", "transport": "http", "url": "https://x", "headers": {}, "bearer_token": "t"})
        ({'id': 'gh', 'transport': 'http', 'url': 'https://x'}, {'bearer_token': 't'})
    """
    public = {k: v for k, v in doc.items() if k not in CREDENTIAL_FIELDS}
    secret = {k: doc[k] for k in CREDENTIAL_FIELDS if doc.get(k)}
    return public, secret


def merge_credentials(doc: Mapping[str, Any], credentials: Mapping[str, Any] | None) -> dict[str, Any]:
    """The whole server document again (what ``McpServer`` validates): ``doc`` with ``credentials`` put back.

    Example:
        >>> merge_credentials({"id": "gh", "transport": "stdio", "command": "gh-mcp"}, {"env": {"GH_TOKEN": "t"}})
        {'id': 'gh', 'transport': 'stdio', 'command': 'gh-mcp', 'env': {'GH_TOKEN': 't'}}
    """
    merged = {k: v for k, v in doc.items() if k not in CREDENTIAL_FIELDS}
    for name in CREDENTIAL_FIELDS:
        if credentials and credentials.get(name):
            merged[name] = credentials[name]
    return merged
