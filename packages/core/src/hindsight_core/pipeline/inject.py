"""Putting the memory block into the prompt, without touching the caller's messages.

``system_message`` mode (the default) appends the block to the first system message (or inserts one at the
top); ``prepend_user`` puts it before the text of the last thing the user said, ``append_user`` after it.
All return a new list; the one message that changes is copied, the caller's list and dicts are left as
they were. The same block in the same messages gives the same bytes.

Provider prompt caches serve the longest prefix a prompt shares with earlier ones. In ``system_message``
mode the block changes with every user message and sits before the whole history, so the cache stops
there; the ``*_user`` modes keep the system prompt and the history before the latest user message a stable
prefix (``append_user`` also keeps that message's own text in it). See docs/performance.md for measured
shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any

from .messages import Message, last_user_input

__all__ = ["InjectionMode", "inject", "merge_system"]

_SYSTEM_ROLES = frozenset({"system", "developer"})


class InjectionMode(str, Enum):
    """Where the memory block goes."""

    SYSTEM_MESSAGE = "system_message"
    """Appended to the first system message (or a system message of its own at the top)."""
    PREPEND_USER = "prepend_user"
    """Before the text of the latest user message: the history stays a cacheable prefix."""
    APPEND_USER = "append_user"
    """After the text of the latest user message: the most cache-friendly placement."""


def merge_system(system: Any, block: str) -> Any:
    """``system`` content (a string, a list of parts, or None) with ``block`` appended."""
    if not system:
        return block
    if isinstance(system, str):
        return f"{system}\n\n{block}"
    if isinstance(system, Sequence):
        return [*system, {"type": "text", "text": block}]
    return f"{system}\n\n{block}"


def _prepend(content: Any, block: str) -> Any:
    if content is None or content == "":  # an empty list of parts stays a list
        return block
    if isinstance(content, str):
        return f"{block}\n\n{content}"
    if isinstance(content, Sequence):
        # Anthropic requires a user turn's tool results to come first: the block goes after them.
        lead = 0
        while (
            lead < len(content)
            and isinstance(content[lead], dict)
            and content[lead].get("type") == "tool_result"
        ):
            lead += 1
        return [*content[:lead], {"type": "text", "text": block}, *content[lead:]]
    return f"{block}\n\n{content}"


def _append(content: Any, block: str) -> Any:
    if content is None or content == "":
        return block
    if isinstance(content, str):
        return f"{content}\n\n{block}"
    if isinstance(content, Sequence):
        return [*content, {"type": "text", "text": block}]
    return f"{content}\n\n{block}"


def inject(messages: Sequence[Message], block: str, mode: InjectionMode) -> list[dict[str, Any]]:
    """A new message list with ``block`` injected; ``messages`` itself is not modified."""
    result: list[dict[str, Any]] = [m if isinstance(m, dict) else dict(m) for m in messages]
    if not block:
        return result
    if mode is not InjectionMode.SYSTEM_MESSAGE:
        index = last_user_input(result)
        if index is not None:
            message = dict(result[index])
            place = _prepend if mode is InjectionMode.PREPEND_USER else _append
            message["content"] = place(message.get("content"), block)
            result[index] = message
            return result
        # Nothing the user said to put it next to: the system message.
    for index, message in enumerate(result):
        if message.get("role") in _SYSTEM_ROLES:
            merged = dict(message)
            merged["content"] = merge_system(message.get("content"), block)
            result[index] = merged
            return result
    result.insert(0, {"role": "system", "content": block})
    return result
