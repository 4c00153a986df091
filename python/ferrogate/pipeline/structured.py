"""Structured outputs in the forward phase: a whole answer checked against the request's JSON schema
(``response_format`` json_schema, Responses ``text.format``, Anthropic ``output_config.format``), per the model
group's ``schema_check`` (docs/routing.md, "Structured outputs").

``report`` marks the answer (``x-ferrogate-schema: valid | invalid``) and counts it; ``retry`` asks the same
deployment once more when the answer does not match (the second answer is sent either way, marked); ``error``
answers a mismatch with a 502 ``response_schema_mismatch`` listing the first violations. Streams are not checked
(their text is not kept). A schema that does not compile is not checked (validation of the request refuses what
it can; the rest is the upstream's to refuse).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ferrogate._core import SchemaError
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.observability.families import SCHEMA_CHECKS
from ferrogate.routing import schema as structured

if TYPE_CHECKING:
    from ferrogate.observability.metrics import Metrics
    from ferrogate.pipeline.context import RequestContext
    from ferrogate.providers.base import Reply

#: The response header that says how the answer compared with its schema.
SCHEMA_HEADER = "x-ferrogate-schema"
VALID, INVALID, RETRY = "valid", "invalid", "retry"


def verdict(ctx: RequestContext, reply: Reply, mode: str, retried: bool, metrics: Metrics | None) -> str | None:
    """How a whole 200 answer compares with its request's schema under the group's ``mode`` (not ``off``):
    ``None`` not checked (no schema, no text, over the work budget), ``"valid"``, ``"invalid"`` (send it marked),
    or ``"retry"`` (ask once more: ``mode`` is ``retry`` and this was the first answer).

    Raises:
        GatewayError: 502 ``response_schema_mismatch`` (``mode`` ``error``) naming the first violations.
    """
    group = ctx.group
    try:
        schema = structured.schema_for(ctx.request)
    except SchemaError:
        schema = None
        _count(metrics, group, "unchecked")
        return None
    if schema is None:
        return None
    errors = structured.check(schema, reply.protocol, reply.body or b"")
    if errors is None:
        _count(metrics, group, "unchecked")
        return None
    if not errors:
        _count(metrics, group, VALID)
        return VALID
    if mode == "retry" and not retried:
        _count(metrics, group, "retried")
        return RETRY
    if mode == "error":
        _count(metrics, group, "refused")
        listed = "; ".join(f"{path or '/'}: {message}" for path, message in errors)
        raise GatewayError(
            ErrorKind.SCHEMA_MISMATCH,
            f"the answer of deployment '{ctx.plan.current.key}' does not match the response_format schema: {listed}",
        )
    _count(metrics, group, INVALID)
    return INVALID


def _count(metrics: Metrics | None, group: str, result: str) -> None:
    if metrics is not None:
        metrics.add(SCHEMA_CHECKS, (group, result), 1)
