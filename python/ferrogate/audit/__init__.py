"""The tamper-evident audit trail: events for admin changes and data-plane requests, a batched spooled
writer, and chain verification. See docs/audit.md.

Example:
    >>> ev = admin_event("master", "team.create", "team_1", "team_1", None, {"name": "ml", "api_key": "sk-1"})
    >>> ev.kind, ev.data["after"]
    ('admin', {'name': 'ml'})
"""

from __future__ import annotations

from ferrogate.audit.events import admin_event, is_secret, request_event, request_facts, scrub
from ferrogate.audit.verify import Problem, Report, verify_records, verify_store
from ferrogate.audit.writer import AuditStats, AuditWriter
from ferrogate.store.audit import GENESIS, AuditEvent, AuditRecord

__all__ = [
    "GENESIS",
    "AuditEvent",
    "AuditRecord",
    "AuditStats",
    "AuditWriter",
    "Problem",
    "Report",
    "admin_event",
    "is_secret",
    "request_event",
    "request_facts",
    "scrub",
    "verify_records",
    "verify_store",
]
