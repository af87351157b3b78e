"""LangGraph nodes: automatic memory in a graph of your own (``StateGraph(MessagesState)``)::

    graph.add_node("recall", create_recall_node(bank_id_from_config="user_id"))
    graph.add_node("model", call_model)  # unchanged: it sends state["messages"] to the model
    graph.add_node("retain", create_retain_node(bank_id_from_config="user_id"))
    graph.add_edge(START, "recall"); graph.add_edge("recall", "model"); ...; graph.add_edge("retain", END)

The recall node recalls (or reflects) for the latest user message and adds the rendered block as a
``SystemMessage`` whose id starts with :data:`MEMORY_MESSAGE_ID`, right after that user message: the model
node needs no change, and everything before the block (system prompt, history) stays a stable prefix for
provider prompt caching. The block is the current run's only: the retain node removes it when the turn is
stored, and the next recall node removes any block left in the state (a run without a retain node, or one
that failed), so memory never piles up in the state or the checkpoints.

The retain node stores the completed turn once, as the agent middleware does: the latest user message
and the final answer (the last AI message after it), without tool traffic or memory blocks, appended to
the conversation's document (the run's ``thread_id`` unless a session is set).

Both are runnables with a sync and an async implementation: ``graph.invoke`` uses the sync client,
``graph.ainvoke`` the async one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

from langchain_core.messages import BaseMessage, RemoveMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from hindsight_core.memory import MemoryCall, MemoryPipeline
from hindsight_core.settings import MemorySettings
from hindsight_core.storage import StorageWorker
from hindsight_core.warmup import warm_up

from ._config import (
    BANK_KEY,
    bank_to_set_up,
    call_settings,
    check_bank_key,
    validate_constructor_options,
)
from ._messages import exchange_of, to_dicts
from .runnable import _PIPELINE, SOURCE

__all__ = ["MEMORY_MESSAGE_ID", "create_recall_node", "create_retain_node", "is_memory_message"]

MEMORY_MESSAGE_ID: Final = "hindsight-memory-"
"""The id prefix of the system message holding a run's memory block (each run's block has its own id)."""

_MISSING_BANK = (
    "No Hindsight memory bank for this graph run: pass bank_id=... to the node, or "
    f"config={{'configurable': {{'{BANK_KEY}': ...}}}} with the graph call, or set HINDSIGHT_BANK_ID."
)

Update = dict[str, list[BaseMessage]]


def is_memory_message(message: Any) -> bool:
    """Whether ``message`` is a memory block added by :func:`create_recall_node`."""
    return isinstance(message, SystemMessage) and str(message.id or "").startswith(MEMORY_MESSAGE_ID)


class _Node:
    """What both nodes share: their options, their settings per run, and the graph's messages."""

    def __init__(
        self,
        owner: str,
        bank_id: str | None,
        bank_id_from_config: str | None,
        messages_key: str,
        storage: StorageWorker | None,
        settings: Mapping[str, Any],
    ) -> None:
        bank = {"bank_id": bank_id} if bank_id is not None else {}
        self.options = validate_constructor_options({**settings, **bank}, owner)
        self.bank_key = check_bank_key(bank_id_from_config, owner)
        self.messages_key = messages_key
        self.pipeline = MemoryPipeline(source=SOURCE, storage=storage) if storage is not None else _PIPELINE
        warm_up()  # load the tokenizer in the background, so the first run does not wait for it

    def settings(self, config: RunnableConfig | None) -> MemorySettings:
        return call_settings(self.options, config, bank_key=self.bank_key, missing=_MISSING_BANK)

    def messages(self, state: Mapping[str, Any]) -> tuple[list[BaseMessage], list[BaseMessage]]:
        """The conversation without memory blocks, and removals of the blocks found in it."""
        messages: Sequence[BaseMessage] = state.get(self.messages_key) or []
        blocks = [m for m in messages if is_memory_message(m)]
        removals: list[BaseMessage] = [RemoveMessage(id=str(m.id)) for m in blocks]
        return [m for m in messages if not is_memory_message(m)], removals

    def update(self, messages: list[BaseMessage]) -> Update:
        return {self.messages_key: messages} if messages else {}


class _RecallNode(_Node):
    def _update(self, removals: list[BaseMessage], call: MemoryCall) -> Update:
        record = call.record.as_dict()
        block = record.pop("memory_context")
        if block:
            message = SystemMessage(
                block, id=f"{MEMORY_MESSAGE_ID}{uuid.uuid4().hex}", response_metadata={"hindsight": record}
            )
            removals = [*removals, message]
        return self.update(removals)

    def invoke(self, state: Mapping[str, Any], config: RunnableConfig) -> Update:
        messages, removals = self.messages(state)
        settings = self.settings(config)
        if bank_to_set_up(settings):
            self.pipeline.ensure_bank(settings)
        call = self.pipeline.prepare(to_dicts(messages), settings)
        return self._update(removals, call)

    async def ainvoke(self, state: Mapping[str, Any], config: RunnableConfig) -> Update:
        messages, removals = self.messages(state)
        settings = self.settings(config)
        if bank_to_set_up(settings):
            await self.pipeline.aensure_bank(settings)
        call = await self.pipeline.aprepare(to_dicts(messages), settings)
        return self._update(removals, call)


class _RetainNode(_Node):
    def invoke(self, state: Mapping[str, Any], config: RunnableConfig) -> Update:
        messages, removals = self.messages(state)
        exchange = exchange_of(messages)
        if exchange is not None:
            self.pipeline.store(*exchange, self.settings(config))
        return self.update(removals)

    async def ainvoke(self, state: Mapping[str, Any], config: RunnableConfig) -> Update:
        messages, removals = self.messages(state)
        exchange = exchange_of(messages)
        if exchange is not None:
            await self.pipeline.astore(*exchange, self.settings(config))
        return self.update(removals)


def create_recall_node(
    *,
    bank_id: str | None = None,
    bank_id_from_config: str | None = None,
    messages_key: str = "messages",
    **settings: Any,
) -> Runnable[Any, Any]:
    """A LangGraph node that adds the memory block for the latest user message to the model's view (see
    the module documentation). Put it before the model node.

    The bank of a run, first found: ``config["configurable"]["hindsight_bank_id"]``, ``bank_id``,
    ``config["configurable"][bank_id_from_config]``, ``HINDSIGHT_BANK_ID`` (else a
    :class:`ConfigurationError` naming them). ``settings`` are the core's (``budget``,
    ``max_memory_tokens``, ``use_reflect``, ``recall_tags``, ``strict``, ...), validated here. A memory
    failure adds no block (fail open, with a warning) unless ``strict`` is set. ``messages_key``: the state
    key holding the conversation (``"messages"`` in ``MessagesState``).
    """
    node = _RecallNode("create_recall_node", bank_id, bank_id_from_config, messages_key, None, settings)
    return RunnableLambda(node.invoke, afunc=node.ainvoke, name="hindsight_recall")


def create_retain_node(
    *,
    bank_id: str | None = None,
    bank_id_from_config: str | None = None,
    messages_key: str = "messages",
    storage: StorageWorker | None = None,
    **settings: Any,
) -> Runnable[Any, Any]:
    """A LangGraph node that stores the completed turn (the latest user message and the final answer) once,
    in the background, and removes the run's memory block from the state. Put it after the model node, on
    the way to ``END``. Same bank rules and settings as :func:`create_recall_node` (``session_id``,
    ``tags``, ``sync_storage``...); ``storage`` is the background storage worker (default: the
    process-wide one).
    """
    node = _RetainNode("create_retain_node", bank_id, bank_id_from_config, messages_key, storage, settings)
    return RunnableLambda(node.invoke, afunc=node.ainvoke, name="hindsight_retain")
