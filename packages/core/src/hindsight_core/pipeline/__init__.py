"""The memory pipeline: pure functions, no I/O. Query extraction, rendering within a token budget,
injection, and the transcript to store."""

from .inject import InjectionMode, inject, merge_system
from .messages import (
    Message,
    calls_tools,
    content_text,
    is_user_input,
    last_user_input,
    message_text,
    tool_call_text,
)
from .query import MAX_QUERY_TOKENS, extract_query
from .render import (
    MEMORY_CLOSE,
    MEMORY_OPEN,
    Memory,
    RenderedMemory,
    render_recall,
    render_reflect,
    strip_memory_blocks,
)
from .tokens import count_tokens, tail_within, warm_up
from .transcript import completes_turn, new_turn, transcript

__all__ = [
    "MAX_QUERY_TOKENS",
    "MEMORY_CLOSE",
    "MEMORY_OPEN",
    "InjectionMode",
    "Memory",
    "Message",
    "RenderedMemory",
    "calls_tools",
    "completes_turn",
    "content_text",
    "count_tokens",
    "extract_query",
    "inject",
    "is_user_input",
    "last_user_input",
    "merge_system",
    "message_text",
    "new_turn",
    "render_recall",
    "render_reflect",
    "strip_memory_blocks",
    "tail_within",
    "tool_call_text",
    "transcript",
    "warm_up",
]
