"""``RunnableWithHindsight``: any runnable that takes messages, with long-term memory around each call.

Per call: resolve the settings (constructor options, then ``config["configurable"]``), recall or reflect
and inject through the core's :class:`~hindsight_core.memory.MemoryPipeline`, call the wrapped runnable
with the injected input (as a child run, so callbacks and tracing nest under this one), then queue the
exchange for background storage. Streams are stored when they end, or when they are closed early.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.language_models import BaseLanguageModel
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.base import coerce_to_runnable
from langchain_core.runnables.utils import ConfigurableFieldSpec, get_unique_config_specs
from langchain_core.utils.pydantic import TypeBaseModel
from pydantic import ConfigDict, Field, PrivateAttr

from hindsight_core.debug import set_last_debug
from hindsight_core.errors import ConfigurationError
from hindsight_core.memory import MemoryCall, MemoryPipeline
from hindsight_core.settings import MemorySettings
from hindsight_core.storage import StorageWorker
from hindsight_core.warmup import warm_up

from ._config import (
    BANK_KEY,
    SESSION_KEY,
    bank_key_spec,
    bank_to_set_up,
    check_bank_key,
    configurable_options,
    missing_bank,
    resolve,
    use_config_bank,
    validate_constructor_options,
)
from ._messages import accumulate, attach_metadata, reply_of, restore, to_dicts, to_messages

__all__ = ["SOURCE", "RunnableWithHindsight"]

SOURCE = "langchain-hindsight"
"""How stored conversations are labelled (``metadata["source"]``) and the logger suffix."""

_PIPELINE = MemoryPipeline(source=SOURCE)

_MISSING_BANK = (
    "RunnableWithHindsight: no Hindsight bank for this call. Pass bank_id=... to RunnableWithHindsight(...), "
    f"or config={{'configurable': {{'{BANK_KEY}': ...}}}} with the call, or set HINDSIGHT_BANK_ID."
)

_BANK_SPEC = ConfigurableFieldSpec(
    id=BANK_KEY,
    annotation=str,
    name="Hindsight bank",
    description="The Hindsight memory bank to recall from and store into for this call.",
    default=None,
    is_shared=True,
)
_SESSION_SPEC = ConfigurableFieldSpec(
    id=SESSION_KEY,
    annotation=str,
    name="Hindsight session",
    description="The conversation this call belongs to: its turns are appended to one stored document.",
    default=None,
    is_shared=True,
)


# The shapes LangChain's ``_call_with_config`` & co. accept; ours take a keyword (``state``) on top.
_Transformer = Callable[[Iterator[Any], CallbackManagerForChainRun, RunnableConfig], Iterator[Any]]
_AsyncTransformer = Callable[
    [AsyncIterator[Any], AsyncCallbackManagerForChainRun, RunnableConfig], AsyncIterator[Any]
]


@dataclass
class _State:
    """One call in flight: shared between the public method and the function run inside the child run."""

    call: MemoryCall | None = None
    output: Any = None  # streams: the chunks so far, added up
    failed: bool = False


@dataclass(frozen=True)
class _Prepared:
    settings: MemorySettings
    messages: list[BaseMessage]
    dicts: list[dict[str, Any]]
    build: Callable[[MemoryCall], Any]  # the wrapped runnable's input, from the prepared call


def _model_name(runnable: Runnable[Any, Any]) -> str | None:
    for candidate in (runnable, getattr(runnable, "bound", None)):
        if isinstance(candidate, BaseLanguageModel):
            for attribute in ("model_name", "model", "model_id"):
                value = getattr(candidate, attribute, None)
                if isinstance(value, str) and value:
                    return value
    return None


class RunnableWithHindsight(RunnableSerializable[Any, Any]):
    """Wraps a runnable that takes messages (a chat model, a ``prompt | model`` chain, an agent...) so each
    call gets memories from a Hindsight bank and each exchange is stored in it.

    Input: what the wrapped runnable takes. Without ``input_messages_key`` that is messages (a string, a
    message, a list of messages or a prompt value); the memory block is injected into them as
    ``injection_mode`` says. With ``input_messages_key`` the input is a dict whose entry under that key holds
    the messages; with ``memories_key`` as well, the messages are left alone and the rendered memory block
    (an empty string when there is none) is passed to the wrapped runnable as the input variable
    ``memories_key``, e.g. for a ``{memories}`` placeholder in a prompt template.

    Output: what the wrapped runnable returns. An ``AIMessage`` output (or, with ``output_messages_key``, the
    ``AIMessage`` under that key of a dict output) carries the call's debug record as
    ``response_metadata["hindsight"]`` (a dict; turn off with ``attach_debug=False``).

    The bank and the session of a call come from ``config["configurable"]["hindsight_bank_id"]`` /
    ``["hindsight_session_id"]``, else from the constructor's ``bank_id`` / ``session_id``, else (for the
    bank) from the app's own key ``config["configurable"][bank_id_from_config]``
    (``bank_id_from_config="user_id"``), else from ``HINDSIGHT_BANK_ID``. Any other setting can be given
    per call the same way (``config["configurable"]["hindsight_budget"] = "high"``). ``options`` are the
    core's settings (``bank_id``, ``session_id``, ``budget``, ``max_memory_tokens``, ``fact_types``,
    ``use_reflect``, ``injection_mode``, ``tags``, ``strict``, ``hindsight_api_url``, ``api_key``...),
    validated here: a bad one raises :class:`~hindsight_core.errors.ConfigurationError` naming it.
    ``storage`` is the background storage worker (default: the process-wide one).
    """

    runnable: Runnable[Any, Any]
    input_messages_key: str | None = None
    memories_key: str | None = None
    output_messages_key: str | None = None
    attach_debug: bool = True
    bank_id_from_config: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    storage: StorageWorker | None = Field(default=None, exclude=True)

    model_config = ConfigDict(arbitrary_types_allowed=True)

    _pipeline: MemoryPipeline = PrivateAttr(default_factory=lambda: _PIPELINE)
    _model: str | None = PrivateAttr(default=None)

    def __init__(
        self,
        runnable: Runnable[Any, Any] | Callable[..., Any],
        *,
        input_messages_key: str | None = None,
        memories_key: str | None = None,
        output_messages_key: str | None = None,
        attach_debug: bool = True,
        storage: StorageWorker | None = None,
        bank_id_from_config: str | None = None,
        **options: Any,
    ) -> None:
        validated = validate_constructor_options(options, "RunnableWithHindsight")
        bank_key = check_bank_key(bank_id_from_config, "RunnableWithHindsight")
        if memories_key is not None and input_messages_key is None:
            raise ConfigurationError(
                "RunnableWithHindsight: memories_key needs input_messages_key (the memory block is passed "
                "as an input variable, so the input must be a dict)"
            )
        if memories_key is not None and memories_key == input_messages_key:
            raise ConfigurationError("RunnableWithHindsight: memories_key and input_messages_key must differ")
        fields: dict[str, Any] = {
            "runnable": coerce_to_runnable(runnable),
            "input_messages_key": input_messages_key,
            "memories_key": memories_key,
            "output_messages_key": output_messages_key,
            "attach_debug": attach_debug,
            "bank_id_from_config": bank_key,
            "options": validated,
            "storage": storage,
        }
        super().__init__(**fields)
        if storage is not None:
            self._pipeline = MemoryPipeline(source=SOURCE, storage=storage)
        self._model = _model_name(self.runnable)
        warm_up()  # load the tokenizer in the background, so the first call does not wait for it

    # ---------------------------------------------------------------------------------- runnable protocol

    @property
    def InputType(self) -> Any:
        return self.runnable.InputType

    @property
    def OutputType(self) -> Any:
        return self.runnable.OutputType

    def get_input_schema(self, config: RunnableConfig | None = None) -> TypeBaseModel:
        return self.runnable.get_input_schema(config)

    def get_output_schema(self, config: RunnableConfig | None = None) -> TypeBaseModel:
        return self.runnable.get_output_schema(config)

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        own = [_BANK_SPEC, _SESSION_SPEC]
        if self.bank_id_from_config is not None:
            own.append(bank_key_spec(self.bank_id_from_config))
        return get_unique_config_specs([*self.runnable.config_specs, *own])

    # --------------------------------------------------------------------------------------- preparation

    def _prepare_input(self, value: Any, config: RunnableConfig) -> _Prepared:
        """Settings, messages and a builder of the wrapped runnable's input. No I/O."""
        bank_key = self.bank_id_from_config
        per_call = use_config_bank(configurable_options(config), self.options, config, bank_key)
        settings = resolve(self.options, per_call, missing_bank=missing_bank(_MISSING_BANK, bank_key))
        key = self.input_messages_key
        if key is None:
            if isinstance(value, Mapping) and not ("role" in value or "type" in value):
                raise ConfigurationError(
                    "RunnableWithHindsight got a dict input: pass input_messages_key=... to say which entry "
                    f"holds the messages (keys: {', '.join(map(str, value))})"
                )
            messages = to_messages(value)
            dicts = to_dicts(messages)
            return _Prepared(settings, messages, dicts, lambda call: restore(messages, dicts, call.messages))
        if not isinstance(value, Mapping) or key not in value:
            raise ConfigurationError(
                f"RunnableWithHindsight: input_messages_key={key!r}, but the input "
                + (f"has no {key!r} entry" if isinstance(value, Mapping) else f"is a {type(value).__name__}")
            )
        entry = value[key]
        messages = to_messages(entry)
        dicts = to_dicts(messages)
        memories_key = self.memories_key
        if memories_key is not None:
            return _Prepared(
                settings, messages, dicts, lambda call: {**value, memories_key: call.record.memory_context}
            )
        if isinstance(entry, str):
            raise ConfigurationError(
                f"RunnableWithHindsight: input[{key!r}] is a string, which the memory block cannot be "
                "injected into; pass memories_key=... and use that variable in your prompt, or pass messages"
            )
        return _Prepared(
            settings, messages, dicts, lambda call: {**value, key: restore(messages, dicts, call.messages)}
        )

    def _finish_output(self, output: Any, call: MemoryCall) -> Any:
        if not self.attach_debug:
            return output
        attached, _ = attach_metadata(output, call.record.as_dict(), self.output_messages_key)
        return attached

    # ------------------------------------------------------------------------------------------- invoke

    def _invoke(
        self,
        value: Any,
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        *,
        state: _State,
        **kwargs: Any,
    ) -> Any:
        prepared = self._prepare_input(value, config)
        if bank_to_set_up(prepared.settings):
            self._pipeline.ensure_bank(prepared.settings)
        call = self._pipeline.prepare(prepared.dicts, prepared.settings, model=self._model)
        state.call = call
        output = self.runnable.invoke(prepared.build(call), config, **kwargs)
        self._pipeline.finish(call, reply_of(output, self.output_messages_key))
        return self._finish_output(output, call)

    async def _ainvoke(
        self,
        value: Any,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        *,
        state: _State,
        **kwargs: Any,
    ) -> Any:
        prepared = self._prepare_input(value, config)
        if bank_to_set_up(prepared.settings):
            await self._pipeline.aensure_bank(prepared.settings)
        call = await self._pipeline.aprepare(prepared.dicts, prepared.settings, model=self._model)
        state.call = call
        output = await self.runnable.ainvoke(prepared.build(call), config, **kwargs)
        await self._pipeline.afinish(call, reply_of(output, self.output_messages_key))
        return self._finish_output(output, call)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        state = _State()
        try:
            invoke = cast("Callable[[Any, CallbackManagerForChainRun, RunnableConfig], Any]", self._invoke)
            return self._call_with_config(invoke, input, config, state=state, **kwargs)
        finally:
            _publish(state)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        state = _State()
        try:
            ainvoke = cast(
                "Callable[[Any, AsyncCallbackManagerForChainRun, RunnableConfig], Awaitable[Any]]",
                self._ainvoke,
            )
            return await self._acall_with_config(ainvoke, input, config, state=state, **kwargs)
        finally:
            _publish(state)

    # ---------------------------------------------------------------------------------------- streaming

    def _stream_chunk(self, chunk: Any, state: _State, first: bool) -> Any:
        if first and self.attach_debug and state.call is not None:
            chunk, _ = attach_metadata(chunk, state.call.record.as_dict(), self.output_messages_key)
        state.output = accumulate(state.output, chunk)
        return chunk

    def _transform(
        self,
        inputs: Iterator[Any],
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        *,
        state: _State,
        **kwargs: Any,
    ) -> Iterator[Any]:
        value: Any = None
        for item in inputs:
            value = accumulate(value, item)
        prepared = self._prepare_input(value, config)
        if bank_to_set_up(prepared.settings):
            self._pipeline.ensure_bank(prepared.settings)
        state.call = self._pipeline.prepare(prepared.dicts, prepared.settings, model=self._model)
        first = True
        for chunk in self.runnable.stream(prepared.build(state.call), config, **kwargs):
            yield self._stream_chunk(chunk, state, first)
            first = False

    async def _atransform(
        self,
        inputs: AsyncIterator[Any],
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        *,
        state: _State,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        value: Any = None
        async for item in inputs:
            value = accumulate(value, item)
        prepared = self._prepare_input(value, config)
        if bank_to_set_up(prepared.settings):
            await self._pipeline.aensure_bank(prepared.settings)
        state.call = await self._pipeline.aprepare(prepared.dicts, prepared.settings, model=self._model)
        first = True
        async for chunk in self.runnable.astream(prepared.build(state.call), config, **kwargs):
            yield self._stream_chunk(chunk, state, first)
            first = False

    def transform(
        self,
        input: Iterator[Any],
        config: RunnableConfig | None = None,
        **kwargs: Any | None,
    ) -> Iterator[Any]:
        state = _State()
        transformer = cast("_Transformer", self._transform)
        stream = cast(
            "Generator[Any, None, None]",
            self._transform_stream_with_config(input, transformer, config, state=state, **kwargs),
        )
        published = False
        try:
            for chunk in stream:
                if not published and state.call is not None:
                    set_last_debug(state.call.record)
                    published = True
                yield chunk
        except GeneratorExit:  # closed early by the consumer: store what it received
            raise
        except BaseException:
            state.failed = True
            raise
        finally:
            stream.close()
            _publish(state)
            if state.call is not None and not state.failed:
                self._pipeline.finish(state.call, reply_of(state.output, self.output_messages_key))

    async def atransform(
        self,
        input: AsyncIterator[Any],
        config: RunnableConfig | None = None,
        **kwargs: Any | None,
    ) -> AsyncIterator[Any]:
        state = _State()
        transformer = cast("_AsyncTransformer", self._atransform)
        stream = cast(
            "AsyncGenerator[Any, None]",
            self._atransform_stream_with_config(input, transformer, config, state=state, **kwargs),
        )
        published = False
        try:
            async for chunk in stream:
                if not published and state.call is not None:
                    set_last_debug(state.call.record)
                    published = True
                yield chunk
        except GeneratorExit:  # closed early by the consumer: store what it received
            raise
        except BaseException:
            state.failed = True
            raise
        finally:
            await stream.aclose()
            _publish(state)
            if state.call is not None and not state.failed:
                await self._pipeline.afinish(state.call, reply_of(state.output, self.output_messages_key))

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any | None) -> Iterator[Any]:
        yield from self.transform(iter([input]), config, **kwargs)

    async def astream(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        **kwargs: Any | None,
    ) -> AsyncIterator[Any]:
        async def single() -> AsyncIterator[Any]:
            yield input

        stream = cast("AsyncGenerator[Any, None]", self.atransform(single(), config, **kwargs))
        try:
            async for chunk in stream:
                yield chunk
        finally:  # async generators are not closed when dropped: close it now, so an early close stores
            await stream.aclose()


def _publish(state: _State) -> None:
    """Make the call's record the caller's ``get_last_injection_debug()`` (LangChain runs the call itself
    in a copy of the caller's context, so the core's own ``set_last_debug`` is not seen by the caller)."""
    if state.call is not None:
        set_last_debug(state.call.record)
