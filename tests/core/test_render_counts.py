"""The rendered block's token count is the sum of its parts, exactly (what the renderer relies on to count
each memory once and remember its count), on a varied corpus: CJK, emoji, punctuation at line ends,
numbers, quotes, tags, long and short memories, every label."""

from __future__ import annotations

import random

import pytest

from hindsight_core.pipeline import Memory, count_tokens, render_recall

PIECES = [
    "The user likes tea.",
    "ユーザーは東京に住んでいます。",
    "用户喜欢喝茶，也喜欢咖啡！",  # noqa: RUF001 (full-width punctuation on purpose)
    "사용자는 서울에 산다",
    "Loves 🍕 and 🎸!!",
    "👨‍👩‍👧‍👦 family of four",
    "Version 3.11.7 (released 2023-12-04)",
    "Budget: $1,200/month; 15% savings",
    'Said "never again" -- twice...',
    "path/to/file.py:42",
    "<b>bold</b> & <i>italic</i>",
    "ends with a colon:",
    "ends with a question?",
    "ends with digits 2024",
    "ends with a paren (see above)",
    "tabs\tand  double  spaces",
    "naïve café résumé",
    "1000000000 tokens? 12345678901234567890",
    "'quoted' and \u2019curly\u2019",
    "x",
]
TYPES = [None, "world", "experience", "observation", "mental_model", "opinion", "agent-note"]


def _memory(rng: random.Random) -> Memory:
    text = " ".join(rng.choice(PIECES) for _ in range(rng.randint(1, 4)))
    return Memory(text, rng.choice(TYPES))


@pytest.mark.parametrize("seed", range(40))
def test_the_block_costs_exactly_the_sum_of_its_lines(seed: int) -> None:
    rng = random.Random(seed)
    memories = [_memory(rng) for _ in range(rng.randint(1, 120))]
    for budget in (None, 60, 200, 1000, 4096):
        rendered = render_recall(memories, budget, None)
        if not rendered.text:
            continue
        assert rendered.tokens == count_tokens(rendered.text)
        if budget is not None:
            assert rendered.tokens <= budget


def test_the_same_memories_render_the_same_bytes_and_counts() -> None:
    rng = random.Random(7)
    memories = [_memory(rng) for _ in range(30)]
    first = render_recall(memories, 1500, None)
    again = render_recall(memories, 1500, None)
    assert first == again
