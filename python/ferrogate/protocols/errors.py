"""Errors in the client's protocol, whatever the upstream spoke: one status table for every pair.

An OpenAI client (chat, Responses, embeddings) always gets OpenAI's error shape
(``{"error": {"message", "type", "param", "code"}}``), an Anthropic client Anthropic's
(``{"type": "error", "error": {"type", "message"}}``). The gateway's own errors
(:class:`~ferrogate.errors.GatewayError`) keep their status and take the client's shape. An upstream's error
answer is passed through unchanged when the upstream spoke the client's protocol (its details are kept), and
otherwise read (:func:`upstream_error`) and rendered again, its status mapped by :data:`STATUS`:

==========  ======================  =====================  ===========  ==============
upstream    OpenAI type             Anthropic type         to OpenAI    to Anthropic
==========  ======================  =====================  ===========  ==============
400         invalid_request_error   invalid_request_error  400          400
401         invalid_request_error   authentication_error   401          401
402         insufficient_quota      billing_error          402          402
403         permission_error        permission_error       403          403
404         not_found_error         not_found_error        404          404
408         timeout                 timeout_error          408          504
413         invalid_request_error   request_too_large      413          413
422         invalid_request_error   invalid_request_error  422          400
429         rate_limit_exceeded     rate_limit_error       429          429
500         server_error            api_error              500          500
502, 504    upstream_error          api_error              502/504      502/504
503         server_error            overloaded_error       503          529
529         server_error            overloaded_error       503          529
==========  ======================  =====================  ===========  ==============

Any other 4xx maps like 400 and any other 5xx like 500. ``retry-after`` and ``retry-after-ms`` of the upstream's
answer go on to the client (Anthropic's rate-limit and overload errors carry them).

Example:
    >>> err = upstream_error(529, b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
    ...                      "anthropic.messages", [("retry-after", "3")])
    >>> err.status, err.to_body()["error"]["type"], err.headers
    (503, 'server_error', [('retry-after', '3')])
    >>> render(err, "anthropic.messages")[0]
    529
"""

from __future__ import annotations

from typing import Any

import orjson

from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.protocols import ANTHROPIC

#: upstream status -> (status to an OpenAI client, OpenAI type, status to an Anthropic client, Anthropic type).
STATUS: dict[int, tuple[int, str, int, str]] = {
    400: (400, "invalid_request_error", 400, "invalid_request_error"),
    401: (401, "invalid_request_error", 401, "authentication_error"),
    402: (402, "insufficient_quota", 402, "billing_error"),
    403: (403, "permission_error", 403, "permission_error"),
    404: (404, "not_found_error", 404, "not_found_error"),
    408: (408, "timeout", 504, "timeout_error"),
    413: (413, "invalid_request_error", 413, "request_too_large"),
    422: (422, "invalid_request_error", 400, "invalid_request_error"),
    429: (429, "rate_limit_exceeded", 429, "rate_limit_error"),
    500: (500, "server_error", 500, "api_error"),
    502: (502, "upstream_error", 502, "api_error"),
    503: (503, "server_error", 529, "overloaded_error"),
    504: (504, "upstream_error", 504, "timeout_error"),
    529: (503, "server_error", 529, "overloaded_error"),
}
_RETRY_HEADERS = frozenset({"retry-after", "retry-after-ms"})
#: The longest upstream message carried on (an upstream's error page must not become the client's body).
_MAX_MESSAGE = 2000


def row(status: int) -> tuple[int, str, int, str]:
    """The :data:`STATUS` row of an upstream or gateway status (unlisted 4xx as 400, 5xx as 500).

    Example:
        >>> row(418)
        (418, 'invalid_request_error', 418, 'invalid_request_error')
    """
    found = STATUS.get(status)
    if found is not None:
        return found
    base = STATUS[400] if status < 500 else STATUS[500]
    return (status, base[1], status, base[3])


class UpstreamError(GatewayError):
    """An upstream's own error answer, carried to the client in the client's protocol.

    ``type``, ``code`` and ``param`` are the upstream's when it spoke OpenAI's protocol, else mapped from
    its status (:data:`STATUS`); the message is the upstream's, bounded.
    """

    __slots__ = ("upstream_protocol", "upstream_status", "upstream_type")

    def __init__(
        self,
        upstream_status: int,
        message: str,
        upstream_type: str | None,
        upstream_protocol: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(ErrorKind.UPSTREAM_PROTOCOL, message, param=param, headers=headers, code=code)
        self.upstream_status = upstream_status
        self.upstream_type = upstream_type
        self.upstream_protocol = upstream_protocol

    @property
    def status(self) -> int:
        """The status an OpenAI client receives (:data:`STATUS`)."""
        return row(self.upstream_status)[0]

    @property
    def wire_code(self) -> str | None:
        """The upstream's code, else its error type."""
        return self.code or self.upstream_type

    def to_body(self) -> dict[str, Any]:
        """OpenAI's error shape, with the upstream's type when it spoke OpenAI's protocol."""
        kind = self.upstream_type if self.upstream_protocol != ANTHROPIC else None
        kind = kind or row(self.upstream_status)[1]
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.wire_code}}


def upstream_error(status: int, body: bytes, protocol: str, headers: list[tuple[str, str]]) -> UpstreamError:
    """Read an upstream's error answer (``status`` >= 400) spoken in ``protocol``; an unreadable body becomes
    a message naming the status. ``headers`` are the upstream's response headers (the retry hints are kept).

    Example:
        >>> upstream_error(429, b'{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}',
        ...                "openai.chat", []).to_body()["error"]["code"]
        'rate_limit_exceeded'
    """
    message, kind, code, param = f"upstream answered HTTP {status}", None, None, None
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = None
    error = answer.get("error") if type(answer) is dict else None
    if type(error) is dict:
        if type(text := error.get("message")) is str and text:
            message = text[:_MAX_MESSAGE]
        kind = error.get("type") if type(error.get("type")) is str else None
        if protocol != ANTHROPIC:  # Anthropic's errors have no code or param
            code = error.get("code") if type(error.get("code")) is str else None
            param = error.get("param") if type(error.get("param")) is str else None
    elif type(error) is str and error:  # some OpenAI-compatible servers send {"error": "text"}
        message = error[:_MAX_MESSAGE]
    kept = [(k, v) for k, v in headers if k.lower() in _RETRY_HEADERS]
    return UpstreamError(status, message, kind, protocol, code=code, param=param, headers=kept)


def anthropic_type(err: GatewayError) -> str:
    """The Anthropic error type of ``err``: an upstream Anthropic error keeps its own; others map by status.

    Example:
        >>> anthropic_type(GatewayError(ErrorKind.RATE_LIMITED_REQUESTS, "slow down"))
        'rate_limit_error'
    """
    if isinstance(err, UpstreamError):
        if err.upstream_protocol == ANTHROPIC and err.upstream_type is not None:
            return err.upstream_type
        return row(err.upstream_status)[3]
    return row(err.status)[3]


def render(err: GatewayError, protocol: str) -> tuple[int, bytes]:
    """``(status, body)`` of ``err`` for a client of ``protocol``.

    Example:
        >>> render(GatewayError(ErrorKind.UNKNOWN_MODEL, "no such model"), "anthropic.messages")
        (404, b'{"type":"error","error":{"type":"not_found_error","message":"no such model"}}')
    """
    if protocol != ANTHROPIC:
        return err.status, err.to_json()
    status = row(err.upstream_status)[2] if isinstance(err, UpstreamError) else err.status
    return status, orjson.dumps({"type": "error", "error": {"type": anthropic_type(err), "message": err.message}})
