"""The write path: what a call (or an adapter, or an agent's tool) hands to background storage.

A completed turn becomes a :class:`~hindsight_core.storage.Turn` of the conversation's document, built by
the one transcript rule (:mod:`hindsight_core.pipeline.transcript`: an agent step stores nothing, the
turn is stored once with its answer) from the caller's original messages. Handing it over never waits
for the server unless ``sync_storage`` is set; then a turn the server did not take is reported, and raised
in strict mode.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence

from ..debug import InjectionDebugInfo
from ..errors import ConfigurationError, StorageError
from ..pipeline import Message, completes_turn, transcript
from ..settings import MemorySettings
from ..storage import StorageResult, StorageWorker, Turn
from .calls import FailOpen, MemoryCall, conversation_document_id

__all__ = ["Store"]


class Store:
    """Turns and notes to the storage worker, each call's once."""

    def __init__(self, source: str, storage: Callable[[], StorageWorker], fail: FailOpen) -> None:
        self.source = source
        self._storage = storage
        self._fail = fail

    # ---------------------------------------------------------------------------------------- turns

    def storage_call(
        self,
        messages: Sequence[Message],
        settings: MemorySettings,
        model: str | None,
        record: InjectionDebugInfo | None,
    ) -> MemoryCall:
        """A call made only to store (no lookup): for adapters that complete a turn elsewhere."""
        original = list(messages)
        if record is None:
            record = InjectionDebugInfo(
                mode=settings.mode,
                query=None,
                bank_id=settings.bank_id,
                model=model,
                skipped_reason="storage only",
            )
        store = settings.store_conversations and bool(settings.bank_id) and not settings.is_excluded(model)
        if settings.bank_id:
            record.document_id = conversation_document_id(settings, original)
        return MemoryCall(
            messages=[], original=original, settings=settings, record=record, model=model, store=store
        )

    def turn(self, call: MemoryCall, reply: Message | str | None) -> Turn | None:
        """The turn ``call`` completes with ``reply`` (None: nothing to store; said in the record)."""
        record = call.record
        if call.finished:
            return None
        call.finished = True
        if not call.store:
            record.storage_status = "skipped"
            record.storage_reason = record.storage_reason or "storage is off for this call"
            return None
        if not completes_turn(reply):
            record.storage_status = "skipped"
            record.storage_reason = (
                "an agent step (the reply calls tools): the turn is stored with its answer"
            )
            return None
        text = transcript(call.original, reply)
        if not text:
            record.storage_status = "skipped"
            record.storage_reason = "nothing to store"
            return None
        context = f"conversation with an AI assistant{f' ({call.model})' if call.model else ''}"
        return self._make_turn(call, text, context)

    def _make_turn(self, call: MemoryCall, text: str, context: str | None) -> Turn:
        settings = call.settings
        metadata = {"source": self.source}
        if call.model:
            metadata["model"] = call.model
        if settings.session_id:
            metadata["session_id"] = settings.session_id
        return Turn(
            connection=settings.connection,
            bank_id=settings.bank_id or "",
            document_id=call.record.document_id or conversation_document_id(settings, call.original),
            content=text,
            context=context,
            tags=settings.tags,
            metadata=metadata,
        )

    def submit(self, call: MemoryCall, turn: Turn) -> None:
        record = call.record

        def done(result: StorageResult) -> None:
            record.storage_status = result.status
            record.storage_error = result.error

        record.storage_status = "queued"
        self._storage().submit(turn, on_done=done)

    @staticmethod
    def raise_if_not_stored(call: MemoryCall) -> None:
        """With ``sync_storage`` and ``strict``, a turn the server did not take is an error (as
        ``sync_storage`` raised in hindsight-litellm 0.5.4); without ``strict`` it is reported, not raised."""
        record = call.record
        if not call.settings.strict or record.storage_status in ("stored", "skipped"):
            return
        reason = record.storage_error or f"not acknowledged within {call.settings.retain_timeout:g} s"
        raise StorageError(
            f"the conversation could not be stored in bank {call.settings.bank_id!r} "
            f"({record.storage_status}): {reason}",
            failure=None,
            permanent=record.storage_status == "failed",
        )

    # ---------------------------------------------------------------------------------------- direct

    def content(
        self,
        content: str,
        settings: MemorySettings,
        *,
        context: str | None,
        document_id: str | None,
        metadata: Mapping[str, str] | None,
    ) -> InjectionDebugInfo:
        """``content`` queued as a direct retain would send it: into ``document_id`` (replacing what the
        document held, as the server's retain does), or into a document of its own."""
        record = InjectionDebugInfo(
            mode="recall", query=None, bank_id=settings.bank_id, skipped_reason="storage only"
        )
        record.document_id = document_id or f"retain-{uuid.uuid4().hex}"
        turn = Turn(
            connection=settings.connection,
            bank_id=settings.bank_id or "",
            document_id=record.document_id,
            content=content,
            context=context,
            tags=settings.tags,
            metadata=metadata,
            update_mode="replace",
        )
        call = MemoryCall(messages=[], original=[], settings=settings, record=record)
        self.submit(call, turn)
        return record

    # ---------------------------------------------------------------------------------------- notes

    def note(
        self, text: str, settings: MemorySettings, messages: Sequence[Message], context: str | None
    ) -> tuple[MemoryCall, Turn | None]:
        """``text`` queued as it is (an agent's note), in the conversation's document."""
        call = self.storage_call(messages, settings, None, None)
        call.record.skipped_reason = None
        if not settings.bank_id:
            call.record.storage_status = "skipped"
            self._fail(call.record, settings, ConfigurationError("no bank_id configured: nothing is stored"))
            return call, None
        if not text.strip():
            call.record.storage_status = "skipped"
            return call, None
        turn = self._make_turn(call, text, context)
        self.submit(call, turn)
        return call, turn

    def noted(self, call: MemoryCall, done: bool) -> InjectionDebugInfo:
        """After waiting for a note: anything but "stored" fails open (or raises, in strict mode)."""
        record = call.record
        if record.storage_status != "stored":
            detail = record.storage_error or ("not stored in time" if not done else record.storage_status)
            self._fail(
                record,
                call.settings,
                StorageError(
                    f"could not store in bank {call.settings.bank_id!r}: {detail}",
                    failure=None,
                    permanent=record.storage_status == "failed",
                ),
            )
        return record
