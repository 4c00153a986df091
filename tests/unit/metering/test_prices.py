"""The price table: lookups (exact, longest dated prefix), cost rule, missing list, YAML errors, the packaged
table and a prices file merged over it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ferrogate.config.errors import ConfigError
from ferrogate.config.loader import DEFAULT_OPENAI_MODELS as OPENAI_MODELS
from ferrogate.metering import Price, PriceTable, load_prices, parse_prices
from ferrogate.metering.prices import packaged_prices, standard_prices

ROOT = Path(__file__).resolve().parents[3]
TABLE = PriceTable(
    models={
        "gpt-4o": Price(input=2.5, output=10, cached_input=1.25),
        "gpt-4o-mini": Price(input=0.15, output=0.6, cached_input=0.075),
        "gpt-5": Price(input=1.25, output=10),
    }
)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),  # the longest prefix wins
        ("gpt-4o:ft-acme", "gpt-4o"),
        ("gpt-5@2025", "gpt-5"),
        ("gpt-4omni", None),  # a prefix must end at a separator
        ("gpt-4o-2024-08-06:ft-acme", "gpt-4o"),
        ("gpt-5-pro", None),  # another (dearer) model, not a dated gpt-5: unpriced, refused on a budget
        ("gpt-4o-realtime-preview", None),
        ("gpt-4o-2024", "gpt-4o"),
        ("gpt-5.1", None),
        ("gpt-4", None),
        ("", None),
    ],
)
def test_price_for(model: str, expected: str | None) -> None:
    assert TABLE.price_for(model) == (None if expected is None else TABLE.models[expected])
    assert TABLE.price_for(model) == (None if expected is None else TABLE.models[expected])  # cached answer


@pytest.mark.parametrize(
    ("model", "prompt", "completion", "cached", "expected"),
    [
        ("gpt-4o", 1_000_000, 0, 0, 2.5),
        ("gpt-4o", 0, 1_000_000, 0, 10.0),
        ("gpt-4o", 1_000_000, 0, 1_000_000, 1.25),
        ("gpt-4o-2024-08-06", 1000, 100, 400, (600 * 2.5 + 400 * 1.25 + 100 * 10) / 1e6),
        ("gpt-4o", 10, 0, 50, 10 * 1.25 / 1e6),  # cached never exceeds the prompt
        ("gpt-5", 1_000_000, 0, 1_000_000, 1.25),  # no cached rate: billed as input
        ("gpt-4o-mini", 0, 0, 0, 0.0),
        ("claude-3", 10, 10, 0, None),  # unpriced: None, never a silent zero
    ],
)
def test_cost(model: str, prompt: int, completion: int, cached: int, expected: float | None) -> None:
    got = TABLE.cost(model, prompt, completion, cached)
    assert got == (None if expected is None else pytest.approx(expected, rel=1e-12, abs=1e-15))


def test_missing_and_overrides() -> None:
    assert TABLE.missing(["gpt-4o-2024-08-06", "mock", "x", "mock", "gpt-5"]) == ["mock", "x"]
    custom = TABLE.with_overrides({"x": Price(input=1, output=1), "gpt-4o": Price(input=0, output=0)})
    assert custom.missing(["x", "mock"]) == ["mock"]
    assert custom.cost("gpt-4o-2024-08-06", 100, 100) == 0.0
    assert custom.cost("gpt-4o-mini", 1_000_000, 0) == 0.15  # others untouched
    assert TABLE.cost("gpt-4o", 1_000_000, 0) == 2.5  # the base table is not changed
    assert TABLE.with_overrides(None) is TABLE


def test_packaged_table_prices_every_default_model() -> None:
    table = packaged_prices()
    assert table.missing([*OPENAI_MODELS, "mock"]) == ["mock"]  # the mock is free, not silently zero: unpriced
    for name in OPENAI_MODELS:
        price = table.models[name]
        assert 0 < price.cached_rate < price.input < price.output, name
    assert table.price_for("gpt-4.1-mini-2025-04-14") == table.models["gpt-4.1-mini"]
    assert table.cost("gpt-4o-mini", 1_000_000, 1_000_000, 1_000_000) == pytest.approx(0.075 + 0.6)


def test_packaged_table_is_read_from_the_package_not_the_working_directory(tmp_path: Path) -> None:
    code = "from ferrogate.metering.prices import standard_prices as s; print(s().price_for('gpt-4o').output)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert (done.returncode, done.stdout.strip()) == (0, "10.0"), done.stderr


def test_standard_prices_merge_the_file_over_the_packaged_table(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("models: {gpt-4o: {input: 1, output: 2}, my-model: {input: 3, output: 4}}")
    table = standard_prices(path, {"my-model": Price(input=5, output=6), "dep-only": Price(input=7, output=8)})
    assert table.price_for("gpt-4o-2024-08-06") == Price(input=1, output=2)  # the file replaces a packaged entry
    assert table.price_for("gpt-4o-mini") == packaged_prices().models["gpt-4o-mini"]  # others are kept
    assert table.price_for("my-model") == Price(input=5, output=6)  # the deployment wins over the file
    assert table.price_for("dep-only") == Price(input=7, output=8)
    assert table.missing(["mock", "gpt-5", "my-model"]) == ["mock"]
    assert packaged_prices().price_for("gpt-4o") == Price(input=2.5, output=10, cached_input=1.25)  # unchanged
    assert standard_prices().models == packaged_prices().models


def test_standard_prices_refuse_a_named_file_that_is_missing_or_invalid(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"gone\.yaml:\n  \(file\): No such file"):
        standard_prices(tmp_path / "gone.yaml")
    (tmp_path / "bad.yaml").write_text("models: {m: {input: 1}}")
    with pytest.raises(ConfigError) as caught:
        standard_prices(tmp_path / "bad.yaml")
    assert [p for p, _ in caught.value.problems] == ["models.m.output"]


def test_example_override_file_extends_the_packaged_table() -> None:
    table = standard_prices(ROOT / "configs" / "prices.yaml")
    assert table.price_for("ft-support-bot:v2") == Price(input=3, output=12)
    assert table.price_for("gpt-4o") == packaged_prices().price_for("gpt-4o")  # naming it changes no real price
    assert table.missing(OPENAI_MODELS) == []


def test_an_override_file_replaces_a_listed_price(tmp_path: Path) -> None:
    path = tmp_path / "negotiated.yaml"
    path.write_text("models: {gpt-4o: {input: 2, output: 8}}")
    assert standard_prices(path).price_for("gpt-4o-2024-08-06") == Price(input=2, output=8)


def test_overrides_passed_to_load(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("models: {a: {input: 1, output: 2}}")
    table = load_prices(path, {"b": Price(input=3, output=4)})
    assert table.missing(["a", "b", "c"]) == ["c"]


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("models: {m: {input: -1, output: 2}}", [("models.m.input", "greater than or equal to 0")]),
        ("models: {m: {input: 1}}", [("models.m.output", "Field required")]),
        ("models: {m: {input: 1, output: 2, cache: 1}}", [("models.m.cache", "Extra inputs are not permitted")]),
        (
            "models: {m: {input: one, output: .nan}}",
            [("models.m.input", "valid number"), ("models.m.output", "finite")],
        ),
        ("models: [gpt-4o]", [("models", "valid dictionary")]),
        ("price: {}", [("price", "Extra inputs")]),
        ("- a\n- b", [("(document)", "top level must be a mapping")]),
        ("models: {m: [", [("line 1, column 14", "not valid YAML")]),
    ],
)
def test_yaml_errors_name_the_path(text: str, problems: list[tuple[str, str]]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_prices(text, "prices.yaml")
    assert caught.value.source == "prices.yaml"
    assert [p for p, _ in caught.value.problems] == [p for p, _ in problems]
    for (_, got), (_, want) in zip(caught.value.problems, problems, strict=True):
        assert want in got


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml:\n  \(file\): No such file"):
        load_prices(tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_prices(tmp_path / "empty.yaml").models == {}


@pytest.mark.parametrize("module", ["ferrogate.metering", "ferrogate.metering.prices", "ferrogate.config.model"])
def test_imports_first_in_a_fresh_interpreter(module: str) -> None:
    # ferrogate.config imports the price model and the price loader raises ConfigError: no import cycle either way
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
