"""Tool pinning: the hash, trust on first use, changed and added tools flagged once, approval clearing flags."""

from __future__ import annotations

import gc
from collections.abc import Mapping
from typing import Any

import mcp_types
import pytest

from ferrogate.mcp.pins import Pins, pin_hash


def tool(name: str, description: str = "d", **schema: Any) -> mcp_types.Tool:
    return mcp_types.Tool(name=name, description=description, input_schema={"type": "object", **schema})


class Recorder:
    def __init__(self) -> None:
        self.flags: list[tuple[str, str, str, str]] = []
        self.first: list[tuple[str, dict[str, str]]] = []

    def on_flag(self, server: str, name: str, approved: str, seen: str) -> None:
        self.flags.append((server, name, approved, seen))

    def on_first_use(self, server: str, hashes: Mapping[str, str]) -> None:
        self.first.append((server, dict(hashes)))


def test_hash_covers_name_description_and_schemas_only() -> None:
    base = tool("a", properties={"x": {"type": "string"}})
    assert pin_hash(base) == pin_hash(tool("a", properties={"x": {"type": "string"}}))
    assert len(pin_hash(base)) == 64
    # key order does not matter; title, annotations and _meta are not pinned
    reordered = mcp_types.Tool(
        name="a", description="d", input_schema={"properties": {"x": {"type": "string"}}, "type": "object"}
    )
    assert pin_hash(reordered) == pin_hash(base)
    assert pin_hash(base.model_copy(update={"title": "A tool"})) == pin_hash(base)
    for other in (
        tool("b", properties={"x": {"type": "string"}}),
        tool("a", "other", properties={"x": {"type": "string"}}),
        tool("a", properties={"x": {"type": "integer"}}),
        base.model_copy(update={"output_schema": {"type": "object"}}),
    ):
        assert pin_hash(other) != pin_hash(base)


def test_first_use_is_the_approval() -> None:
    rec = Recorder()
    pins = Pins(rec.on_flag, on_first_use=rec.on_first_use)
    pins.apply({})
    assert pins.approved("s") is None
    assert pins.check("s", [tool("a"), tool("b")]) == set()
    hashes = {"a": pin_hash(tool("a")), "b": pin_hash(tool("b"))}
    assert rec.first == [("s", hashes)]
    assert pins.approved("s") == hashes and pins.seen("s") == hashes
    # a second listing compares with that approval (and does not approve again)
    assert pins.check("s", [tool("a", "changed"), tool("b")]) == {"a"}
    assert len(rec.first) == 1
    assert rec.flags == [("s", "a", hashes["a"], pin_hash(tool("a", "changed")))]


def test_changed_and_added_are_flagged_removed_is_not() -> None:
    rec = Recorder()
    pins = Pins(rec.on_flag)
    pins.apply({"s": {"a": pin_hash(tool("a")), "gone": pin_hash(tool("gone"))}})
    assert pins.check("s", [tool("a", "new text"), tool("added")]) == {"a", "added"}
    flagged = pins.flagged()
    assert flagged == {
        "s": {
            "a": (pin_hash(tool("a")), pin_hash(tool("a", "new text"))),
            "added": ("", pin_hash(tool("added"))),
        }
    }
    assert sorted((f[1], f[2] == "") for f in rec.flags) == [("a", False), ("added", True)]


def test_on_flag_once_per_seen_hash() -> None:
    rec = Recorder()
    pins = Pins(rec.on_flag)
    pins.apply({"s": {"a": pin_hash(tool("a"))}})
    for _ in range(3):
        pins.check("s", [tool("a", "v2")])
    assert len(rec.flags) == 1
    pins.check("s", [tool("a", "v3")])  # changed again: a new hash
    assert [f[3] for f in rec.flags] == [pin_hash(tool("a", "v2")), pin_hash(tool("a", "v3"))]


def test_approval_clears_flags_and_a_later_change_flags_again() -> None:
    rec = Recorder()
    pins = Pins(rec.on_flag)
    pins.apply({"s": {"a": pin_hash(tool("a"))}})
    assert pins.check("s", [tool("a", "v2")]) == {"a"}
    watched: list[int] = []
    pins.watch(lambda: watched.append(1))
    pins.apply({"s": pins.seen("s")})  # what POST .../approve stores comes back through the change feed
    assert pins.flagged() == {} and watched == [1]
    assert pins.check("s", [tool("a", "v2")]) == set()
    assert pins.check("s", [tool("a")]) == {"a"}  # back to the old text: that differs from the approval now
    assert len(rec.flags) == 2


def test_nothing_is_judged_before_the_stores_approvals_arrive() -> None:
    rec = Recorder()
    pins = Pins(rec.on_flag, on_first_use=rec.on_first_use)
    assert pins.check("s", [tool("a", "changed")]) == set() and pins.check("new", [tool("b")]) == set()
    assert rec.first == [] and rec.flags == [] and not pins.loaded
    pins.apply({"s": {"a": pin_hash(tool("a"))}})  # the listing seen before is judged now
    assert pins.loaded and pins.flagged() == {"s": {"a": (pin_hash(tool("a")), pin_hash(tool("a", "changed")))}}
    assert rec.first == [("new", {"b": pin_hash(tool("b"))})] and [f[1] for f in rec.flags] == ["a"]


def test_apply_keeps_first_use_approvals_until_the_store_has_them() -> None:
    pins = Pins()
    pins.apply({})
    pins.check("s", [tool("a")])
    pins.apply({"other": {"x": "h"}})  # the store does not know s yet
    assert pins.approved("s") == {"a": pin_hash(tool("a"))}
    pins.apply({"s": {"a": "stored-hash"}})
    assert pins.approved("s") == {"a": "stored-hash"}
    assert pins.flagged() == {"s": {"a": ("stored-hash", pin_hash(tool("a")))}}  # re-evaluated at apply


def test_discard_forgets_a_removed_server() -> None:
    pins = Pins()
    pins.apply({"s": {"a": "old"}})
    pins.check("s", [tool("a")])
    pins.discard("s")
    assert pins.flagged() == {} and pins.seen("s") == {}
    assert pins.approved("s") == {"a": "old"}


def test_failing_hooks_do_not_break_checks(caplog: pytest.LogCaptureFixture) -> None:
    def boom(*_args: object) -> None:
        raise RuntimeError("hook failed")

    pins = Pins(boom, on_first_use=boom)
    pins.apply({})
    assert pins.check("s", [tool("a")]) == set()
    assert pins.check("s", [tool("a", "v2")]) == {"a"}
    assert sum("failed" in r.getMessage() for r in caplog.records) == 2


def test_watchers_are_called_after_apply_and_gone_catalogs_are_not_held() -> None:
    class Watcher:
        calls = 0

        def changed(self) -> None:
            Watcher.calls += 1

    pins = Pins()
    kept, dropped = Watcher(), Watcher()
    pins.watch(kept.changed)
    pins.watch(dropped.changed)
    pins.apply({})
    assert Watcher.calls == 2
    del dropped
    gc.collect()
    pins.apply({})
    assert Watcher.calls == 3 and len(pins._watchers) == 1
