"""Streaming replies: pass chunks through untouched and immediately, and store the reply once at the end.

:class:`StoringStream` wraps a provider stream (LiteLLM's ``CustomStreamWrapper``, an OpenAI SDK
``Stream``/``AsyncStream``, an Anthropic SDK stream). Each chunk is handed to a collector and returned as
is. When the stream is exhausted, closed early, left by a ``with`` block, or dropped, the collected reply
is handed to ``on_end`` exactly once.

Collectors translate the two chunk shapes in use: OpenAI-style (``choices[0].delta`` with ``content``
and ``tool_calls`` fragments: LiteLLM and the OpenAI SDK) and Anthropic's event stream.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ._messages import attr

__all__ = ["AnthropicCollector", "AsyncStoringStream", "Collector", "OpenAICollector", "StoringStream"]

_log = logging.getLogger("hindsight_litellm")


class Collector(Protocol):
    def add(self, chunk: Any) -> None: ...

    def reply(self) -> dict[str, Any] | None: ...


class OpenAICollector:
    """Rebuilds the assistant message of choice 0 from OpenAI-style chunks."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}

    def add(self, chunk: Any) -> None:
        choices = attr(chunk, "choices") or []
        for choice in choices:
            if (attr(choice, "index") or 0) != 0:
                continue
            delta = attr(choice, "delta")
            if delta is None:
                continue
            content = attr(delta, "content")
            if isinstance(content, str):
                self._text.append(content)
            for position, call in enumerate(attr(delta, "tool_calls") or []):
                index = attr(call, "index")
                slot = self._calls.setdefault(
                    index if isinstance(index, int) else position, {"name": "", "args": []}
                )
                if attr(call, "id"):
                    slot["id"] = attr(call, "id")
                function = attr(call, "function")
                if function is not None:
                    if attr(function, "name"):
                        slot["name"] = attr(function, "name")
                    if attr(function, "arguments"):
                        slot["args"].append(attr(function, "arguments"))

    def reply(self) -> dict[str, Any] | None:
        if not self._text and not self._calls:
            return None
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self._text)}
        if self._calls:
            message["tool_calls"] = [
                {
                    "id": slot.get("id"),
                    "type": "function",
                    "function": {"name": slot["name"], "arguments": "".join(slot["args"])},
                }
                for _, slot in sorted(self._calls.items())
            ]
        return message


class AnthropicCollector:
    """Rebuilds the assistant message from Anthropic stream events (text and tool_use blocks)."""

    def __init__(self) -> None:
        self._blocks: dict[int, dict[str, Any]] = {}

    def add(self, event: Any) -> None:
        kind = attr(event, "type")
        index = attr(event, "index")
        if kind == "content_block_start" and isinstance(index, int):
            block = attr(event, "content_block")
            block_type = attr(block, "type")
            if block_type == "text":
                self._blocks[index] = {"type": "text", "parts": [attr(block, "text") or ""]}
            elif block_type == "tool_use":
                self._blocks[index] = {"type": "tool_use", "name": attr(block, "name") or "tool", "parts": []}
        elif kind == "content_block_delta" and isinstance(index, int) and index in self._blocks:
            delta = attr(event, "delta")
            fragment = (
                attr(delta, "text") if attr(delta, "type") == "text_delta" else attr(delta, "partial_json")
            )
            if isinstance(fragment, str):
                self._blocks[index]["parts"].append(fragment)

    def reply(self) -> dict[str, Any] | None:
        content: list[dict[str, Any]] = []
        for _, block in sorted(self._blocks.items()):
            joined = "".join(block["parts"])
            if block["type"] == "text":
                content.append({"type": "text", "text": joined})
            else:
                content.append({"type": "tool_use", "name": block["name"], "input": joined})
        return {"role": "assistant", "content": content} if content else None


class _StoringStreamBase:
    def __init__(
        self, stream: Any, collector: Collector, on_end: Callable[[dict[str, Any] | None], None]
    ) -> None:
        self._stream = stream
        self._collector = collector
        self._on_end = on_end
        self._ended = False
        self._lock = threading.Lock()
        self._iterator: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def _claim(self) -> bool:
        with self._lock:
            if self._ended:
                return False
            self._ended = True
            return True

    def _end(self) -> None:
        if self._claim():
            try:
                self._on_end(self._collector.reply())
            except Exception:
                _log.exception("Hindsight could not store a streamed reply")

    def __del__(self) -> None:
        # A stream abandoned mid-way (``break`` out of a loop, then dropped) still stores what it got.
        if not getattr(self, "_ended", True):
            self._end()


class StoringStream(_StoringStreamBase):
    """A sync stream proxy that stores the reply once when the stream ends, is closed, or is dropped.

    Iteration, ``with`` and ``close()`` behave as on the wrapped stream; every other attribute is the
    wrapped stream's.
    """

    def __iter__(self) -> StoringStream:
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            self._iterator = iter(self._stream)
        try:
            chunk = next(self._iterator)
        except BaseException:  # exhausted, or failed mid-way: store what arrived
            self._end()
            raise
        self._collector.add(chunk)
        return chunk

    def close(self) -> None:
        """Close the underlying stream; what arrived so far is stored."""
        try:
            closer = getattr(self._stream, "close", None)
            if callable(closer):
                closer()
        finally:
            self._end()

    def __enter__(self) -> StoringStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStoringStream(_StoringStreamBase):
    """The asyncio counterpart of :class:`StoringStream` (``async for``, ``async with``, ``await close()``).

    ``on_aend`` (when given) is awaited instead of ``on_end`` at the end of the stream.
    """

    def __init__(
        self,
        stream: Any,
        collector: Collector,
        on_end: Callable[[dict[str, Any] | None], None],
        on_aend: Callable[[dict[str, Any] | None], Awaitable[None]],
    ) -> None:
        super().__init__(stream, collector, on_end)
        self._on_aend = on_aend

    async def _aend(self) -> None:
        if self._claim():
            try:
                await self._on_aend(self._collector.reply())
            except Exception:
                _log.exception("Hindsight could not store a streamed reply")

    def __aiter__(self) -> AsyncStoringStream:
        return self

    async def __anext__(self) -> Any:
        if self._iterator is None:
            self._iterator = self._stream.__aiter__()
        try:
            chunk = await self._iterator.__anext__()
        except BaseException:  # exhausted, or failed mid-way: store what arrived
            await self._aend()
            raise
        self._collector.add(chunk)
        return chunk

    async def close(self) -> None:
        """Close the underlying stream; what arrived so far is stored."""
        try:
            closer = getattr(self._stream, "aclose", None) or getattr(self._stream, "close", None)
            if callable(closer):
                result = closer()
                if hasattr(result, "__await__"):
                    await result
        finally:
            await self._aend()

    aclose = close

    async def __aenter__(self) -> AsyncStoringStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
