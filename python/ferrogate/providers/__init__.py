"""Provider adapters, one module per provider, all satisfying :class:`base.Provider`."""

from __future__ import annotations

from ferrogate.config.model import Upstream
from ferrogate.providers.base import Provider, Reply
from ferrogate.providers.mock import MockProvider
from ferrogate.providers.openai import OpenAIProvider

_FACTORIES: dict[str, type[MockProvider] | type[OpenAIProvider]] = {
    "openai": OpenAIProvider,
    "mock": MockProvider,
}


def build_provider(upstream: Upstream) -> Provider:
    """The adapter for ``upstream.provider`` (the config schema admits only known names)."""
    return _FACTORIES[upstream.provider](upstream)


__all__ = ["Provider", "Reply", "build_provider"]
