"""Usage metering: the price table (cost of a request) and the batched, spooled usage recorder.

See docs/metering.md.

Example:
    >>> table = PriceTable(models={"gpt-4o": Price(input=2.5, output=10, cached_input=1.25)})
    >>> table.cost("gpt-4o", prompt=1000, completion=100, cached=400)
    0.003
"""

from __future__ import annotations

from ferrogate.metering.prices import Price, PriceTable, load_prices, parse_prices
from ferrogate.metering.recorder import RecorderStats, UsageRecorder
from ferrogate.store.usage import UsageRecord, UsageRow

__all__ = [
    "Price",
    "PriceTable",
    "RecorderStats",
    "UsageRecord",
    "UsageRecorder",
    "UsageRow",
    "load_prices",
    "parse_prices",
]
