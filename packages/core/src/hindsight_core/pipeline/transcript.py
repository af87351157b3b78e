"""What to store after a call: the new part of the conversation and the reply, as plain text.

Each call stores only what is new since the last assistant message (the user's new input, tool results)
plus the reply, so a conversation is stored one turn at a time, each turn once, and appended to its
document; the history is never re-sent. The transcript is built from the caller's original messages,
never from the injected ones, and any memory block found in them is removed as well: recalled memory
is never stored again (it would feed on itself).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .messages import Message, message_text
from .render import strip_memory_blocks

__all__ = ["new_turn", "transcript"]


def new_turn(messages: Sequence[Message]) -> list[Message]:
    """The messages after the last assistant message: the part of the conversation not stored yet."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "assistant":
            return list(messages[index + 1 :])
    return list(messages)


def _tool_names(messages: Sequence[Message]) -> dict[str, str]:
    names: dict[str, str] = {}
    for message in messages:
        for call in message.get("tool_calls") or []:
            if isinstance(call, Mapping) and call.get("id"):
                function = call.get("function") or {}
                names[str(call["id"])] = (
                    str(function.get("name", "tool")) if isinstance(function, Mapping) else "tool"
                )
    return names


def _line(message: Message, tool_names: Mapping[str, str]) -> str:
    role = str(message.get("role") or "user")
    if role in ("system", "developer"):
        return ""
    text = strip_memory_blocks(message_text(message)).strip()
    if not text:
        return ""
    if role in ("tool", "function"):
        name = message.get("name") or tool_names.get(str(message.get("tool_call_id")), "tool")
        return f"tool {name} returned: {text}"
    return f"{role}: {text}"


def transcript(messages: Sequence[Message], reply: Message | str | None) -> str:
    """The text to store for this call: the new turn of ``messages`` and the ``reply``."""
    turn = new_turn(messages)
    names = _tool_names(messages)
    lines = [line for line in (_line(m, names) for m in turn) if line]
    if reply is not None:
        reply_message: Message = {"role": "assistant", "content": reply} if isinstance(reply, str) else reply
        line = _line(reply_message, names)
        if line:
            lines.append(line)
    return "\n".join(lines)
