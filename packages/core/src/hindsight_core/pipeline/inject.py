"""Putting the memory block into the prompt, without touching the caller's messages.

``system_message`` mode merges the block into the first system message (or inserts one at the top);
``prepend_user`` mode puts it before the text of the last user message. Both return a new list; the
one message that changes is copied, the caller's list and dicts are left as they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any

from .messages import Message

__all__ = ["InjectionMode", "inject", "merge_system"]

_SYSTEM_ROLES = frozenset({"system", "developer"})


class InjectionMode(str, Enum):
    """Where the memory block goes."""

    SYSTEM_MESSAGE = "system_message"
    PREPEND_USER = "prepend_user"


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


def inject(messages: Sequence[Message], block: str, mode: InjectionMode) -> list[dict[str, Any]]:
    """A new message list with ``block`` injected; ``messages`` itself is not modified."""
    result: list[dict[str, Any]] = [m if isinstance(m, dict) else dict(m) for m in messages]
    if not block:
        return result
    if mode is InjectionMode.PREPEND_USER:
        for index in range(len(result) - 1, -1, -1):
            if result[index].get("role") == "user":
                message = dict(result[index])
                message["content"] = _prepend(message.get("content"), block)
                result[index] = message
                return result
        # No user message to prepend to: fall back to the system message.
    for index, message in enumerate(result):
        if message.get("role") in _SYSTEM_ROLES:
            merged = dict(message)
            merged["content"] = merge_system(message.get("content"), block)
            result[index] = merged
            return result
    result.insert(0, {"role": "system", "content": block})
    return result
