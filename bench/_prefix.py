"""The cache-served share of a conversation's prompts: how much of each prompt a provider's prompt cache can
serve from the previous one (pure functions, no I/O).

A prompt is serialized as the provider sees it: OpenAI Chat Completions, the ``messages`` in order; Anthropic
Messages, the top-level ``system`` first, then the ``messages``. Each message becomes its role and its text
(text parts in order; other parts and tool calls as sorted JSON), encoded with ``cl100k_base`` (tiktoken, the
core's tokenizer, offline) and closed by one end-of-message token, as chat templates do. Message boundaries
are token boundaries, so two prompts share exactly the messages they have in common, plus the common start
of the first message that differs.

For turns 2..N of a conversation::

    share(t) = own tokens in the common token prefix of prompt(t) and prompt(t-1) / own tokens of prompt(t)

where the *own* tokens are those of the application's own prompt, the same turn without memory: the memory
block is new every turn and is counted in neither (when the shared prefix runs into the block, its fixed
opening lines are cached too, but they are not the application's prompt). ``share`` is the mean over the
turns. Without memory it is the ceiling. The block is located by comparing prompt(t) with the own prompt:
it starts where they first differ and is as long as the difference of their lengths.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from hindsight_core.pipeline.tokens import encode

__all__ = ["END", "common_prefix", "conversation_shares", "prompt_tokens", "segments"]

END = -1
"""The end-of-message token (not a cl100k id: it never matches text)."""


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                parts.append(json.dumps(part, sort_keys=True, default=str))
        return "\n".join(parts)
    return json.dumps(content, sort_keys=True, default=str)


def _message(message: Mapping[str, Any]) -> str:
    text = f"{message.get('role')}\n{_text(message.get('content'))}"
    extra = {k: message[k] for k in ("tool_calls", "tool_call_id", "name") if message.get(k)}
    return f"{text}\n{json.dumps(extra, sort_keys=True)}" if extra else text


def segments(wire: str, body: Mapping[str, Any]) -> list[str]:
    """The prompt of one provider request body, one string per message, in the order the provider reads it."""
    out: list[str] = []
    if wire == "anthropic":
        system = body.get("system")
        if system:
            out.append(f"system\n{_text(system)}")
    elif wire != "openai":
        raise ValueError(f"unknown wire {wire!r}")
    out.extend(_message(m) for m in body.get("messages") or [])
    return out


@cache
def _encode(segment: str) -> tuple[int, ...]:
    return tuple(encode(segment))  # the core's tokenizer (cl100k_base, from the vocabulary it ships)


def prompt_tokens(wire: str, body: Mapping[str, Any]) -> list[int]:
    """The prompt's tokens: each message's tokens, then :data:`END`."""
    tokens: list[int] = []
    for segment in segments(wire, body):
        tokens.extend(_encode(segment))
        tokens.append(END)
    return tokens


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _own_in_prefix(prompt: Sequence[int], own: Sequence[int], prefix: int) -> int:
    """How many of the application's own tokens are in the first ``prefix`` tokens of ``prompt`` (its own
    prompt ``own`` with a memory block inserted in one place)."""
    start = common_prefix(prompt, own)
    length = len(prompt) - len(own)
    return min(prefix, start) + max(0, prefix - start - length)


def conversation_shares(
    prompts: Sequence[Sequence[int]], own: Sequence[Sequence[int]], horizons: Sequence[int]
) -> dict[str, Any]:
    """Per-turn figures of one conversation and its shares over the first ``n`` turns for each horizon.

    ``prompts``: the tokens of what the provider received at each turn; ``own``: the application's own
    prompt at each turn (the same conversation without memory)."""
    if len(prompts) != len(own):
        raise ValueError(f"{len(prompts)} prompts but {len(own)} own prompts")
    shared = [0] + [common_prefix(prompts[t], prompts[t - 1]) for t in range(1, len(prompts))]
    covered = [_own_in_prefix(prompts[t], own[t], shared[t]) for t in range(len(prompts))]
    per_turn = {
        "prompt": [len(p) for p in prompts],
        "own": [len(o) for o in own],
        "shared": shared,
        "shared_own": covered,
    }
    result: dict[str, Any] = {"per_turn": per_turn, "share": {}, "uncached": {}, "memory_tokens": {}}
    for n in horizons:
        if n < 2 or n > len(prompts):
            continue
        turns = range(1, n)
        result["share"][str(n)] = sum(covered[t] / len(own[t]) for t in turns) / len(turns)
        # Input tokens the cache cannot serve, summed over turns 2..n (what the provider bills in full).
        result["uncached"][str(n)] = sum(len(prompts[t]) - shared[t] for t in turns)
        result["memory_tokens"][str(n)] = sum(len(prompts[t]) - len(own[t]) for t in range(n)) / n
    return result
