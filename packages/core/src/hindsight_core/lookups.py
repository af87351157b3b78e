"""One memory lookup per user message.

An agent answers one user message with several model calls: it asks for tools, gets their results, asks
again; a client retries a failed call; a LangGraph node runs again. Each of those calls carries the same
latest user message, so it would recall the same memories with the same query: one server round trip
(100-600 ms on a real server) per step for nothing. :class:`LookupCache` keeps, per conversation, the
lookup made for its latest user message, and the calls that continue that message reuse it. A new user
message in the conversation replaces it; so does a change of anything the lookup depends on (bank, query,
budget, fact types, tags, reflect options), since that is part of the key.

The cache is bounded (the most recently used conversations, and entries expire after ``ttl`` seconds, so a
conversation picked up again later recalls afresh), process-wide and safe to use from any thread or task:
keys hold the server, the bank and the conversation's document, so two users' calls never meet.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from .models import RecallResponse, ReflectResponse
from .pipeline import Message, content_text, last_user_input

__all__ = ["LookupCache", "LookupKey", "user_message_marker"]

Response = RecallResponse | ReflectResponse


def user_message_marker(messages: Sequence[Message]) -> tuple[int, str] | None:
    """Which user message a call continues: its position and a digest of its text (None: there is none).

    Later agent steps append assistant and tool messages after it, so both stay the same; a new user
    message moves the position."""
    index = last_user_input(messages)
    if index is None:
        return None
    text = content_text(messages[index].get("content"))
    return index, hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=12).hexdigest()


@dataclass(frozen=True)
class LookupKey:
    """A conversation (where) and what its lookup was for (which user message, with which options)."""

    conversation: tuple[str, str, str]
    """(server URL, bank, document id)"""
    turn: Hashable
    """The user message marker and every option the lookup depends on."""


class LookupCache:
    """The latest lookup of each conversation, for the calls that continue the same user message."""

    def __init__(self, max_conversations: int = 1024, ttl: float = 300.0) -> None:
        self.max_conversations = max_conversations
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str, str], tuple[Hashable, Response, float]] = OrderedDict()

    def get(self, key: LookupKey) -> Response | None:
        """The response looked up for ``key``'s user message, if this conversation has it and it is fresh."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key.conversation)
            if entry is None:
                return None
            turn, response, stored = entry
            if turn != key.turn or now - stored > self.ttl:
                return None
            self._entries.move_to_end(key.conversation)
            return response

    def put(self, key: LookupKey, response: Response) -> None:
        """Remember ``response`` as the conversation's lookup (replacing the one of an earlier message)."""
        now = time.monotonic()
        with self._lock:
            self._entries[key.conversation] = (key.turn, response, now)
            self._entries.move_to_end(key.conversation)
            while len(self._entries) > self.max_conversations:
                self._entries.popitem(last=False)
            while self._entries:  # the least recently used first: drop the expired ones there
                oldest = next(iter(self._entries.values()))
                if now - oldest[2] <= self.ttl:
                    break
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
