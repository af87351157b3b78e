"""One LLM call with memory, whatever client makes it: prepare, send, then store (or wrap the stream).

``completion()``, the OpenAI and Anthropic SDK wrappers and the proxy hook differ only in how they send
the messages and read the reply; this is the part they share.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from hindsight_core.memory import MemoryCall
from hindsight_core.pipeline import Message
from hindsight_core.settings import MemorySettings

from ._streams import AsyncStoringStream, Collector, StoringStream
from .config import PIPELINE

__all__ = ["acall_with_memory", "call_with_memory"]

Reply = Callable[[Any], dict[str, Any] | None]


def call_with_memory(
    settings: MemorySettings,
    messages: Sequence[Message],
    model: str | None,
    send: Callable[[list[dict[str, Any]]], Any],
    *,
    stream: bool,
    reply: Reply,
    collector: Callable[[], Collector],
) -> Any:
    """Inject memory into ``messages``, ``send`` them, store the exchange; returns what ``send`` returned
    (a :class:`StoringStream` around it when streaming)."""
    call = PIPELINE.prepare(messages, settings, model=model)
    response = send(call.messages)
    if stream:
        return StoringStream(response, collector(), lambda r: PIPELINE.finish(call, r))
    PIPELINE.finish(call, reply(response))
    return response


async def acall_with_memory(
    settings: MemorySettings,
    messages: Sequence[Message],
    model: str | None,
    send: Callable[[list[dict[str, Any]]], Awaitable[Any]],
    *,
    stream: bool,
    reply: Reply,
    collector: Callable[[], Collector],
) -> Any:
    """:func:`call_with_memory` for asyncio."""
    call = await PIPELINE.aprepare(messages, settings, model=model)
    response = await send(call.messages)
    if stream:
        return async_storing_stream(response, call, collector())
    await PIPELINE.afinish(call, reply(response))
    return response


def async_storing_stream(response: Any, call: MemoryCall, collector: Collector) -> AsyncStoringStream:
    async def on_aend(reply: dict[str, Any] | None) -> None:
        await PIPELINE.afinish(call, reply)

    # ``on_end`` only runs when the stream is dropped unfinished, maybe on the event loop: never wait there.
    return AsyncStoringStream(response, collector, lambda r: PIPELINE.finish(call, r, wait=False), on_aend)
