"""Taking the usage-only event the client did not ask for out of a stream chunk."""

from __future__ import annotations

import pytest

from ferrogate.pipeline.phases import _without_usage

CONTENT = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}'
SPACED = b'data: {"choices": [], "usage": {"prompt_tokens": 3}}'
DONE = b"data: [DONE]"
CONTINUOUS = b'data: {"choices":[{"index":0,"delta":{}}],"usage":{"prompt_tokens":3}}'


@pytest.mark.parametrize(
    ("chunk", "expected"),
    [
        (USAGE + b"\n\n", b""),
        (USAGE + b"\n\n" + DONE + b"\n\n", DONE + b"\n\n"),
        (CONTENT + b"\n\n" + SPACED + b"\n\n" + DONE + b"\n\n", CONTENT + b"\n\n" + DONE + b"\n\n"),
        (CONTENT + b"\n\n", CONTENT + b"\n\n"),
        (CONTINUOUS + b"\n\n", CONTINUOUS + b"\n\n"),  # usage on a content chunk stays
        (b'data: {"choices":[],"usage":null}\n\n', b'data: {"choices":[],"usage":null}\n\n'),
    ],
)
def test_without_usage(chunk: bytes, expected: bytes) -> None:
    assert _without_usage(chunk) == expected
