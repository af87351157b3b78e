"""What to store after a call: the new turn of the conversation, as plain text.

One rule for every adapter. A *turn* is what the user said since the assistant's last answer, and the
answer that completes it. An agent turn can take several model calls (the model asks for tools, gets
their results, asks again...): those steps are the agent's working, not the conversation, so a reply that
still calls tools completes nothing and stores nothing; the turn is stored once, when the final answer
comes, as the user's words and that answer. Tool calls, tool results and the assistant's text between
them are not stored (they are bulky, often about the world rather than the user, and the answer says what
came of them).

Each turn is stored once and appended to its conversation's document; the history is never re-sent. The
transcript is built from the caller's original messages, never from the injected ones, and any memory
block found in them is removed as well: recalled memory is never stored again (it would feed on itself).
"""

from __future__ import annotations

from collections.abc import Sequence

from .messages import Message, calls_tools, is_user_input, message_text
from .render import strip_memory_blocks

__all__ = ["completes_turn", "new_turn", "transcript"]


def completes_turn(reply: Message | str | None) -> bool:
    """Whether ``reply`` is an answer (True) or a step of an agent turn that asks for tools (False)."""
    return not (isinstance(reply, dict) and calls_tools(reply))


def _is_answer(message: Message) -> bool:
    return message.get("role") == "assistant" and not calls_tools(message)


def new_turn(messages: Sequence[Message]) -> list[Message]:
    """The messages after the assistant's last answer: the turn not stored yet (agent steps included)."""
    for index in range(len(messages) - 1, -1, -1):
        if _is_answer(messages[index]):
            return list(messages[index + 1 :])
    return list(messages)


def _line(message: Message) -> str:
    text = strip_memory_blocks(message_text(message)).strip()
    return f"{message.get('role')}: {text}" if text else ""


def transcript(messages: Sequence[Message], reply: Message | str | None) -> str:
    """The text to store for this call: what the user said in the new turn of ``messages`` and the
    ``reply`` that answers it; empty when there is nothing to store or ``reply`` is an agent step."""
    if not completes_turn(reply):
        return ""
    lines = [line for line in (_line(m) for m in new_turn(messages) if is_user_input(m)) if line]
    if reply is not None:
        answer: Message = {"role": "assistant", "content": reply} if isinstance(reply, str) else reply
        line = _line(answer)
        if line:
            lines.append(line)
    return "\n".join(lines)
