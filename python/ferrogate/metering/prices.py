"""The price table: USD per million input, output and cached-input tokens, per model.

The table ships inside the package (``ferrogate/data/prices.yaml``, :func:`packaged_prices`); a file named by
``server.prices_file`` adds entries to it or replaces entries by model name (:func:`standard_prices`), and a
deployment's own ``price:`` wins over both. :class:`Price` (one entry) is defined in
:mod:`ferrogate.config.prices`, since configuration imports nothing else of ferrogate; it is re-exported here.

A model is priced by its exact name, else by the longest listed name that is a prefix of it followed by ``-``,
``:`` or ``@`` (dated variants: ``gpt-4o-2024-08-06`` is billed as ``gpt-4o``). A model with no price has no
cost (``None``): the caller records it as unpriced, never as a silent zero.

Example:
    >>> table = PriceTable(models={"gpt-4o": Price(input=2.5, output=10, cached_input=1.25)})
    >>> table.cost("gpt-4o-2024-08-06", prompt=1_000_000, completion=0, cached=1_000_000)
    1.25
    >>> table.cost("unknown", prompt=1, completion=1) is None
    True
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ferrogate.config.errors import ConfigError, read_yaml_mapping, yaml_path
from ferrogate.config.prices import Price

__all__ = [
    "PACKAGED_FILE",
    "SEPARATORS",
    "Price",
    "PriceFile",
    "PriceTable",
    "load_prices",
    "packaged_prices",
    "parse_prices",
    "standard_prices",
]

#: Characters that may follow a listed name in a longer model name (``gpt-4o`` + ``-2024-08-06``).
SEPARATORS = ("-", ":", "@")
#: What may follow a listed name for its price to apply: a date or version stamp (``-2024-08-06``, ``-0613``)
#: and/or a ``:``/``@`` qualifier (a fine-tune, a pinned version). Any other suffix (``-pro``,
#: ``-realtime-preview``) names another model, often a dearer one: unpriced, so a budget refuses it.
_SUFFIX = re.compile(r"(?=.)(?:-\d{4}(?:-\d{2}-\d{2})?)?(?:[:@].*)?", re.DOTALL)
_CACHE_SIZE = 4096


class PriceFile(BaseModel):
    """The YAML document: ``models:`` maps a model name to its :class:`Price`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: dict[str, Price] = Field(default_factory=dict)


class PriceTable:
    """Prices by model name, with prefix matching for dated variants and a per-table lookup cache.

    A plain class over validated :class:`Price` values (looked up on every request: no pydantic on that path).

    Args:
        models: price by model name (validated :class:`Price` objects, e.g. from :func:`load_prices`).

    Example:
        >>> table = PriceTable(models={"gpt-4o": Price(input=2.5, output=10)})
        >>> table.price_for("gpt-4o-2024-08-06").output
        10.0
    """

    __slots__ = ("_cache", "models")

    def __init__(self, models: Mapping[str, Price] | None = None) -> None:
        self.models: dict[str, Price] = dict(models or {})
        self._cache: dict[str, tuple[Price, float, float, float] | None] = {}

    def __repr__(self) -> str:
        return f"PriceTable({len(self.models)} models)"

    def _lookup(self, model: str) -> tuple[Price, float, float, float] | None:
        try:
            return self._cache[model]
        except KeyError:
            pass
        price = self.models.get(model)
        if price is None:
            best = ""
            for name in self.models:
                if len(name) > len(best) and model.startswith(name) and _SUFFIX.fullmatch(model, len(name)):
                    best = name
            price = self.models.get(best) if best else None
        found = None if price is None else (price, price.input, price.cached_rate, price.output)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[model] = found
        return found

    def price_for(self, model: str) -> Price | None:
        """The price of ``model``: exact name first, then the longest listed prefix followed by a separator.

        Example:
            >>> table = PriceTable(models={"gpt-4o": Price(input=2.5, output=10),
            ...                            "gpt-4o-mini": Price(input=0.15, output=0.6)})
            >>> table.price_for("gpt-4o-mini-2024-07-18").input
            0.15
            >>> table.price_for("gpt-4omni") is None
            True
        """
        found = self._lookup(model)
        return None if found is None else found[0]

    def cost(self, model: str, prompt: int, completion: int, cached: int = 0) -> float | None:
        """USD for one request, or ``None`` when ``model`` has no price.

        ``cached`` prompt tokens (at most ``prompt``) are billed at the cached rate, the rest of the prompt at
        the input rate, and ``completion`` (reasoning included, as the upstream reports it) at the output rate.

        Example:
            >>> table = PriceTable(models={"m": Price(input=2, output=8, cached_input=0.5)})
            >>> table.cost("m", prompt=1_000_000, completion=500_000, cached=200_000)  # 1.6 + 0.1 + 4
            5.7
        """
        found = self._lookup(model)
        if found is None:
            return None
        _, input_rate, cached_rate, output_rate = found
        if cached > prompt:  # conditionals, not min/max: this runs once per request
            cached = prompt
        elif cached < 0:
            cached = 0
        return ((prompt - cached) * input_rate + cached * cached_rate + completion * output_rate) / 1_000_000

    def missing(self, models: Iterable[str]) -> list[str]:
        """The names in ``models`` that have no price, sorted and without repeats (the start-up warning).

        Example:
            >>> PriceTable(models={"gpt-4o": Price(input=2.5, output=10)}).missing(["gpt-4o-2024-08-06", "x", "x"])
            ['x']
        """
        return sorted({m for m in models if self._lookup(m) is None})

    def with_overrides(self, overrides: Mapping[str, Price] | None) -> PriceTable:
        """A table where ``overrides`` (by upstream model name, e.g. per deployment) replace listed prices.

        Example:
            >>> base = PriceTable(models={"gpt-4o": Price(input=2.5, output=10)})
            >>> base.with_overrides({"gpt-4o": Price(input=0, output=0)}).cost("gpt-4o", 10, 10)
            0.0
        """
        if not overrides:
            return self
        return PriceTable(models={**self.models, **overrides})


#: Where the packaged table lives, relative to the ``ferrogate`` package (it is in the wheel).
PACKAGED_FILE = "data/prices.yaml"


@cache
def _packaged_models() -> dict[str, Price]:
    source = resources.files("ferrogate").joinpath(PACKAGED_FILE)
    return parse_prices(source.read_text(encoding="utf-8"), f"ferrogate/{PACKAGED_FILE}").models


def packaged_prices() -> PriceTable:
    """The price table shipped inside the package (``ferrogate/data/prices.yaml``), read once per process.

    Found wherever the package is installed: it does not depend on the working directory.

    Example:
        >>> packaged_prices().cost("gpt-4o-mini-2024-07-18", prompt=1_000_000, completion=0)
        0.15
    """
    return PriceTable(_packaged_models())


def standard_prices(path: str | Path | None = None, overrides: Mapping[str, Price] | None = None) -> PriceTable:
    """The packaged table, then the entries of the file at ``path`` (added, or replacing by model name), then
    ``overrides`` (the deployments' own prices).

    ``path`` is ``server.prices_file``: ``None`` means the packaged table alone. A file that is named but
    missing is an error, not an empty table (its prices would silently be missing).

    Raises:
        ConfigError: the file is missing, not YAML, or invalid (see :func:`load_prices`).

    Example:
        >>> table = standard_prices(None, {"my-finetune": Price(input=3, output=12)})
        >>> table.price_for("my-finetune").output, table.price_for("gpt-4o").output
        (12.0, 10.0)
    """
    table = packaged_prices()
    if path is not None:
        table = table.with_overrides(load_prices(path).models)
    return table.with_overrides(overrides)


def load_prices(path: str | Path, overrides: Mapping[str, Price] | None = None) -> PriceTable:
    """Read and validate the price table at ``path`` (a ``models:`` mapping), then apply ``overrides``.

    This file alone: :func:`standard_prices` puts it on top of the packaged table.

    Raises:
        ConfigError: the file is missing, not YAML, or invalid; every problem names its YAML path
            (e.g. ``models.gpt-4o.input``).

    Example:
        >>> table = load_prices("configs/prices.yaml")  # doctest: +SKIP
        >>> table.price_for("ft-support-bot").output  # doctest: +SKIP
        12.0
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise _error(source, [("(file)", exc.strerror or str(exc))]) from None
    return parse_prices(text, source).with_overrides(overrides)


def parse_prices(text: str, source: str = "<prices>") -> PriceTable:
    """Validate a price table given as YAML text (``source`` names it in errors).

    Raises:
        ConfigError: not YAML, or invalid; every problem names its YAML path.

    Example:
        >>> parse_prices("models: {m: {input: 1, output: 2}}").price_for("m").output
        2.0
        >>> parse_prices("models: {m: {input: -1, output: 2}}")
        Traceback (most recent call last):
        ...
        ferrogate.config.errors.ConfigError: invalid configuration in <prices>:
          models.m.input: Input should be greater than or equal to 0
    """
    raw = read_yaml_mapping(text, source, "a mapping with `models:`")
    try:
        return PriceTable(PriceFile.model_validate(raw).models)
    except ValidationError as exc:
        problems = [(yaml_path(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in exc.errors()]
        raise _error(source, problems) from None


def _error(source: str, problems: list[tuple[str, str]]) -> ConfigError:
    return ConfigError(source, problems)
