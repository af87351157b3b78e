"""What to ask memory: the explicit query, else the text of the last user message, cut to fit.

The Hindsight server bounds recall queries at 500 ``cl100k`` tokens and cuts longer ones at the *end*,
which is where the question of a long message usually is. So the query is cut here first, keeping the
end, and a long pasted document followed by a question still recalls memories about the question.
"""

from __future__ import annotations

from collections.abc import Sequence

from .messages import Message, content_text, is_user_input
from .render import strip_memory_blocks
from .tokens import tail_within

__all__ = ["MAX_QUERY_TOKENS", "extract_query"]

MAX_QUERY_TOKENS = 500


def extract_query(
    messages: Sequence[Message], explicit: str | None = None, max_tokens: int = MAX_QUERY_TOKENS
) -> str | None:
    """The recall query for ``messages``, or None when there is nothing to ask about."""
    text = explicit.strip() if isinstance(explicit, str) else ""
    if not text:
        for message in reversed(messages):
            if is_user_input(message):  # not an Anthropic tool-result message: that is the agent's
                text = strip_memory_blocks(content_text(message.get("content"))).strip()
                if text and text not in ("[image]", "[audio]", "[file]", "[document]"):
                    break
                text = ""
    if not text:
        return None
    return tail_within(text, max_tokens) or None
