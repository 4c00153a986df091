"""Observability: Prometheus metrics (:mod:`.metrics`, :mod:`.families`) and structured logs (:mod:`.logs`).

Metrics: the account phase calls :meth:`ferrogate.observability.metrics.Metrics.observe` once per request
(plain in-process aggregates, about a microsecond); a background task flushes them into prometheus-client
every second, in its multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set (``ferrogate serve`` sets a
fresh directory per instance), and ``GET /metrics`` on any worker shows the whole instance. Every family is
declared once, in :mod:`ferrogate.observability.families`. See docs/metrics.md.

This package imports nothing heavy itself (prometheus-client is loaded with :mod:`.metrics`), so that
importing :mod:`.logs` does not load it before ``ferrogate serve`` has set the multiprocess directory.

Example:
    >>> from ferrogate.observability import REQUESTS
    >>> REQUESTS.name, REQUESTS.labels
    ('ferrogate_requests_total', ('route', 'model', 'team', 'status'))
"""

from __future__ import annotations

from ferrogate.observability.families import FAMILIES, NONE, OTHER, REQUESTS, Family, counter, gauge, histogram

__all__ = ["FAMILIES", "NONE", "OTHER", "REQUESTS", "Family", "counter", "gauge", "histogram"]
