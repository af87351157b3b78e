"""Token counting, offline.

Counts use OpenAI's ``cl100k_base`` encoding through ``quicktok`` (an exact re-implementation that ships
its vocabulary in the wheel, so nothing is downloaded at run time; chosen over tiktoken, which fetches its
files on first use, and bpe-openai, which counts about 6x slower: see docs/architecture.md). The Hindsight
server bounds recall queries with the same encoding.

The vocabulary takes about 0.1 s to load, once per process: :func:`warm_up` does it on a background
thread so that the first LLM call does not pay for it.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

__all__ = ["TokenCounter", "count_tokens", "counter", "tail_within", "warm_up"]

_log = logging.getLogger("hindsight_core.tokens")


class TokenCounter(Protocol):
    def count(self, text: str) -> int: ...


class _ByteEstimate:
    """Fallback when the exact encoding cannot be loaded. A cl100k token is at least one byte of UTF-8,
    so counting bytes never under-counts: budgets stay safe, only less of them is used."""

    def count(self, text: str) -> int:
        return len(text.encode("utf-8"))


_lock = threading.Lock()
_loaded: list[TokenCounter] = []  # at most one element: the process-wide counter, once loaded


def counter() -> TokenCounter:
    """The process-wide counter, loaded on first use."""
    if not _loaded:
        with _lock:
            if not _loaded:
                _loaded.append(_load())
    return _loaded[0]


def _load() -> TokenCounter:
    try:
        import quicktok  # type: ignore[import-untyped]

        encoding: TokenCounter = quicktok.get_encoding("cl100k_base")
        return encoding
    except Exception as exc:  # an unsupported platform must not break memory: estimate instead
        _log.warning("exact token counting unavailable (%s); estimating tokens from text length", exc)
        return _ByteEstimate()


def warm_up() -> None:
    """Load the encoding in the background (no-op once loaded)."""
    if not _loaded:
        threading.Thread(target=counter, name="hindsight-tokenizer-load", daemon=True).start()


def count_tokens(text: str) -> int:
    """Tokens in ``text`` (special-token markers are counted as ordinary text)."""
    return counter().count(text) if text else 0


def tail_within(text: str, max_tokens: int) -> str:
    """The longest end of ``text`` that fits in ``max_tokens``, starting at a word boundary when possible.

    Used for recall queries: the question is usually at the end of a long message.
    """
    if max_tokens <= 0:
        return ""
    # A token is at least one byte of UTF-8 (not one character: emoji and CJK take several tokens each).
    if len(text.encode("utf-8")) <= max_tokens or count_tokens(text) <= max_tokens:
        return text
    # Binary search on the start index: count(text[start:]) decreases as start grows.
    low, high = 0, len(text)
    while low < high:
        middle = (low + high) // 2
        if count_tokens(text[middle:]) <= max_tokens:
            high = middle
        else:
            low = middle + 1
    start = low
    # Prefer not to begin mid-word: skip to the next whitespace if one is near.
    window = text[start : start + 40]
    for offset, char in enumerate(window):
        if char.isspace():
            start += offset + 1
            break
    return text[start:].lstrip()
