"""The error table covers every kind, and the body is OpenAI's shape."""

from __future__ import annotations

import orjson
import pytest

from ferrogate.errors import KINDS, ErrorKind, GatewayError, Source


def test_every_kind_has_a_row() -> None:
    assert set(KINDS) == set(ErrorKind)


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_statuses_match_sources(kind: ErrorKind) -> None:
    info = KINDS[kind]
    if info.source is Source.CLIENT:
        # 429 is retryable, except an exhausted budget: waiting does not refill it soon
        assert 400 <= info.status < 500
        assert info.retryable == (info.status == 429 and kind is not ErrorKind.INSUFFICIENT_QUOTA)
    else:
        assert info.status >= 500


def test_body_shape() -> None:
    err = GatewayError(ErrorKind.INVALID_FIELD, "bad", param="messages")
    assert orjson.loads(err.to_json()) == {
        "error": {"message": "bad", "type": "invalid_request_error", "param": "messages", "code": "invalid_value"}
    }
    assert err.status == 400
