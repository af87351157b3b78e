"""Token counting, offline.

Counts use OpenAI's ``cl100k_base`` encoding through tiktoken, built from the vocabulary file this package
ships (``_vocab/cl100k_base.tiktoken``, with its licence and provenance next to it): tiktoken's own
``get_encoding()`` would download the file on first use (or read it from ``TIKTOKEN_CACHE_DIR``), so it is
never called; nothing here touches the network or tiktoken's cache. The Hindsight server bounds recall
queries with the same encoding.

Building the encoding takes about 0.1 s, once per process: :func:`warm_up` does it on a background thread
so that the first LLM call does not pay for it. If it cannot be built, counting falls back to UTF-8 bytes.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Protocol

__all__ = ["TokenCounter", "count_tokens", "counter", "encode", "tail_within", "warm_up"]

_log = logging.getLogger("hindsight_core.tokens")

VOCABULARY = "cl100k_base.tiktoken"
VOCABULARY_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
# The cl100k_base split pattern and special tokens, as tiktoken defines the encoding.
_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|"""
    r"""\s*[\r\n]|\s+(?!\S)|\s"""
)
_SPECIAL_TOKENS = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}


class TokenCounter(Protocol):
    def count(self, text: str) -> int: ...


class _ByteEstimate:
    """Fallback when the exact encoding cannot be loaded. A cl100k token is at least one byte of UTF-8,
    so counting bytes never under-counts: budgets stay safe, only less of them is used."""

    def count(self, text: str) -> int:
        return len(text.encode("utf-8"))


_MEMO_TEXT = 512
"""Texts up to this many characters have their counts remembered (memory lines, labels: the same ones
come back call after call); longer ones are counted each time."""


class _Cl100k:
    """Exact ``cl100k_base`` counts (special-token markers counted as ordinary text). Short texts' counts
    are remembered (a bounded LRU), so a memory recalled again costs no second encoding."""

    def __init__(self, ranks: dict[bytes, int]) -> None:
        import tiktoken

        self._encoding = tiktoken.Encoding(
            "cl100k_base", pat_str=_PATTERN, mergeable_ranks=ranks, special_tokens=_SPECIAL_TOKENS
        )
        self._memo = functools.lru_cache(maxsize=16384)(self._exact)

    def _exact(self, text: str) -> int:
        return len(self._encoding.encode_ordinary(text))

    def count(self, text: str) -> int:
        return self._memo(text) if len(text) <= _MEMO_TEXT else self._exact(text)

    def encode(self, text: str) -> list[int]:
        return self._encoding.encode_ordinary(text)


def read_vocabulary() -> dict[bytes, int]:
    """The shipped vocabulary as tiktoken's mergeable ranks, after checking the file's SHA-256."""
    import base64
    import hashlib
    from importlib import resources

    data = (resources.files("hindsight_core.pipeline") / "_vocab" / VOCABULARY).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != VOCABULARY_SHA256:
        raise ValueError(f"{VOCABULARY} has SHA-256 {digest}, expected {VOCABULARY_SHA256}")
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


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
        return _Cl100k(read_vocabulary())
    except Exception as exc:  # a missing wheel or a damaged file must not break memory: estimate instead
        _log.warning("exact token counting unavailable (%s); estimating tokens from text length", exc)
        return _ByteEstimate()


def warm_up() -> None:
    """Load the encoding in the background (no-op once loaded)."""
    if not _loaded:
        threading.Thread(target=counter, name="hindsight-tokenizer-load", daemon=True).start()


def encode(text: str) -> list[int]:
    """The ``cl100k_base`` token ids of ``text`` (for measurements such as shared prompt prefixes; raises
    ``RuntimeError`` when only the byte estimate is available)."""
    loaded = counter()
    if not isinstance(loaded, _Cl100k):
        raise RuntimeError("the cl100k_base encoding could not be loaded: token ids are not available")
    return loaded.encode(text)


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
