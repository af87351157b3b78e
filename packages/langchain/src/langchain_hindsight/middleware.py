"""``HindsightMiddleware``: long-term memory for agents made with ``langchain.agents.create_agent``.

Per agent run (one ``invoke``/``stream`` of the agent):

- ``before_agent`` recalls (or reflects) once, for the newest user message, and keeps the rendered block in
  a private state key of this middleware (replaced by the next run, never appended to the messages);
- ``wrap_model_call`` injects that block into the request of each model call of the run, for that call
  only: the system prompt (``system_message`` mode) or the last user message (``prepend_user`` mode) of
  the request are changed, the agent's messages are not, so injected text never piles up in the state;
- ``after_agent`` stores the exchange once: the user input of this run and the agent's final answer.

Why once per run and not once per model call: the user's question does not change while the agent calls
tools, so a second recall would find the same memories for the cost of another round trip per step; and
an identical memory block in every model call of the run keeps the prompt prefix stable, which provider
prompt caching relies on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, Final, cast

from langchain.agents.middleware import AgentMiddleware, AgentState, ModelRequest, ModelResponse
from langchain.agents.middleware.types import PrivateStateAttr
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_config
from langgraph.runtime import Runtime
from typing_extensions import NotRequired

from hindsight_core.memory import MemoryCall, MemoryPipeline
from hindsight_core.pipeline import InjectionMode, inject
from hindsight_core.settings import MemorySettings
from hindsight_core.storage import StorageWorker
from hindsight_core.warmup import warm_up

from ._config import BANK_KEY, bank_to_set_up, call_settings, check_bank_key, validate_constructor_options
from ._messages import exchange_of, restore, to_dicts
from .runnable import SOURCE

__all__ = ["RUN_STATE_KEY", "HindsightMiddleware", "HindsightState"]

RUN_STATE_KEY: Final = "hindsight_run"
"""The private state key holding the current run's memory block and bookkeeping."""

_CONTEXT_BANK = ("hindsight_bank_id", "bank_id")
_CONTEXT_SESSION = ("hindsight_session_id", "session_id")
_MISSING_BANK = (
    "HindsightMiddleware: no Hindsight bank for this agent run. Pass context={'bank_id': ...} (or a context "
    f"object with a bank_id attribute) to the agent, or config={{'configurable': {{'{BANK_KEY}': ...}}}}, or "
    "HindsightMiddleware(bank_id=...), or set HINDSIGHT_BANK_ID."
)

_PIPELINE = MemoryPipeline(source=SOURCE)


class HindsightState(AgentState[Any]):
    """The agent state with this middleware's private key (not part of the agent's input or output)."""

    hindsight_run: NotRequired[Annotated[dict[str, Any] | None, PrivateStateAttr]]


def _context_value(context: Any, names: Sequence[str]) -> Any:
    if context is None:
        return None
    for name in names:
        value = context.get(name) if isinstance(context, Mapping) else getattr(context, name, None)
        if value is not None:
            return value
    return None


def _current_config() -> RunnableConfig:
    try:
        return get_config()
    except RuntimeError:  # outside a run, or Python 3.10 in asyncio (LangGraph cannot tell the config there)
        return {}


class HindsightMiddleware(AgentMiddleware[HindsightState, Any, Any]):
    """Agent middleware: memories from a Hindsight bank in each model call, each run's exchange stored.

    The bank of a run is, first found: the runtime context (``context=`` of the agent call, a mapping key
    or attribute ``hindsight_bank_id`` / ``bank_id``), ``config["configurable"]["hindsight_bank_id"]``,
    this middleware's ``bank_id``, ``config["configurable"][bank_id_from_config]`` (e.g.
    ``bank_id_from_config="user_id"``: the app's own key), ``HINDSIGHT_BANK_ID``. The session (the stored
    document of the conversation): the context's ``hindsight_session_id`` / ``session_id``,
    ``config["configurable"]["hindsight_session_id"]``, this middleware's ``session_id`` / ``document_id``,
    else the run's ``thread_id``. Other settings: ``options`` (the core's settings, validated here), and per
    run ``config["configurable"]["hindsight_<setting>"]``.

    With ``attach_debug`` (default) each model answer carries a summary of the run's debug record as
    ``response_metadata["hindsight"]`` (without the memory text, which stays in the private state key
    ``hindsight_run``, once per run). ``excluded_models`` does not apply here (the recall happens before
    any model is chosen).
    """

    state_schema = HindsightState

    def __init__(
        self,
        *,
        attach_debug: bool = True,
        storage: StorageWorker | None = None,
        bank_id_from_config: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        self.options = validate_constructor_options(options, "HindsightMiddleware")
        self.bank_id_from_config = check_bank_key(bank_id_from_config, "HindsightMiddleware")
        self.attach_debug = attach_debug
        self._pipeline = MemoryPipeline(source=SOURCE, storage=storage) if storage is not None else _PIPELINE
        warm_up()  # load the tokenizer in the background, so the first run does not wait for it

    # -------------------------------------------------------------------------------------------- settings

    def _settings(self, runtime: Runtime[Any]) -> MemorySettings:
        context = getattr(runtime, "context", None)
        overrides = {}
        bank = _context_value(context, _CONTEXT_BANK)
        if bank is not None:
            overrides["bank_id"] = bank
        session = _context_value(context, _CONTEXT_SESSION)
        if session is not None:
            overrides["session_id"] = session
        return call_settings(
            self.options,
            _current_config(),
            bank_key=self.bank_id_from_config,
            missing=_MISSING_BANK,
            overrides=overrides,
        )

    # ---------------------------------------------------------------------------------------- before run

    def _run_state(self, call: MemoryCall, messages: Sequence[BaseMessage]) -> dict[str, Any]:
        record = call.record.as_dict()
        block = record.pop("memory_context", "")
        return {
            "block": block,
            "injection_mode": call.settings.injection_mode.value,
            "last_input_id": messages[-1].id if messages else None,
            "debug": record,
        }

    def before_agent(self, state: HindsightState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        messages = state["messages"]
        settings = self._settings(runtime)
        if bank_to_set_up(settings):
            self._pipeline.ensure_bank(settings)
        call = self._pipeline.prepare(to_dicts(messages), settings)
        return {RUN_STATE_KEY: self._run_state(call, messages)}

    async def abefore_agent(self, state: HindsightState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        messages = state["messages"]
        settings = self._settings(runtime)
        if bank_to_set_up(settings):
            await self._pipeline.aensure_bank(settings)
        call = await self._pipeline.aprepare(to_dicts(messages), settings)
        return {RUN_STATE_KEY: self._run_state(call, messages)}

    # ----------------------------------------------------------------------------------------- model call

    def _inject(self, request: ModelRequest[Any]) -> tuple[ModelRequest[Any], Mapping[str, Any] | None]:
        run = request.state.get(RUN_STATE_KEY)
        if not isinstance(run, Mapping):
            return request, None
        block = run.get("block") or ""
        if not block:
            return request, run
        system = request.system_message
        originals: list[BaseMessage] = [*([system] if system is not None else []), *request.messages]
        dicts = to_dicts(originals)
        injected = restore(originals, dicts, inject(dicts, block, InjectionMode(run["injection_mode"])))
        if system is not None or len(injected) > len(originals):
            first = injected[0]
            new_system = first if isinstance(first, SystemMessage) else SystemMessage(content=first.content)
            rest = cast("list[AnyMessage]", injected[1:])
            return request.override(system_message=new_system, messages=rest), run
        return request.override(messages=cast("list[AnyMessage]", injected)), run

    def _annotate(self, result: Any, run: Mapping[str, Any] | None) -> Any:
        if not self.attach_debug or run is None:
            return result
        record = run.get("debug") or {}
        if isinstance(result, AIMessage):
            return result.model_copy(
                update={"response_metadata": {**result.response_metadata, "hindsight": dict(record)}}
            )
        inner = getattr(result, "model_response", None)  # an ExtendedModelResponse (newer langchain)
        if (
            isinstance(inner, ModelResponse)
            and dataclasses.is_dataclass(result)
            and not isinstance(result, type)
        ):
            return dataclasses.replace(result, model_response=self._annotate(inner, run))
        if isinstance(result, ModelResponse):
            messages = list(result.result)
            for index, message in enumerate(messages):
                if isinstance(message, AIMessage):
                    messages[index] = self._annotate(message, run)
                    break
            return dataclasses.replace(result, result=messages)
        return result

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelResponse[Any] | AIMessage:
        request, run = self._inject(request)
        result: ModelResponse[Any] | AIMessage = self._annotate(handler(request), run)
        return result

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any] | AIMessage:
        request, run = self._inject(request)
        result: ModelResponse[Any] | AIMessage = self._annotate(await handler(request), run)
        return result

    # ----------------------------------------------------------------------------------------- after run

    def _exchange(
        self, state: HindsightState, runtime: Runtime[Any]
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | str | None, MemorySettings] | None:
        """The run's exchange, ready for storage (no I/O): the conversation up to this run's input, the
        final answer and the run's settings. None when the run produced no answer."""
        run = state.get(RUN_STATE_KEY) or {}
        exchange = exchange_of(state["messages"], run.get("last_input_id"))
        if exchange is None:
            return None
        return exchange[0], exchange[1], self._settings(runtime)

    def after_agent(self, state: HindsightState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Queue the run's exchange for storage (no lookup: the recall was done in ``before_agent``)."""
        exchange = self._exchange(state, runtime)
        if exchange is not None:
            self._pipeline.store(*exchange)
        return None

    async def aafter_agent(self, state: HindsightState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        exchange = self._exchange(state, runtime)
        if exchange is not None:
            await self._pipeline.astore(*exchange)
        return None
