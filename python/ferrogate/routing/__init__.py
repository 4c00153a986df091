"""Routing across a model group's deployments: the attempt order (strategies), circuit breakers and retry
budgets shared by every worker, routing rules (Cedar), structured-output checks, and hot reload of the
configuration (docs/routing.md)."""
