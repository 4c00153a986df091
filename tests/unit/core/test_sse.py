"""ferrogate._core.SseParser: WHATWG event-stream parsing, any chunk split gives the same events."""

from __future__ import annotations

import itertools
import random

import pytest

from ferrogate._core import CoreError, SseError, SseEvent, SseParser

Row = tuple[str | None, str, str | None, int | None]

OPENAI_STREAM = (
    b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,'
    b'"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}\n\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,'
    b'"delta":{"content":"Hi \xc3\xa9\xe4\xbd\xa0 \xf0\x9f\x9a\x80"},"finish_reason":null}],"usage":null}\n\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o","choices":[],'
    b'"usage":{"prompt_tokens":9,"completion_tokens":5,"total_tokens":14}}\n\n'
    b"data: [DONE]\n\n"
)

SAMPLES = [
    OPENAI_STREAM,
    b"data: YHOO\ndata: +2\ndata: 10\n\n",
    b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n",
    b"\xef\xbb\xbfevent: add\r\ndata: 73857293\r\nretry: 2500\r\n\r\nevent: remove\rdata: 2153\r\r",
    b"\r\n\r\n\n\rdata: a\r\r\n\n",
]


def rows(events: list[SseEvent]) -> list[Row]:
    return [(e.event, e.data, e.id, e.retry) for e in events]


def parse(chunks: list[bytes], max_event_bytes: int = 1 << 20) -> list[Row]:
    parser = SseParser(max_event_bytes)
    events: list[SseEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    events.extend(parser.finish())
    return rows(events)


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (b"data: YHOO\ndata: +2\ndata: 10\n\n", [("message", "YHOO\n+2\n10", None, None)]),
        (
            b"data:test\n\ndata: test\n\ndata:  test\n\n",
            [("message", "test", None, None)] * 2 + [("message", " test", None, None)],
        ),
        (b"event: add\r\ndata: 1\r\n\r\n", [("add", "1", None, None)]),
        (b"event: add\rdata: 1\r\r", [("add", "1", None, None)]),
        (b"id: 7\nretry: 1500\ndata: a\n\ndata: b\n\n", [("message", "a", "7", 1500), ("message", "b", "7", None)]),
        (b": comment\n\nevent: ping\n\ndata: x\n\n", [("message", "x", None, None)]),
        (b"\xef\xbb\xbfdata: bom\n\n", [("message", "bom", None, None)]),
        (b"data\n\ndata\ndata\n\n", [("message", "", None, None), ("message", "\n", None, None)]),
        (b"data: a\xffb\n\n", [("message", "a\ufffdb", None, None)]),
        (b"data: unterminated", [("message", "unterminated", None, None)]),
        (b"retry: 1x\nid: a\x00b\nfoo: bar\ndata: x\n\n", [("message", "x", None, None)]),
    ],
)
def test_events(stream: bytes, expected: list[Row]) -> None:
    assert parse([stream]) == expected


@pytest.mark.parametrize("stream", SAMPLES, ids=range(len(SAMPLES)))
def test_every_two_way_split_gives_the_same_events(stream: bytes) -> None:
    whole = parse([stream])
    assert whole
    for cut in range(len(stream) + 1):
        assert parse([stream[:cut], stream[cut:]]) == whole, cut


@pytest.mark.parametrize("stream", SAMPLES[1:], ids=range(1, len(SAMPLES)))
def test_every_three_way_split_gives_the_same_events(stream: bytes) -> None:
    whole = parse([stream])
    for a, b in itertools.combinations_with_replacement(range(len(stream) + 1), 2):
        assert parse([stream[:a], stream[a:b], stream[b:]]) == whole, (a, b)


@pytest.mark.parametrize("seed", range(20))
def test_random_splits_give_the_same_events(seed: int) -> None:
    rng = random.Random(seed)
    stream = SAMPLES[seed % len(SAMPLES)]
    cuts = sorted(rng.sample(range(len(stream) + 1), k=min(8, len(stream))))
    chunks = [stream[a:b] for a, b in itertools.pairwise([0, *cuts, len(stream)])]
    assert parse(chunks) == parse([stream])


def test_byte_by_byte() -> None:
    assert parse([bytes([b]) for b in OPENAI_STREAM]) == parse([OPENAI_STREAM])


def test_event_is_a_frozen_value() -> None:
    (event,) = SseParser().feed(b"event: e\nid: 1\ndata: d\n\n")
    assert (event.event, event.data, event.id, event.retry) == ("e", "d", "1", None)
    assert event == SseParser().feed(b"event: e\nid: 1\ndata: d\n\n")[0]
    assert repr(event) == 'SseEvent(event="e", data="d", id="1", retry=None)'
    with pytest.raises(AttributeError):
        event.data = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        ([b"data: " + b"x" * 100], "line"),
        ([b"data: " + b"x" * 50 + b"\n", b"data: " + b"x" * 50 + b"\n"], "event"),
    ],
)
def test_oversize_raises_sse_error(chunks: list[bytes], message: str) -> None:
    parser = SseParser(max_event_bytes=64)
    assert parser.max_event_bytes == 64
    with pytest.raises(SseError, match=message):
        for chunk in chunks:
            parser.feed(chunk)
    with pytest.raises(CoreError):  # sticky: the stream is not trusted again
        parser.feed(b"\n\n")


def test_events_before_an_error_are_returned_first() -> None:
    parser = SseParser(max_event_bytes=16)
    assert rows(parser.feed(b"data: ok\n\ndata: " + b"x" * 20)) == [("message", "ok", None, None)]
    with pytest.raises(SseError):
        parser.feed(b"\n\n")


def test_default_bound_is_one_mebibyte() -> None:
    assert SseParser().max_event_bytes == 1 << 20


def test_error_hierarchy() -> None:
    assert issubclass(SseError, CoreError)
    assert issubclass(CoreError, Exception)
    assert SseError.__module__ == "ferrogate._core"
