"""Provider adapters, one module per provider, all satisfying :class:`base.Provider`.

Only the adapters the configuration uses are imported (each pulls in its translations).
"""

from __future__ import annotations

from importlib import import_module

from ferrogate.config.model import Upstream
from ferrogate.providers.base import Call, Provider, Reply

#: provider name -> (module, class) of its adapter.
_ADAPTERS: dict[str, tuple[str, str]] = {
    "openai": ("ferrogate.providers.openai", "OpenAIProvider"),
    "anthropic": ("ferrogate.providers.anthropic", "AnthropicProvider"),
    "mock": ("ferrogate.providers.mock", "MockProvider"),
}


def build_provider(upstream: Upstream, default_max_tokens: int = 4096) -> Provider:
    """The adapter for ``upstream.provider`` (the config schema admits only known names); ``default_max_tokens``
    is what a provider that needs a bound sends when the request gives none (``server.default_max_tokens``)."""
    module, name = _ADAPTERS[upstream.provider]
    adapter: Provider = getattr(import_module(module), name)(upstream, default_max_tokens)
    return adapter


__all__ = ["Call", "Provider", "Reply", "build_provider"]
