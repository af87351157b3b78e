"""Reading chat messages: the text of a message, whatever shape its content has.

Messages are the OpenAI chat format (``{"role": ..., "content": str | [parts], "tool_calls": [...]}``),
which LiteLLM, LangChain and LlamaIndex adapters all translate to. Anthropic-style content blocks
(``text``, ``image``, ``tool_use``, ``tool_result``) are read too, so the Anthropic SDK wrapper needs no
reader of its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "Message",
    "calls_tools",
    "content_text",
    "is_user_input",
    "last_user_input",
    "message_text",
    "tool_call_text",
]

Message = Mapping[str, Any]

_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
_PLACEHOLDERS = {
    "image_url": "[image]",
    "image": "[image]",
    "input_image": "[image]",
    "input_audio": "[audio]",
    "audio": "[audio]",
    "file": "[file]",
    "input_file": "[file]",
    "document": "[document]",
}
_SKIPPED_PARTS = frozenset({"thinking", "redacted_thinking", "reasoning"})


def content_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or the text of its parts joined by newlines.

    Non-text parts become placeholders (``[image]``) so a transcript still says something was shown.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        return _part_text(content)
    if isinstance(content, Sequence) and not isinstance(content, (bytes, bytearray)):
        texts = [text for text in (_part_text(part) for part in content) if text]
        return "\n".join(texts)
    return str(content)


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if not isinstance(part, Mapping):
        text = getattr(part, "text", None)
        return text if isinstance(text, str) else ""
    kind = part.get("type")
    if kind in _TEXT_PARTS or (kind is None and isinstance(part.get("text"), str)):
        text = part.get("text")
        return text if isinstance(text, str) else ""
    if kind in _PLACEHOLDERS:
        return _PLACEHOLDERS[kind]
    if kind == "tool_use":
        return tool_call_text(str(part.get("name", "tool")), part.get("input"))
    if kind == "tool_result":
        return content_text(part.get("content"))
    if kind in _SKIPPED_PARTS:
        return ""
    text = part.get("text")
    return text if isinstance(text, str) else ""


def tool_call_text(name: str, arguments: Any) -> str:
    """``called get_weather with {"city": "Paris"}``; arguments that are not JSON are shown as given."""
    if arguments is None or arguments == "":
        return f"called {name}"
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return f"called {name} with {arguments}"
    try:
        rendered = json.dumps(arguments, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        rendered = str(arguments)
    return f"called {name} with {rendered}"


def message_text(message: Message) -> str:
    """The text of one message (its content, plus any tool calls it makes)."""
    text = content_text(message.get("content"))
    calls = message.get("tool_calls") or []
    described = []
    for call in calls if isinstance(calls, Sequence) else []:
        function = call.get("function", call) if isinstance(call, Mapping) else {}
        if isinstance(function, Mapping):
            described.append(tool_call_text(str(function.get("name", "tool")), function.get("arguments")))
    if described:
        text = "\n".join([text, *described]) if text else "\n".join(described)
    return text


def _parts(message: Message) -> Sequence[Any]:
    content = message.get("content")
    if isinstance(content, Sequence) and not isinstance(content, (str, bytes, bytearray)):
        return content
    return ()


def is_user_input(message: Message) -> bool:
    """Whether ``message`` is something the user said: a ``user`` message that is not only tool results
    (Anthropic sends tool results as a user message of ``tool_result`` blocks)."""
    if message.get("role") != "user":
        return False
    parts = _parts(message)
    return not parts or not all(isinstance(p, Mapping) and p.get("type") == "tool_result" for p in parts)


def last_user_input(messages: Sequence[Message]) -> int | None:
    """The index of the last thing the user said (see :func:`is_user_input`), or None."""
    for index in range(len(messages) - 1, -1, -1):
        if is_user_input(messages[index]):
            return index
    return None


def calls_tools(message: Message) -> bool:
    """Whether an assistant message asks for tools (OpenAI ``tool_calls``/``function_call``, Anthropic
    ``tool_use`` blocks): the agent's turn goes on after it."""
    if message.get("tool_calls") or message.get("function_call"):
        return True
    return any(isinstance(p, Mapping) and p.get("type") == "tool_use" for p in _parts(message))
