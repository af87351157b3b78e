"""Memory orchestration: messages + settings in, messages with memory + a debug record out; and, after the
LLM answered, the exchange handed to storage.

:class:`MemoryPipeline` is used the same way by every adapter::

    call = pipeline.prepare(messages, settings, model="gpt-4o")        # or: await pipeline.aprepare(...)
    response = llm(call.messages)                                      # the adapter's own LLM call
    pipeline.finish(call, reply)                                       # or: await pipeline.afinish(...)

``prepare`` plans (pure), does at most one recall or reflect per user message (sync or async I/O: the
only difference between the flavours), then renders, budgets and injects (pure). A memory failure never
fails the call unless ``strict`` is set: the call goes on without memory, the error is in the debug record,
and a rate-limited WARNING says so; a server that cannot be reached costs one call, not every call (the
circuit breaker). ``finish`` builds the turn's transcript from the caller's original messages and queues it
on the background storage worker; it never waits for the server (unless ``sync_storage`` is set).

Modules: :mod:`.calls` (the call, its document, the failure policy), :mod:`.plan` (pure: what to look up,
what to inject), :mod:`.lookup` (the read path's I/O), :mod:`.store` (the write path), :mod:`.pipeline`
(the facade).
"""

from .calls import NO_BANK_YET, MemoryCall, conversation_document_id
from .pipeline import MemoryPipeline

__all__ = ["NO_BANK_YET", "MemoryCall", "MemoryPipeline", "conversation_document_id"]
