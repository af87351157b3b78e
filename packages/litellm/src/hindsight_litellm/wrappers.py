"""Memory for the OpenAI and Anthropic SDK clients, without LiteLLM in the call path.

``wrap_openai(client)`` returns an object that behaves like ``client``: ``chat.completions.create`` gets
memory (sync or async client, streaming included); every other attribute is the client's own.
``wrap_anthropic(client)`` does the same for ``messages.create`` and the ``messages.stream`` helper; the
memory block goes into Anthropic's top-level ``system`` parameter.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from hindsight_core.pipeline import merge_system
from hindsight_core.settings import MemorySettings, validate_options

from ._calls import acall_with_memory, call_with_memory
from ._messages import anthropic_reply, openai_reply, to_message_dicts
from ._streams import AnthropicCollector, Collector, OpenAICollector
from .config import DEFAULT_BANK_ID, LAYERS, PIPELINE, HindsightDefaults
from .integration import get_pending_retain_errors, pop_hindsight_options
from .memory_api import arecall, areflect, aretain, recall, reflect, retain
from .results import (
    RecallDebugInfo,
    RecallResponse,
    RecallResult,
    ReflectDebugInfo,
    ReflectResult,
    RetainDebugInfo,
    RetainResult,
)

__all__ = [  # the result types and direct APIs too: hindsight-litellm 0.5.4 defined them here
    "HindsightAnthropic",
    "HindsightOpenAI",
    "RecallDebugInfo",
    "RecallResponse",
    "RecallResult",
    "ReflectDebugInfo",
    "ReflectResult",
    "RetainDebugInfo",
    "RetainResult",
    "arecall",
    "areflect",
    "aretain",
    "get_pending_retain_errors",
    "recall",
    "reflect",
    "retain",
    "wrap_anthropic",
    "wrap_openai",
]


class _Passthrough:
    """Everything not defined here is the wrapped object's."""

    _target: Any

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


class _WrapperBase(_Passthrough):
    def __init__(
        self,
        client: Any,
        hindsight_api_url: str | None = None,
        api_key: str | None = None,
        default_settings: HindsightDefaults | None = None,
        **setting_kwargs: Any,
    ) -> None:
        values: dict[str, Any] = {}
        if default_settings is not None:
            defaults = HindsightDefaults()
            for item in dataclasses.fields(default_settings):
                value = getattr(default_settings, item.name)
                if value != getattr(defaults, item.name):
                    values[item.name] = value
        values.update(
            {k: v for k, v in {"hindsight_api_url": hindsight_api_url, "api_key": api_key}.items() if v}
        )
        values.update(setting_kwargs)
        self._values = validate_options(values)
        self._target = client
        # The SDKs decorate ``create`` (openai's ``required_args``): look through to the function itself.
        self._is_async = inspect.iscoroutinefunction(inspect.unwrap(self._create_function()))
        self._attach()

    def _attach(self) -> None:
        """Put the memory endpoints in place (each client type has its own)."""
        raise NotImplementedError

    def _create_function(self) -> Any:
        raise NotImplementedError

    def _settings(self, kwargs: dict[str, Any]) -> MemorySettings:
        settings = LAYERS.resolve({**self._values, **pop_hindsight_options(kwargs)})
        if settings.bank_id is None:  # none given, configured or in the environment: 0.5.4's default bank
            settings = settings.model_copy(update={"bank_id": DEFAULT_BANK_ID})
        return settings

    def close(self) -> Any:
        """Close the wrapped client (awaitable for an async client)."""
        return self._target.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._target!r}, bank_id={self._values.get('bank_id')!r})"


# ------------------------------------------------------------------------------------------- endpoints

SendArguments = Callable[[dict[str, Any], list[dict[str, Any]]], dict[str, Any]]


def _with_messages(kwargs: dict[str, Any], injected: list[dict[str, Any]]) -> dict[str, Any]:
    return {**kwargs, "messages": injected}


class _MemoryEndpoint(_Passthrough):
    """A ``create`` method with memory around the SDK's own (sync or async, as the client is)."""

    def __init__(
        self,
        owner: _WrapperBase,
        target: Any,
        *,
        reply: Callable[[Any], dict[str, Any] | None],
        collector: Callable[[], Collector],
        arguments: SendArguments = _with_messages,
    ) -> None:
        self._owner = owner
        self._target = target
        self._reply = reply
        self._collector = collector
        self._arguments = arguments

    def _parts(self, kwargs: dict[str, Any]) -> tuple[MemorySettings, list[dict[str, Any]], Any, bool]:
        settings = self._owner._settings(kwargs)
        messages = to_message_dicts(kwargs.get("messages") or [])
        return settings, messages, kwargs.get("model"), bool(kwargs.get("stream"))

    def create(self, **kwargs: Any) -> Any:
        """The SDK's ``create`` with memory (a coroutine for an async client)."""
        if self._owner._is_async:
            return self._acreate(**kwargs)
        settings, messages, model, stream = self._parts(kwargs)

        def send(injected: list[dict[str, Any]]) -> Any:
            return self._target.create(**self._arguments(kwargs, injected))

        return call_with_memory(
            settings, messages, model, send, stream=stream, reply=self._reply, collector=self._collector
        )

    async def _acreate(self, **kwargs: Any) -> Any:
        settings, messages, model, stream = self._parts(kwargs)

        async def send(injected: list[dict[str, Any]]) -> Any:
            return await self._target.create(**self._arguments(kwargs, injected))

        return await acall_with_memory(
            settings, messages, model, send, stream=stream, reply=self._reply, collector=self._collector
        )


# ------------------------------------------------------------------------------------------------ OpenAI


class _OpenAIChat(_Passthrough):
    def __init__(self, owner: HindsightOpenAI) -> None:
        self._target = owner._target.chat
        self.completions = _MemoryEndpoint(
            owner, owner._target.chat.completions, reply=openai_reply, collector=OpenAICollector
        )


class HindsightOpenAI(_WrapperBase):
    """An OpenAI (or AsyncOpenAI) client whose chat completions have memory."""

    def _attach(self) -> None:
        self.chat = _OpenAIChat(self)

    def _create_function(self) -> Any:
        return self._target.chat.completions.create


# --------------------------------------------------------------------------------------------- Anthropic


def _anthropic_send_arguments(kwargs: dict[str, Any], injected: list[dict[str, Any]]) -> dict[str, Any]:
    """Anthropic takes the system prompt as a parameter: a leading system message (which only memory
    injection can have put there) is merged into it."""
    arguments = dict(kwargs)
    if injected and injected[0].get("role") == "system":
        arguments["system"] = merge_system(kwargs.get("system"), injected[0]["content"])
        injected = injected[1:]
    arguments["messages"] = injected
    return arguments


class _StreamManager:
    """Wraps ``messages.stream(...)``'s context manager: the final message is stored when the block ends."""

    def __init__(self, manager: Any, call: Any) -> None:
        self._manager = manager
        self._call = call
        self._stream: Any = None

    def __enter__(self) -> Any:
        self._stream = self._manager.__enter__()
        return self._stream

    def __exit__(self, *exc: Any) -> Any:
        try:
            PIPELINE.finish(self._call, self._final())
        finally:
            result = self._manager.__exit__(*exc)
        return result

    async def __aenter__(self) -> Any:
        self._stream = await self._manager.__aenter__()
        return self._stream

    async def __aexit__(self, *exc: Any) -> Any:
        try:
            await PIPELINE.afinish(self._call, await self._afinal())
        finally:
            result = await self._manager.__aexit__(*exc)
        return result

    def _final(self) -> dict[str, Any] | None:
        try:  # the SDK asserts there is a snapshot: there is none when no event was read
            snapshot = getattr(self._stream, "current_message_snapshot", None)
        except AssertionError:
            return None
        return anthropic_reply(snapshot) if snapshot is not None else None

    async def _afinal(self) -> dict[str, Any] | None:
        return self._final()


class _AnthropicMessages(_MemoryEndpoint):
    def __init__(self, owner: HindsightAnthropic) -> None:
        super().__init__(
            owner,
            owner._target.messages,
            reply=anthropic_reply,
            collector=AnthropicCollector,
            arguments=_anthropic_send_arguments,
        )

    def stream(self, **kwargs: Any) -> Any:
        """The ``messages.stream(...)`` helper with memory: use it with ``with`` (or ``async with`` on an
        async client); the reply is stored when the block ends. For an async client, memory is looked up
        when the block is entered."""
        if self._owner._is_async:
            return _AsyncStreamEntry(self, kwargs)
        settings, messages, model, _ = self._parts(kwargs)
        call = PIPELINE.prepare(messages, settings, model=model)
        manager = self._target.stream(**_anthropic_send_arguments(kwargs, call.messages))
        return _StreamManager(manager, call)


class _AsyncStreamEntry:
    """``async with wrapped.messages.stream(...)``: looks memory up on entry, without blocking the loop."""

    def __init__(self, messages: _AnthropicMessages, kwargs: dict[str, Any]) -> None:
        self._messages = messages
        self._kwargs = kwargs
        self._inner: _StreamManager | None = None

    async def __aenter__(self) -> Any:
        kwargs = dict(self._kwargs)
        settings, messages, model, _ = self._messages._parts(kwargs)
        call = await PIPELINE.aprepare(messages, settings, model=model)
        manager = self._messages._target.stream(**_anthropic_send_arguments(kwargs, call.messages))
        self._inner = _StreamManager(manager, call)
        return await self._inner.__aenter__()

    async def __aexit__(self, *exc: Any) -> Any:
        assert self._inner is not None
        return await self._inner.__aexit__(*exc)


class HindsightAnthropic(_WrapperBase):
    """An Anthropic (or AsyncAnthropic) client whose messages have memory."""

    def _attach(self) -> None:
        self.messages = _AnthropicMessages(self)

    def _create_function(self) -> Any:
        return self._target.messages.create


def _ensure_bank(wrapped: _WrapperBase) -> None:
    if wrapped._values.get("mission") or wrapped._values.get("bank_name"):
        PIPELINE.ensure_bank(wrapped._settings({}))


def wrap_openai(
    client: Any,
    hindsight_api_url: str | None = None,
    api_key: str | None = None,
    mission: str | None = None,
    bank_name: str | None = None,
    **settings_kwargs: Any,
) -> HindsightOpenAI:
    """``client`` (``OpenAI`` or ``AsyncOpenAI``) with memory in ``chat.completions.create``.

    ``settings_kwargs`` are any memory settings (``bank_id``, ``budget``, ``use_reflect``...); unset ones
    come from ``configure()``. With ``mission`` or ``bank_name``, the bank is created or updated now.
    """
    wrapped = HindsightOpenAI(
        client, hindsight_api_url, api_key, mission=mission, bank_name=bank_name, **settings_kwargs
    )
    _ensure_bank(wrapped)
    return wrapped


def wrap_anthropic(
    client: Any,
    hindsight_api_url: str | None = None,
    api_key: str | None = None,
    mission: str | None = None,
    bank_name: str | None = None,
    **settings_kwargs: Any,
) -> HindsightAnthropic:
    """``client`` (``Anthropic`` or ``AsyncAnthropic``) with memory in ``messages.create`` / ``.stream``."""
    wrapped = HindsightAnthropic(
        client, hindsight_api_url, api_key, mission=mission, bank_name=bank_name, **settings_kwargs
    )
    _ensure_bank(wrapped)
    return wrapped
