"""The price of a model: USD per million input, output and cached-input tokens.

The schema of one entry, used by a deployment's ``price:`` (:mod:`.model`) and by the price table files
(:mod:`ferrogate.metering.prices`, which re-exports it). It lives in ``config`` because configuration imports
nothing else of ferrogate (docs/ARCHITECTURE.md, "Layers").

Example:
    >>> Price(input=2.5, output=10, cached_input=1.25).cached_rate
    1.25
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Price(BaseModel):
    """USD per million tokens; ``cached_input`` defaults to ``input`` (no cache discount).

    Example:
        >>> Price(input=2.5, output=10).cached_rate
        2.5
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0, allow_inf_nan=False, description="USD per 1M uncached prompt tokens")
    output: float = Field(ge=0, allow_inf_nan=False, description="USD per 1M completion tokens")
    cached_input: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="USD per 1M cached prompt tokens (default: input)"
    )

    @property
    def cached_rate(self) -> float:
        """The rate for cached prompt tokens (``cached_input``, else ``input``)."""
        return self.input if self.cached_input is None else self.cached_input
