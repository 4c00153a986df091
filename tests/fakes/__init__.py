"""Fake upstream providers that speak each provider's real wire format."""
