"""The embeddings protocol: field checks, the input count, the mock answer and the upstream's usage."""

from __future__ import annotations

import array
import base64
import math
from typing import Any

import httpx2
import openai
import orjson
import pytest
from openai.types import CreateEmbeddingResponse

from ferrogate import _core
from ferrogate.config.model import RequestBounds
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.protocols.embeddings import (
    count_input,
    mock_embeddings,
    usage_of_embeddings,
    validate_embeddings_request,
)

BOUNDS = RequestBounds()


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "text-embedding-3-small", "input": "hello", **fields}


@pytest.mark.parametrize(
    "payload",
    [
        body(),
        body(input=["a", "b"], dimensions=1, encoding_format="float", user="u"),
        body(input=["x"] * 2048, dimensions=65536, encoding_format="base64"),
        body(input=[0, 1, 2**31 - 1]),
        body(input=[[1], [2, 3]], dimensions=None, encoding_format=None, user=None, extra={"x": 1}),
        body(input=list(range(5000))),
    ],
)
def test_valid_requests_pass(payload: dict[str, Any]) -> None:
    validate_embeddings_request(payload, BOUNDS)


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ("hello", ""),
        ({"input": "x"}, "model"),
        (body(model=""), "model"),
        (body(model="m" * 257), "model"),
        ({"model": "m"}, "input"),
        (body(input=""), "input"),
        (body(input=[]), "input"),
        (body(input=5), "input"),
        (body(input={"text": "x"}), "input"),
        (body(input=["a", ""]), "input[1]"),
        (body(input=["a", 1]), "input[1]"),
        (body(input=["x"] * 2049), "input"),
        (body(input=[[1]] * 2049), "input"),
        (body(input=[1.5]), "input[0]"),
        (body(input=[None]), "input[0]"),
        (body(input=[True]), "input[0]"),
        (body(input=[1, "a"]), "input[1]"),
        (body(input=[1, -1]), "input[1]"),
        (body(input=[2**31]), "input[0]"),
        (body(input=[1, True]), "input[1]"),
        (body(input=[[1], []]), "input[1]"),
        (body(input=[[1], [2, "x"]]), "input[1][1]"),
        (body(input=[[1], 2]), "input[1]"),
        (body(dimensions=0), "dimensions"),
        (body(dimensions=65537), "dimensions"),
        (body(dimensions=True), "dimensions"),
        (body(dimensions=8.0), "dimensions"),
        (body(encoding_format="binary"), "encoding_format"),
        (body(encoding_format=["float"]), "encoding_format"),
        (body(user=7), "user"),
        (body(user="u" * 513), "user"),
    ],
)
def test_invalid_requests_name_the_field(payload: Any, param: str) -> None:
    with pytest.raises(GatewayError) as err:
        validate_embeddings_request(payload, BOUNDS)
    assert (err.value.kind, err.value.status, err.value.param) == (ErrorKind.INVALID_FIELD, 400, param)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hello world", _core.count_tokens("hello world", "cl100k_base")),
        (
            ["hello world", "a b c"],
            _core.count_tokens("hello world", "cl100k_base") + _core.count_tokens("a b c", "cl100k_base"),
        ),
        ([5, 6, 7], 3),
        ([[5, 6], [7], [8, 9, 10]], 6),
    ],
)
def test_count_input(value: Any, expected: int) -> None:
    assert count_input({"model": "m", "input": value}, "cl100k_base") == expected


def vectors(answer: bytes) -> list[list[float]]:
    """The embeddings as the SDK reads them: base64 strings decoded as float32 the way openai-python does."""
    data = orjson.loads(answer)
    for item in data["data"]:
        if isinstance(item["embedding"], str):
            item["embedding"] = array.array("f", base64.b64decode(item["embedding"])).tolist()
    return [e.embedding for e in CreateEmbeddingResponse.model_validate(data).data]


@pytest.mark.parametrize("encoding_format", [None, "float", "base64"])
@pytest.mark.parametrize("dimensions", [None, 1, 3, 1536])
def test_mock_vectors_are_unit_length_and_deterministic(encoding_format: str | None, dimensions: int | None) -> None:
    payload = body(input=["hello", "world", "hello"], encoding_format=encoding_format, dimensions=dimensions)
    answer = mock_embeddings(payload, "mock-embed", "r1", 3, default_dimensions=8)
    parsed = CreateEmbeddingResponse.model_validate({**orjson.loads(answer), "data": []})
    assert (parsed.object, parsed.model, parsed.usage.prompt_tokens, parsed.usage.total_tokens) == (
        "list",
        "mock-embed",
        3,
        3,
    )
    got = vectors(answer)
    assert [item["index"] for item in orjson.loads(answer)["data"]] == [0, 1, 2]
    assert [len(v) for v in got] == [dimensions or 8] * 3
    for v in got:
        assert math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-5)
    assert got[0] == got[2]
    if (dimensions or 8) > 1:
        assert got[0] != got[1]
    assert vectors(mock_embeddings(payload, "mock-embed", "r2", 3, default_dimensions=8)) == got


def test_base64_and_float_answers_hold_the_same_numbers() -> None:
    floats = vectors(mock_embeddings(body(input=[[1, 2], [3]], dimensions=64), "m", "r", 3))
    packed = vectors(mock_embeddings(body(input=[[1, 2], [3]], dimensions=64, encoding_format="base64"), "m", "r", 3))
    assert floats == packed
    assert floats[0] != floats[1]


def test_text_and_token_inputs_differ() -> None:
    text = vectors(mock_embeddings(body(input="1"), "m", "r", 1))
    tokens = vectors(mock_embeddings(body(input=[1]), "m", "r", 1))
    assert text != tokens


def test_the_openai_client_reads_the_mock() -> None:
    """The SDK over HTTP: by default it asks for base64 and decodes it itself."""
    asked: list[dict[str, Any]] = []

    def gateway(request: httpx2.Request) -> httpx2.Response:
        payload = orjson.loads(request.content)
        validate_embeddings_request(payload, BOUNDS)
        asked.append(payload)
        tokens = count_input(payload, "o200k_base")
        return httpx2.Response(200, content=mock_embeddings(payload, payload["model"], "r", tokens))

    with httpx2.Client(transport=httpx2.MockTransport(gateway)) as http:
        client = openai.OpenAI(api_key="k", base_url="http://gateway/v1", http_client=http)
        default = client.embeddings.create(model="e", input=["one", "two"], dimensions=16)
        floats = client.embeddings.create(model="e", input=["one", "two"], dimensions=16, encoding_format="float")
    assert asked[0]["encoding_format"] == "base64"
    assert [len(e.embedding) for e in default.data] == [16, 16]
    assert [e.embedding for e in default.data] == [e.embedding for e in floats.data]
    assert default.usage.prompt_tokens == 2


@pytest.mark.parametrize(
    ("answer", "tokens"),
    [
        (b'{"object": "list", "data": [], "usage": {"prompt_tokens": 8, "total_tokens": 8}}', 8),
        (b'{"usage": {"prompt_tokens": -1}}', 0),
        (b'{"usage": {"prompt_tokens": 2.0}}', 0),
        (b'{"usage": {"prompt_tokens": true}}', 0),
        (b'{"usage": {}}', 0),
        (b'{"data": []}', None),
        (b"[]", None),
        (b"nope", None),
    ],
)
def test_usage_of_embeddings(answer: bytes, tokens: int | None) -> None:
    assert usage_of_embeddings(answer) == tokens
