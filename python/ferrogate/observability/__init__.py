"""Observability: Prometheus metrics (:mod:`.metrics`, :mod:`.families`) and structured logs (:mod:`.logs`).

Metrics: the account phase calls :meth:`ferrogate.observability.metrics.Metrics.observe` once per request
(plain in-process aggregates, about a microsecond); a background task flushes them into prometheus-client
every second, in its multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set (``ferrogate serve`` sets a
fresh directory per instance), and ``GET /metrics`` on any worker shows the whole instance. Every family is
declared once, in :mod:`ferrogate.observability.families`. See docs/metrics.md.

Traces (:mod:`.traces`, OpenTelemetry) are on only when :func:`tracing_enabled`; that module, and OpenTelemetry
with it, is imported by the workers only then. See docs/traces.md.

This package imports nothing heavy itself (prometheus-client is loaded with :mod:`.metrics`), so that
importing :mod:`.logs` does not load it before ``ferrogate serve`` has set the multiprocess directory.

Example:
    >>> from ferrogate.observability import REQUESTS
    >>> REQUESTS.name, REQUESTS.labels
    ('ferrogate_requests_total', ('route', 'model', 'team', 'status'))
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ferrogate.observability.families import FAMILIES, NONE, OTHER, REQUESTS, Family, counter, gauge, histogram

__all__ = [
    "FAMILIES",
    "NONE",
    "OTHER",
    "OTLP_ENDPOINT_VARIABLES",
    "REQUESTS",
    "Family",
    "counter",
    "gauge",
    "histogram",
    "tracing_enabled",
]

#: Either turns tracing on (the OTLP exporter's own variables: for traces only, or for every signal).
OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def tracing_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether traces are exported: an OTLP endpoint (for traces, or for all signals) is set.

    Example:
        >>> tracing_enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}), tracing_enabled({})
        (True, False)
    """
    return any(environ.get(name) for name in OTLP_ENDPOINT_VARIABLES)
