"""Translation between LangChain messages and the core's OpenAI-style message dicts.

The core reads and injects into plain dicts (``{"role", "content", "tool_calls", ...}``). Each LangChain
message is translated on its own, keeping its original ``content`` object (a string or LangChain's content
blocks), so that after the core injected a memory block the one changed message can be rebuilt from the
original LangChain message: ids, metadata and content-block formats are left as they were.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    convert_to_messages,
    convert_to_openai_messages,
)
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables.utils import AddableDict
from pydantic import BaseModel

__all__ = [
    "accumulate",
    "attach_metadata",
    "exchange_of",
    "reply_of",
    "restore",
    "to_dict",
    "to_dicts",
    "to_messages",
]

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "function"}


def to_messages(value: Any) -> list[BaseMessage]:
    """A run's input as LangChain messages: a string, a message, a prompt value or a list of message-likes."""
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, (str, BaseMessage)):
        return convert_to_messages([value])
    if isinstance(value, Mapping) and ("role" in value or "type" in value):
        return convert_to_messages([dict(value)])
    if isinstance(value, Sequence):
        return convert_to_messages(value)
    raise TypeError(
        "expected messages (a string, a message, a prompt value or a list of messages), "
        f"got {type(value).__name__}"
    )


def to_dict(message: BaseMessage) -> dict[str, Any]:
    """The core's view of one message. ``content`` is the message's own content object, unchanged."""
    try:
        converted = convert_to_openai_messages(message)
    except (TypeError, ValueError, KeyError):
        converted = {"role": _ROLES.get(message.type, getattr(message, "role", "user"))}
    converted["content"] = message.content
    return converted


def to_dicts(messages: Iterable[BaseMessage]) -> list[dict[str, Any]]:
    return [to_dict(message) for message in messages]


def restore(
    originals: Sequence[BaseMessage], dicts: Sequence[dict[str, Any]], injected: Sequence[Mapping[str, Any]]
) -> list[BaseMessage]:
    """LangChain messages for ``injected``, the core's injection of ``dicts`` (the translation of
    ``originals``).

    The core copies only the message it changes and may insert a system message at the top: every other
    message is the original LangChain object, the changed one a copy with the new content.
    """
    inserted = len(injected) - len(dicts)
    if inserted not in (0, 1):  # not what the core's inject does: translate everything back
        return convert_to_messages([dict(m) for m in injected])
    result: list[BaseMessage] = []
    if inserted:
        result.append(SystemMessage(content=injected[0]["content"]))
    for original, translated, new in zip(originals, dicts, injected[inserted:], strict=True):
        if new is translated or new.get("content") is original.content:
            result.append(original)
        else:
            result.append(original.model_copy(update={"content": new.get("content")}))
    return result


def _to_reply(message: BaseMessage) -> dict[str, Any]:
    return to_dict(message)


def reply_of(output: Any, key: str | None = None) -> dict[str, Any] | str | None:
    """What the runnable answered, for the transcript: a message dict, a string, or None if unknown."""
    if output is None:
        return None
    if isinstance(output, BaseMessage):
        return _to_reply(output)
    if isinstance(output, str):
        return output
    if isinstance(output, Mapping):
        if key is not None:
            return reply_of(output.get(key))
        if len(output) == 1:
            return reply_of(next(iter(output.values())))
        return None
    if isinstance(output, Sequence) and output and isinstance(output[-1], BaseMessage):
        return _to_reply(output[-1])
    if isinstance(output, BaseModel):
        return output.model_dump_json()
    return str(output)


def accumulate(total: Any, chunk: Any) -> Any:
    """Streamed chunks added up (messages, strings, dicts of those); the last chunk if they do not add."""
    if total is None:
        return chunk
    if isinstance(total, Mapping) and isinstance(chunk, Mapping):
        return AddableDict(total) + AddableDict(chunk)
    try:
        return total + chunk
    except TypeError:
        return chunk


def attach_metadata(output: Any, record: Mapping[str, Any], key: str | None = None) -> tuple[Any, bool]:
    """``output`` with ``record`` under ``response_metadata["hindsight"]`` of its AI message, if it has one.

    Returns the (possibly new) output and whether the record was attached. The message is copied, never
    changed in place.
    """
    if isinstance(output, (AIMessage, AIMessageChunk)):
        metadata = {**output.response_metadata, "hindsight": dict(record)}
        return output.model_copy(update={"response_metadata": metadata}), True
    if key is not None and isinstance(output, Mapping) and isinstance(output.get(key), AIMessage):
        message, attached = attach_metadata(output[key], record)
        copy = AddableDict(output) if isinstance(output, AddableDict) else dict(output)
        copy[key] = message
        return copy, attached
    return output, False


def exchange_of(
    messages: Sequence[BaseMessage], input_id: str | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any] | str | None] | None:
    """The completed exchange at the end of an agent's or a graph's ``messages``, for storage: the
    conversation up to the input (the message with ``input_id``, else the last user message) and the
    answer, the last AI message after it (tool calls and results in between are not part of it). None when
    there is no input or no answer yet."""
    end = next((i for i, m in enumerate(messages) if input_id and m.id == input_id), None)
    if end is None:  # the input is not found (e.g. messages were rewritten): the last user message
        end = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=None)
    if end is None:
        return None
    # The answer: the last AI message (it may be followed by a tool message with structured output).
    answer = next((m for m in reversed(messages[end + 1 :]) if isinstance(m, AIMessage)), None)
    if answer is None:
        return None
    return to_dicts(messages[: end + 1]), reply_of(answer)
