"""OpenAI's tokenizer as the reference: the ``bpe_openai`` PyPI package (tiktoken-compatible API).

The package opens its bundled data with ``importlib.resources.open_binary``, deprecated in
Python 3.11; that DeprecationWarning is silenced here (only while loading) because pytest turns
warnings into errors.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any


@functools.cache
def _encoding(name: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import bpe_openai

        return bpe_openai.get_encoding(name)


def openai_count(text: str, encoding: str) -> int:
    """Token count of ``text`` by OpenAI's tokenizer (``encode_ordinary``: special tokens as text)."""
    return len(_encoding(encoding).encode_ordinary(text))
