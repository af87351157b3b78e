"""Translation between LlamaIndex chat messages and the core's message dicts, and turn tracking.

Nothing here does I/O or formats memory: the block text comes from the core, and so does the way it is
merged into a message (:func:`hindsight_core.pipeline.inject`). What is LlamaIndex-specific is which
message to merge it into, and which of the messages LlamaIndex hands to a memory make a completed turn
(a user message, then the final assistant answer: tool calls, tool results and ReAct reasoning are not
part of what is stored).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llama_index.core.base.llms.types import (
    AudioBlock,
    ChatMessage,
    DocumentBlock,
    ImageBlock,
    MessageRole,
    TextBlock,
    ToolCallBlock,
)
from llama_index.core.memory.memory import InsertMethod

from hindsight_core.pipeline import InjectionMode, inject

__all__ = [
    "CompletedTurn",
    "TurnTracker",
    "answer_text",
    "injection_mode",
    "insert_memory",
    "last_user_message",
    "to_core_message",
]

_ASSISTANT_ROLES = frozenset({MessageRole.ASSISTANT, MessageRole.CHATBOT, MessageRole.MODEL})
_TOOL_ROLES = frozenset({MessageRole.TOOL, MessageRole.FUNCTION})
_SYSTEM_ROLES = frozenset({MessageRole.SYSTEM, MessageRole.DEVELOPER})

# ReAct reasoning, as LlamaIndex's ReActAgent writes it to memory: "Thought: ...\nAction: ...\n
# Action Input: ...\nObservation: ...\nThought: ...\nAnswer: <the answer>".
_THOUGHT = re.compile(r"^[ \t]*Thought:", re.MULTILINE)
_ANSWER = re.compile(r"^[ \t]*Answer(?: \(Starts With\))?:[ \t]*", re.MULTILINE)


def injection_mode(method: InsertMethod, after_question: bool = False) -> InjectionMode:
    """The core's injection mode for LlamaIndex's ``InsertMethod``: ``USER`` puts the block before the
    question, or after it with ``after_question`` (the core's ``append_user``)."""
    if method is not InsertMethod.USER:
        return InjectionMode.SYSTEM_MESSAGE
    return InjectionMode.APPEND_USER if after_question else InjectionMode.PREPEND_USER


def _role(message: ChatMessage) -> str:
    if message.role in _ASSISTANT_ROLES:
        return "assistant"
    return str(message.role.value)


def to_core_message(message: ChatMessage) -> dict[str, Any]:
    """``message`` as the core's OpenAI-style dict (text parts; placeholders for media)."""
    parts: list[dict[str, Any]] = []
    for block in message.blocks:
        if isinstance(block, TextBlock):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            parts.append({"type": "image"})
        elif isinstance(block, AudioBlock):
            parts.append({"type": "audio"})
        elif isinstance(block, DocumentBlock):
            parts.append({"type": "document"})
    content: Any = parts[0]["text"] if len(parts) == 1 and parts[0]["type"] == "text" else parts
    return {"role": _role(message), "content": content}


def message_text(message: ChatMessage | str | None) -> str:
    if message is None:
        return ""
    if isinstance(message, str):
        return message
    return "\n".join(block.text for block in message.blocks if isinstance(block, TextBlock))


def last_user_message(messages: Sequence[ChatMessage]) -> ChatMessage | None:
    for message in reversed(messages):
        if message.role == MessageRole.USER:
            return message
    return None


def first_user_message(messages: Iterable[ChatMessage]) -> ChatMessage | None:
    return next((m for m in messages if m.role == MessageRole.USER), None)


def _has_tool_calls(message: ChatMessage) -> bool:
    return bool(message.additional_kwargs.get("tool_calls")) or any(
        isinstance(block, ToolCallBlock) for block in message.blocks
    )


def answer_text(message: ChatMessage) -> str | None:
    """The final answer an assistant message gives, or None when it is an intermediate step.

    Tool-calling messages are intermediate. ReAct reasoning (a message that starts with ``Thought:``) is
    reduced to the text after its last thought's ``Answer:``; reasoning without an answer is intermediate.
    """
    if _has_tool_calls(message):
        return None
    text = message_text(message).strip()
    if not text:
        return None
    if not text.startswith("Thought:"):
        return text
    last_thought = list(_THOUGHT.finditer(text))[-1]
    answer = _ANSWER.search(text, last_thought.end())
    if answer is None:
        return None
    return text[answer.end() :].strip() or None


@dataclass(frozen=True)
class CompletedTurn:
    """A user message (or several in a row) and the final answer to it."""

    user: tuple[ChatMessage, ...]
    answer: str


@dataclass
class TurnTracker:
    """Follows the messages put into a memory and says when a turn is complete.

    A turn starts with a user message and completes with an assistant message that is a final answer
    (:func:`answer_text`). Tool calls and tool results in between are part of the turn but not of what is
    stored. A new user message after an unfinished turn (no final answer) starts over: the unanswered turn
    is not stored. An assistant message with no user message before it (a greeting, a second answer) is
    not a turn.
    """

    _user: list[ChatMessage] = field(default_factory=list)
    _working: bool = False  # tool calls or intermediate steps seen since the user message(s)

    def clear(self) -> None:
        self._user = []
        self._working = False

    def add(self, message: ChatMessage) -> CompletedTurn | None:
        if message.role == MessageRole.USER:
            if self._working:
                self.clear()
            self._user.append(message)
            return None
        if message.role in _ASSISTANT_ROLES:
            answer = answer_text(message)
            if answer is None:
                self._working = True
                return None
            if not self._user:
                return None
            turn = CompletedTurn(tuple(self._user), answer)
            self.clear()
            return turn
        if message.role in _TOOL_ROLES:
            self._working = True
        return None  # system and developer messages are not part of a turn

    def add_all(self, messages: Iterable[ChatMessage]) -> list[CompletedTurn]:
        return [turn for turn in (self.add(m) for m in messages) if turn is not None]


def _merge(message: ChatMessage, block: str, mode: InjectionMode) -> ChatMessage:
    """A copy of ``message`` with ``block`` merged in as the core merges it (the original is untouched)."""
    if all(isinstance(b, TextBlock) for b in message.blocks):
        role = "system" if mode is InjectionMode.SYSTEM_MESSAGE else "user"
        merged = inject([{"role": role, "content": message_text(message)}], block, mode)[0]["content"]
        return message.model_copy(update={"blocks": [TextBlock(text=str(merged))]})
    extra = TextBlock(text=block)
    blocks = [extra, *message.blocks] if mode is InjectionMode.PREPEND_USER else [*message.blocks, extra]
    return message.model_copy(update={"blocks": blocks})


def insert_memory(
    messages: Sequence[ChatMessage], block: str, method: InsertMethod, *, after_question: bool = False
) -> list[ChatMessage]:
    """A new list: ``messages`` with the memory ``block`` inserted, per LlamaIndex's ``InsertMethod``.

    ``SYSTEM``: merged into the first system message, or a system message inserted at the top.
    ``USER``: put before the text of the last message if it is a user message (the question being
    answered), or after that text with ``after_question``; otherwise (a chat engine asks for history
    before adding the question) a user message holding the block is appended, so it still comes right
    before the question.
    """
    result = list(messages)
    if not block:
        return result
    if method is InsertMethod.USER:
        if result and result[-1].role == MessageRole.USER:
            result[-1] = _merge(result[-1], block, injection_mode(method, after_question))
        else:
            result.append(ChatMessage(role=MessageRole.USER, content=block))
        return result
    for index, message in enumerate(result):
        if message.role in _SYSTEM_ROLES:
            result[index] = _merge(message, block, InjectionMode.SYSTEM_MESSAGE)
            return result
    result.insert(0, ChatMessage(role=MessageRole.SYSTEM, content=block))
    return result
