"""OpenAI embeddings (``POST /v1/embeddings``): the receive phase's checks, the token count, the mock answer.

``input`` is a non-empty string, an array of non-empty strings, an array of token ids, or an array of token id
arrays (each non-empty); at most :data:`MAX_INPUTS` inputs in one request. Refusals are 400 ``invalid_value``
naming the JSON path, as in :mod:`ferrogate.pipeline.validate`; unknown fields pass upstream untouched.

The built-in mock provider answers with :func:`mock_embeddings`: one unit vector per input, the same for the
same input (its components come from a SHAKE-256 stream of the input: cheap C work per component), as floats
or as OpenAI's base64 of little-endian float32.

Example:
    >>> payload = {"model": "m", "input": ["hello", "world"], "dimensions": 4}
    >>> validate_embeddings_request(payload, RequestBounds())
    >>> count_input(payload, "o200k_base")
    2
    >>> answer = orjson.loads(mock_embeddings(payload, "m", "r1", 2))
    >>> [len(d["embedding"]) for d in answer["data"]], answer["usage"]
    ([4, 4], {'prompt_tokens': 2, 'total_tokens': 2})
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
import sys
from array import array
from collections import Counter
from typing import Any, Final

import orjson

from ferrogate import _core
from ferrogate.config.model import RequestBounds
from ferrogate.protocols.checks import bad as _bad
from ferrogate.protocols.checks import kind as _kind
from ferrogate.protocols.checks import tokens as _tokens

__all__ = ["MAX_INPUTS", "count_input", "mock_embeddings", "usage_of_embeddings", "validate_embeddings_request"]

#: Inputs per request at most (OpenAI's 2048).
MAX_INPUTS: Final = 2048
#: ``dimensions`` at most.
MAX_DIMENSIONS: Final = 65536
#: A token id is below this.
_TOKEN_LIMIT = 2**31
_MAX_MODEL = 256
_MAX_USER = 512
#: The vector component each byte of the hash stream stands for (before scaling).
_LEVELS = [byte - 127.5 for byte in range(256)]


def validate_embeddings_request(payload: Any, bounds: RequestBounds) -> None:
    """Check a parsed ``/v1/embeddings`` body (``bounds`` is taken for symmetry with the other protocols; the
    input limits are OpenAI's own).

    Raises:
        GatewayError: 400 ``invalid_value`` naming the first bad field in ``param``.

    Example:
        >>> from ferrogate.errors import GatewayError
        >>> try:
        ...     validate_embeddings_request({"model": "m", "input": [[1, 2], []]}, RequestBounds())
        ... except GatewayError as err:
        ...     print(err.param)
        input[1]
    """
    if type(payload) is not dict:
        raise _bad("", "the request body must be a JSON object")
    model = payload.get("model")
    if type(model) is not str or not model:
        raise _bad("model", "'model' is required and must be a non-empty string")
    if len(model) > _MAX_MODEL:
        raise _bad("model", f"'model' must be at most {_MAX_MODEL} characters")
    _input(payload.get("input"))
    dimensions = payload.get("dimensions")
    if dimensions is not None and (type(dimensions) is not int or not 1 <= dimensions <= MAX_DIMENSIONS):
        got = dimensions if type(dimensions) in (int, float) else _kind(dimensions)
        raise _bad("dimensions", f"'dimensions' must be an integer between 1 and {MAX_DIMENSIONS}, got {got}")
    encoding_format = payload.get("encoding_format")
    if encoding_format is not None and encoding_format not in ("float", "base64"):
        raise _bad("encoding_format", "'encoding_format' must be 'float' or 'base64'")
    user = payload.get("user")
    if user is not None and (type(user) is not str or len(user) > _MAX_USER):
        raise _bad("user", f"'user' must be a string of at most {_MAX_USER} characters")


def _input(value: Any) -> None:
    if type(value) is str:
        if not value:
            raise _bad("input", "'input' must not be an empty string")
        return
    if type(value) is not list or not value:
        what = "missing" if value is None else "an empty array" if value == [] else _kind(value)
        raise _bad("input", f"'input' must be a string or a non-empty array of strings or token ids, got {what}")
    first = type(value[0])
    if first not in (str, int, list):
        raise _bad(
            "input[0]", f"'input[0]' must be a string, a token id or an array of token ids, got {_kind(value[0])}"
        )
    if first is int:
        _tokens_of("input", value)
        return
    if len(value) > MAX_INPUTS:
        raise _bad("input", f"'input' must hold at most {MAX_INPUTS} inputs, got {len(value)}")
    for i, item in enumerate(value):
        if type(item) is not first:
            raise _bad(f"input[{i}]", f"'input[{i}]' must be a {_kind(value[0])} like 'input[0]', got {_kind(item)}")
        if not item:
            raise _bad(f"input[{i}]", f"'input[{i}]' must not be empty")
        if first is list:
            _tokens_of(f"input[{i}]", item)


def _tokens_of(where: str, tokens: list[Any]) -> None:
    for j, token in enumerate(tokens):
        if type(token) is not int or not 0 <= token < _TOKEN_LIMIT:
            got = token if type(token) in (int, float) else _kind(token)
            raise _bad(
                f"{where}[{j}]", f"'{where}[{j}]' must be a token id between 0 and {_TOKEN_LIMIT - 1}, got {got}"
            )


def _inputs(payload: dict[str, Any]) -> list[Any]:
    """The inputs of a validated request, one entry each: a string or a list of token ids."""
    value = payload["input"]
    return [value] if type(value) is str or type(value[0]) is int else value


def count_input(payload: dict[str, Any], encoding: str) -> int:
    """The input tokens of a validated request: strings counted in ``encoding``, token arrays by length.

    Example:
        >>> count_input({"input": [[1, 2, 3], [4]]}, "o200k_base")
        4
    """
    return sum(_core.count_tokens(item, encoding) if type(item) is str else len(item) for item in _inputs(payload))


def _vector(item: str | list[int], dimensions: int) -> bytes:
    """A unit vector that depends only on ``item``, as little-endian float32: each byte ``b`` of a SHAKE-256
    stream of the input is the level ``b - 127.5`` (never 0), scaled to unit length. The work per component is
    C code: a byte histogram for the norm, then one table lookup per byte."""
    seed = b"s" + item.encode() if isinstance(item, str) else b"t" + orjson.dumps(item)
    stream = hashlib.shake_256(seed).digest(dimensions)
    norm = math.sqrt(math.fsum(count * _LEVELS[byte] ** 2 for byte, count in Counter(stream).items()))
    table = [struct.pack("<f", level / norm) for level in _LEVELS]
    return b"".join(map(table.__getitem__, stream))


def mock_embeddings(
    payload: dict[str, Any], model: str, request_id: str, prompt_tokens: int, default_dimensions: int = 256
) -> bytes:
    """The mock provider's create-embedding response for a validated request: ``dimensions`` (or
    ``default_dimensions``) floats per input, base64 of little-endian float32 when ``encoding_format`` asks.
    ``request_id`` goes unused: OpenAI's answer carries no id.

    Example:
        >>> one = orjson.loads(mock_embeddings({"input": "hi"}, "m", "r1", 1, 3))["data"][0]["embedding"]
        >>> two = orjson.loads(mock_embeddings({"input": "hi"}, "m", "r2", 1, 3))["data"][0]["embedding"]
        >>> one == two, round(sum(x * x for x in one), 5)
        (True, 1.0)
    """
    dimensions = payload.get("dimensions") or default_dimensions
    as_base64 = payload.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(_inputs(payload)):
        vector = _vector(item, dimensions)
        embedding: Any
        if as_base64:
            embedding = base64.b64encode(vector).decode()
        else:
            floats = array("f", vector)
            if sys.byteorder == "big":
                floats.byteswap()
            embedding = floats.tolist()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return orjson.dumps({"object": "list", "data": data, "model": model, "usage": usage})


def usage_of_embeddings(body: bytes) -> int | None:
    """``usage.prompt_tokens`` of an upstream's create-embedding response (an implausible count reads as 0),
    or None when it has no usage.

    Example:
        >>> usage_of_embeddings(b'{"usage": {"prompt_tokens": 8}}')
        8
        >>> usage_of_embeddings(b'{"usage": {"prompt_tokens": -2}}'), usage_of_embeddings(b"[]")
        (0, None)
    """
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    usage = answer.get("usage") if type(answer) is dict else None
    if type(usage) is not dict:
        return None
    return _tokens(usage.get("prompt_tokens"))
