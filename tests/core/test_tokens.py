"""Token counts: tiktoken on the shipped cl100k_base vocabulary gives exactly the counts the core had before.

``EXPECTED`` was computed with quicktok-v1 0.4.0 (``quicktok.get_encoding("cl100k_base").count``), the
tokenizer the core used until tiktoken replaced it, on the corpus below (CJK, emoji, code, whitespace runs,
special-token markers, long texts); ``EXPECTED_TAILS`` are the query cuts (``tail_within``) it gave.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import subprocess
import sys

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from hindsight_core.pipeline import tokens
from hindsight_core.pipeline.tokens import count_tokens, tail_within

CORPUS_SHA256 = "5966f28c8c970d6129b047faf89fba89454377f58017d7a0ecbfc70783cf5de7"  # of the corpus counted

EXPECTED = {
    "empty": 0,
    "word": 1,
    "sentence": 2,
    "paragraph": 52,
    "chinese": 25,
    "japanese": 38,
    "korean": 29,
    "cjk_mixed": 54,
    "emoji": 65,
    "emoji_zwj_only": 37,
    "code": 121,
    "json": 35,
    "spaces_run": 3,
    "spaces_only": 9,
    "newlines": 1,
    "mixed_whitespace": 9,
    "trailing_spaces": 7,
    "numbers": 33,
    "specials": 31,
    "contractions": 27,
    "arabic": 23,
    "hindi": 27,
    "cyrillic": 16,
    "thai": 32,
    "accents": 22,
    "combining": 25,
    "control": 10,
    "url": 16,
    "markdown": 26,
    "memory_block": 38,
    "long_english": 10400,
    "long_cjk": 16200,
    "long_emoji": 6401,
    "long_code": 12100,
    "long_spaces": 2000,
    "long_no_spaces": 4000,
    "long_digits": 6667,
    "long_generated": 24593,
}

# (characters kept, their tokens) for tail_within(CORPUS[name], max_tokens)
EXPECTED_TAILS = {
    ("long_english", 50): (190, 50),
    ("long_english", 500): (1900, 499),
    ("long_cjk", 50): (9, 13),
    ("long_cjk", 500): (414, 499),
    ("long_emoji", 50): (39, 37),
    ("long_emoji", 500): (529, 485),
    ("long_code", 50): (143, 49),
    ("long_code", 500): (1616, 500),
    ("long_generated", 50): (38, 47),
    ("long_generated", 500): (402, 496),
}


def _corpus() -> dict[str, str]:
    paragraph = (
        "Hindsight stores what users said and recalls it later. The quick brown fox jumps over the lazy "
        "dog; it's 3.14159 times faster than you'd think, isn't it? I'm sure they'll agree: we've seen it "
        "before.\n"
    )
    cjk = "我喜欢在周末去爬山，上个夏天我们去了京都。東京の天気は晴れです。오늘은 날씨가 좋네요. "  # noqa: RUF001
    emoji = "Great job 👍🏽! Family: 👨‍👩‍👧‍👦, flags 🇫🇷🇯🇵, hearts ❤️💙, faces 😀😃😄😁 🤖🧠✨ "
    code = (
        "def count(items: list[int]) -> dict[str, int]:\n"
        "    result = {}\n"
        "    for i, item in enumerate(items):\n"
        "        if item % 2 == 0:\n"
        "            result[f'key_{i}'] = item ** 2  # square\n"
        "    return result\n\n"
        'payload = {"messages": [{"role": "user", "content": "hi"}], "temperature": 0.7}\n'
        "SELECT id, name FROM users WHERE created_at > '2024-01-01' ORDER BY id DESC;\n"
        '<div class="x">&nbsp;</div>\t\t// TODO\r\n'
    )
    return {
        "empty": "",
        "word": "hello",
        "sentence": "hello world",
        "paragraph": paragraph,
        "chinese": "我喜欢在周末去爬山，上个夏天我们去了京都。",  # noqa: RUF001
        "japanese": "東京の天気は晴れです。明日は雨が降るでしょう。カタカナとひらがな。",
        "korean": "오늘은 날씨가 좋네요. 내일은 비가 올 거예요.",
        "cjk_mixed": cjk,
        "emoji": emoji,
        "emoji_zwj_only": "👨‍👩‍👧‍👦👩🏾‍💻🏳️‍🌈",
        "code": code,
        "json": '{"a": [1, 2, 3], "b": {"c": null, "d": true}, "e": "\\u00e9\\n"}',
        "spaces_run": "a" + " " * 50 + "b",
        "spaces_only": " " * 1000,
        "newlines": "\n\n\n\n",
        "mixed_whitespace": "  \t\t \n \r\n\r\n   \u00a0\u2003 x \t\n",
        "trailing_spaces": "end of line    \nnext line\t\t\n",
        "numbers": "1234567890 12 123 1234 3.14159 -42 1e10 0x1F 1,000,000",
        "specials": "<|endoftext|> <|fim_prefix|><|fim_middle|><|fim_suffix|> <|endofprompt|>",
        "contractions": "I'm, you're, he's, we'll, they've, she'd, IT'S, You'LL, DON'T",
        "arabic": "مرحبا بالعالم، كيف حالك اليوم؟",
        "hindi": "नमस्ते दुनिया, आप कैसे हैं?",
        "cyrillic": "Привет, мир! Как дела сегодня?",
        "thai": "สวัสดีชาวโลก วันนี้เป็นอย่างไรบ้าง",
        "accents": "Café naïve résumé façade coöperate Ångström São Paulo Zürich",
        "combining": "e\u0301 a\u0308 n\u0303 Z\u0335\u0321a\u0334l\u0336g\u0337o\u0338",
        "control": "a\x00b\x01c\x7f\u200b\u200d\ufeff",
        "url": "https://example.com/path/to/page?query=value&other=123#fragment",
        "markdown": "# Title\n\n- item **bold** _it_ `code`\n\n```python\nprint('x')\n```\n> quote\n",
        "memory_block": (
            "<hindsight_memories>\n# Relevant Memories\n1. [WORLD] The user likes hiking.\n"
            "2. [EXPERIENCE] We went to Kyoto.\n</hindsight_memories>"
        ),
        "long_english": paragraph * 200,
        "long_cjk": cjk * 300,
        "long_emoji": emoji * 100,
        "long_code": code * 100,
        "long_spaces": ("word" + " " * 17 + "\n" * 3 + "\t" * 5) * 500,
        "long_no_spaces": "abcdefghij" * 2000,
        "long_digits": "0123456789" * 2000,
        "long_generated": "".join(
            chr(c)
            for i in range(20000)
            for c in [
                (
                    0x20,
                    0x41 + i % 26,
                    0x4E00 + (i * 7919) % 20000,
                    0x1F600 + i % 80,
                    0x0430 + i % 32,
                    0x0A,
                    0x3B1 + i % 24,
                )[(i * 31) % 7]
            ]
        ),
    }


CORPUS = _corpus()


@pytest.fixture
def fresh_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the process-wide counter for one test (it is loaded again on the next count)."""
    monkeypatch.setattr(tokens, "_loaded", [])


def test_the_corpus_is_the_one_the_expected_counts_were_computed_on() -> None:
    assert set(CORPUS) == set(EXPECTED)
    joined = "\x1e".join(f"{name}\x1f{text}" for name, text in CORPUS.items())
    assert hashlib.sha256(joined.encode()).hexdigest() == CORPUS_SHA256
    assert sum(map(len, CORPUS.values())) > 150_000  # the long texts are long


@pytest.mark.parametrize("name", list(EXPECTED))
def test_counts_are_the_same_as_before(name: str) -> None:
    assert count_tokens(CORPUS[name]) == EXPECTED[name]


@pytest.mark.parametrize(("name", "max_tokens"), list(EXPECTED_TAILS))
def test_query_cuts_are_the_same_as_before(name: str, max_tokens: int) -> None:
    cut = tail_within(CORPUS[name], max_tokens)
    assert CORPUS[name].endswith(cut)
    assert (len(cut), count_tokens(cut)) == EXPECTED_TAILS[(name, max_tokens)]


def test_the_counter_is_exact_tiktoken_not_the_estimate() -> None:
    assert type(tokens.counter()).__name__ == "_Cl100k"


def test_the_vocabulary_is_the_one_tiktoken_pins() -> None:
    import inspect

    from tiktoken_ext import openai_public  # type: ignore[import-untyped]

    # tiktoken's own definition of cl100k_base names the same file hash and the same split pattern
    source = inspect.getsource(openai_public.cl100k_base)
    assert tokens.VOCABULARY_SHA256 in source
    assert tokens._PATTERN in source
    assert all(f"{value}" in source for value in tokens._SPECIAL_TOKENS.values())
    assert len(tokens.read_vocabulary()) == 100_256


def test_loading_never_asks_tiktoken_to_fetch_or_cache(
    fresh_counter: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tiktoken
    import tiktoken.load

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tiktoken was asked to fetch or cache a vocabulary")

    monkeypatch.setattr(tiktoken.load, "read_file", refuse)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", refuse)
    monkeypatch.setattr(tiktoken, "get_encoding", refuse)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "/nonexistent/hindsight-test")
    assert type(tokens.counter()).__name__ == "_Cl100k"
    assert count_tokens(CORPUS["paragraph"]) == EXPECTED["paragraph"]


def test_a_damaged_vocabulary_falls_back_to_bytes_never_under_counting(
    fresh_counter: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tokens, "VOCABULARY_SHA256", "0" * 64)
    with caplog.at_level(logging.WARNING, logger="hindsight_core.tokens"):
        estimate = tokens.counter()
    assert type(estimate).__name__ == "_ByteEstimate"
    assert "exact token counting unavailable" in caplog.text
    assert "SHA-256" in caplog.text
    for name, text in CORPUS.items():
        assert estimate.count(text) >= EXPECTED[name]


def test_a_missing_tiktoken_falls_back_to_bytes(fresh_counter: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # import tiktoken raises ImportError
    assert type(tokens.counter()).__name__ == "_ByteEstimate"
    assert count_tokens("héllo") == len("héllo".encode())


def test_warm_up_loads_in_the_background_and_importing_the_core_loads_nothing() -> None:
    script = (
        "import sys, threading\n"
        "import hindsight_core\n"
        "from hindsight_core.pipeline import tokens\n"
        "assert 'tiktoken' not in sys.modules, 'tiktoken imported by import hindsight_core'\n"
        "assert not tokens._loaded\n"
        "tokens.warm_up()\n"
        "loader = [t for t in threading.enumerate() if t.name == 'hindsight-tokenizer-load']\n"
        "assert loader, 'no background load'\n"
        "loader[0].join(60)\n"
        "assert type(tokens._loaded[0]).__name__ == '_Cl100k'\n"
        "print(tokens.count_tokens('hello world'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"


def _requirements(distribution: str) -> set[str]:
    """The distributions ``distribution`` requires here (no extras; markers evaluated), names normalised."""
    names: set[str] = set()
    for line in importlib.metadata.requires(distribution) or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            names.add(canonicalize_name(requirement.name))
    return names


def test_the_core_dependency_closure_has_no_numpy() -> None:
    seen: set[str] = set()
    todo = ["hindsight-core"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_requirements(name) - seen)
    assert "tiktoken" in seen
    assert "numpy" not in seen, sorted(seen)
    assert "quicktok-v1" not in seen
