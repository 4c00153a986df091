"""Guardrails: secrets, PII and deny patterns found in every request (and answer, when asked), with actions set
per category or rule and overridden per team and key (docs/guardrails.md).

- :mod:`~ferrogate.guardrails.rules`: rules as data (built-in, the configuration's, a Gitleaks file's).
- :mod:`~ferrogate.guardrails.policy`: the policy documents and how they merge (config <- global <- team <- key).
- :mod:`~ferrogate.guardrails.registry`: :class:`Guardrails`, the worker's one scanner and the policies.

The guard phase (:mod:`ferrogate.pipeline.guard`) scans each request with its policy.
"""

from ferrogate.guardrails.policy import ACTION_NAMES, PolicyDoc, PolicyError
from ferrogate.guardrails.registry import Effective, Guardrails

__all__ = ["ACTION_NAMES", "Effective", "Guardrails", "PolicyDoc", "PolicyError"]
