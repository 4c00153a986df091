"""ferrogate._core token counting: equal to OpenAI's tokenizer (checked with ``bpe_openai``)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ferrogate._core import (
    CoreError,
    InvalidBodyError,
    UnknownEncodingError,
    count_chat_prompt,
    count_tokens,
    encoding_for_model,
    model_encoding,
)

from .reference import openai_count

ENCODINGS = ["o200k_base", "cl100k_base"]
CORPUS_FILE = Path(__file__).parents[3] / "rust_core" / "tests" / "data" / "corpus_counts.json"
CORPUS: list[str] = [row["text"] for row in json.loads(CORPUS_FILE.read_text(encoding="utf-8"))] + [
    "",
    " ",
    "\n\n\n",
    "a" * 5000,
    "🙂" * 300,
    "class Foo(Base):\n    def __init__(self) -> None:\n        super().__init__()\n",
    "const x = async () => { await fetch(`/v1/chat/completions?x=${y}`); };",
    "Ünïcödé, naïve café, Straße, ÆØÅ, ﬃ, Ω≈ç√∫˜µ≤≥÷, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",  # noqa: RUF001 (confusables on purpose)
    "Tiếng Việt có dấu; ภาษาไทย; עברית; ქართული; Ελληνικά; 한국어 문장입니다.",
]


def reference(text: str, encoding: str) -> int:
    return openai_count(text, encoding)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("text", CORPUS, ids=range(len(CORPUS)))
def test_counts_equal_openai_tokenizer(text: str, encoding: str) -> None:
    assert count_tokens(text, encoding) == reference(text, encoding)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_whole_corpus(encoding: str) -> None:
    text = "\n".join(CORPUS)
    assert count_tokens(text, encoding) == reference(text, encoding)


def test_known_counts_and_default_encoding() -> None:
    assert count_tokens("hello world") == 2
    assert count_tokens("hello world", "cl100k_base") == 2


def test_unknown_encoding() -> None:
    with pytest.raises(UnknownEncodingError, match="p50k_base"):
        count_tokens("x", "p50k_base")
    assert issubclass(UnknownEncodingError, CoreError)


@pytest.mark.parametrize(
    ("model", "encoding", "estimate"),
    [
        ("gpt-4o", "o200k_base", False),
        ("gpt-4o-mini", "o200k_base", False),
        ("gpt-4.1", "o200k_base", False),
        ("gpt-5-mini", "o200k_base", False),
        ("o1", "o200k_base", False),
        ("o3-mini", "o200k_base", False),
        ("o4-mini", "o200k_base", False),
        ("gpt-4", "cl100k_base", False),
        ("gpt-4-turbo", "cl100k_base", False),
        ("gpt-3.5-turbo", "cl100k_base", False),
        ("text-embedding-3-large", "cl100k_base", False),
        ("openai/gpt-4o", "o200k_base", False),
        ("claude-sonnet-4", "o200k_base", True),
        ("llama-3.1-70b", "o200k_base", True),
    ],
)
def test_encoding_for_model(model: str, encoding: str, estimate: bool) -> None:
    assert encoding_for_model(model) == encoding
    assert model_encoding(model) == (encoding, estimate)


def cookbook_count(messages: list[dict[str, object]], encoding: str) -> int:
    """OpenAI cookbook's num_tokens_from_messages for gpt-4o/gpt-4, with text parts and tool calls."""
    total = 3
    for message in messages:
        total += 3
        for key, value in message.items():
            if isinstance(value, str):
                total += reference(value, encoding)
            elif key == "content" and isinstance(value, list):
                total += sum(reference(p["text"], encoding) for p in value if p.get("type") == "text")
            elif key == "tool_calls" and isinstance(value, list):
                for call in value:
                    total += reference(call["function"]["name"], encoding)
                    total += reference(call["function"]["arguments"], encoding)
            if key == "name":
                total += 1
    return total


CHATS: list[list[dict[str, object]]] = [
    [{"role": "user", "content": "hello world"}],
    [
        {
            "role": "system",
            "content": "You are a helpful, pattern-following assistant that translates corporate jargon.",
        },
        {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
        {
            "role": "system",
            "name": "example_assistant",
            "content": "Things working well together will increase revenue.",
        },
        {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client."},
    ],
    [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Décris cette image: "},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                {"type": "text", "text": "画像を説明して"},
            ],
        },
    ],
    [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
    ],
]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("messages", CHATS, ids=range(len(CHATS)))
def test_chat_prompt_matches_cookbook_rule(messages: list[dict[str, object]], encoding: str) -> None:
    body = json.dumps({"model": "gpt-4o", "messages": messages, "stream": True}).encode()
    assert count_chat_prompt(body, encoding) == cookbook_count(messages, encoding)


def test_chat_prompt_hello_world() -> None:
    # 3 (message) + 1 ("user") + 2 ("hello world") + 3 (reply priming)
    assert count_chat_prompt(b'{"messages":[{"role":"user","content":"hello world"}]}') == 9


@pytest.mark.parametrize("body", [b"", b"not json", b"{}", b'{"messages": "x"}', b'{"messages": [1]}'])
def test_chat_prompt_invalid_body(body: bytes) -> None:
    with pytest.raises(InvalidBodyError):
        count_chat_prompt(body)


def test_concurrent_counting_from_threads() -> None:
    texts = CORPUS * 4
    expected = [count_tokens(text) for text in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(count_tokens, texts)) == expected
