"""Translation between provider objects and the core's message dicts (no memory logic here)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hindsight_core import ConfigurationError

__all__ = ["anthropic_reply", "attr", "openai_reply", "to_message_dicts"]


def attr(obj: Any, name: str) -> Any:
    """``obj[name]`` for mappings, ``obj.name`` otherwise (None when absent)."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _as_dict(obj: Any, index: int) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        return dict(obj)
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        dumped = dump(exclude_none=True)
        if isinstance(dumped, dict):
            return dumped
    if not hasattr(obj, "__dict__"):  # a string, a number, None...: not a message
        raise ConfigurationError(
            f"messages[{index}] must be a message (a dict with 'role' and 'content', or a message "
            f"object), got {type(obj).__name__}"
        )
    return {key: value for key, value in vars(obj).items() if not key.startswith("_")}


def to_message_dicts(messages: object) -> list[dict[str, Any]]:
    """Messages as plain dicts (SDK/pydantic message objects are dumped; dicts are kept as they are).

    Raises :class:`~hindsight_core.ConfigurationError` naming the problem when ``messages`` is not a list
    (or other iterable) of messages."""
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Iterable):
        raise ConfigurationError(
            "messages must be a list of messages (dicts with 'role' and 'content', or message objects), "
            f"got {type(messages).__name__}"
        )
    return [m if isinstance(m, dict) else _as_dict(m, index) for index, m in enumerate(messages)]


def openai_reply(response: Any) -> dict[str, Any] | None:
    """The assistant message of choice 0 of an OpenAI-shaped response (LiteLLM or the OpenAI SDK)."""
    choices = attr(response, "choices") or []
    if not choices:
        return None
    message = attr(choices[0], "message")
    if message is None:
        return None
    reply: dict[str, Any] = {"role": "assistant", "content": attr(message, "content")}
    calls = attr(message, "tool_calls")
    if calls:
        reply["tool_calls"] = [
            {
                "id": attr(call, "id"),
                "type": "function",
                "function": {
                    "name": attr(attr(call, "function"), "name"),
                    "arguments": attr(attr(call, "function"), "arguments"),
                },
            }
            for call in calls
        ]
    return reply


def anthropic_reply(response: Any) -> dict[str, Any] | None:
    """The assistant message of an Anthropic ``Message`` (text and tool_use blocks)."""
    blocks = attr(response, "content") or []
    content = []
    for block in blocks:
        kind = attr(block, "type")
        if kind == "text":
            content.append({"type": "text", "text": attr(block, "text") or ""})
        elif kind == "tool_use":
            content.append({"type": "tool_use", "name": attr(block, "name"), "input": attr(block, "input")})
    return {"role": "assistant", "content": content} if content else None
