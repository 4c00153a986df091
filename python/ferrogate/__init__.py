"""ferrogate: an AI gateway. One fast, governed entry point for every LLM and MCP call.

The hot path's CPU work lives in the Rust extension :mod:`ferrogate._core`; this package
does configuration, routing, providers and the HTTP server (Granian, RSGI).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ferrogate")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
