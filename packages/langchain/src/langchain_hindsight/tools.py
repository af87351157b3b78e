"""Agent-driven memory for LangChain: ``hindsight_retain``, ``hindsight_recall`` and ``hindsight_reflect`` as
LangChain tools, for ``langchain.agents.create_agent``, LangGraph's ``ToolNode`` or any model with
``bind_tools``.

The tools (names, descriptions, parameters) and what a call does are the core's
(:mod:`hindsight_core.tools`); this module resolves the settings of a call from LangChain's config and
wraps the result in LangChain's tool protocol: the model reads the text, the debug record is the tool
message's ``artifact``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.utils import ConfigurableFieldSpec, get_unique_config_specs
from langchain_core.tools import BaseTool, ToolException
from pydantic import ConfigDict, Field, PrivateAttr

from hindsight_core.errors import ConfigurationError
from hindsight_core.memory import MemoryPipeline
from hindsight_core.settings import MemorySettings
from hindsight_core.storage import StorageWorker
from hindsight_core.tools import OPERATIONS, MemoryTool, MemoryToolRunner, ToolResult, select_tools
from hindsight_core.warmup import warm_up

from ._config import (
    BANK_KEY,
    bank_key_spec,
    bank_to_set_up,
    call_settings,
    check_bank_key,
    validate_constructor_options,
)
from .runnable import _BANK_SPEC, _PIPELINE, SOURCE

__all__ = ["HindsightTool", "create_hindsight_tools"]

_RUNNER = MemoryToolRunner(_PIPELINE)  # the package's pipeline: one lookup pause and warning limit

_MISSING_BANK = (
    "No Hindsight memory bank for this tool call: pass bank_id=... to create_hindsight_tools(), or "
    f"config={{'configurable': {{'{BANK_KEY}': ...}}}} with the agent call, or set HINDSIGHT_BANK_ID."
)


class HindsightTool(BaseTool):
    """One Hindsight memory tool. Made by :func:`create_hindsight_tools`; a regular LangChain ``BaseTool``
    (``invoke``/``ainvoke``, tool calls in, ``ToolMessage`` out; ``ainvoke`` uses the async client)."""

    name: str
    description: str
    args_schema: dict[str, Any]  # the core's JSON schema of the parameters
    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    handle_tool_error: bool = True  # no bank, bad arguments: an error tool message the agent can act on
    memory_tool: MemoryTool = Field(exclude=True)
    bank_id_from_config: str | None = None
    options: dict[str, Any] = Field(default_factory=dict, exclude=True)

    model_config = ConfigDict(arbitrary_types_allowed=True)

    _runner: MemoryToolRunner = PrivateAttr(default_factory=lambda: _RUNNER)

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        specs = [_BANK_SPEC]
        if self.bank_id_from_config is not None:
            specs.append(bank_key_spec(self.bank_id_from_config))
        return get_unique_config_specs(specs)

    def _settings(self, config: RunnableConfig) -> MemorySettings:
        try:
            return call_settings(
                self.options, config, bank_key=self.bank_id_from_config, missing=_MISSING_BANK
            )
        except ConfigurationError as exc:
            raise ToolException(f"{self.name}: {exc}") from exc

    @staticmethod
    def _output(result: ToolResult) -> tuple[str, dict[str, Any] | None]:
        if result.status == "invalid":  # the model's arguments: a tool message with status "error"
            raise ToolException(result.text)
        return result.text, (result.record.as_dict() if result.record is not None else None)

    def _run(self, run_config: RunnableConfig, **arguments: Any) -> tuple[str, dict[str, Any] | None]:
        settings = self._settings(run_config)
        if bank_to_set_up(settings):
            self._runner.pipeline.ensure_bank(settings)
        return self._output(self._runner.run(self.memory_tool, arguments, settings))

    async def _arun(self, run_config: RunnableConfig, **arguments: Any) -> tuple[str, dict[str, Any] | None]:
        settings = self._settings(run_config)
        if bank_to_set_up(settings):
            await self._runner.pipeline.aensure_bank(settings)
        return self._output(await self._runner.arun(self.memory_tool, arguments, settings))


def create_hindsight_tools(
    *,
    bank_id: str | None = None,
    bank_id_from_config: str | None = None,
    include: Iterable[str] = OPERATIONS,
    storage: StorageWorker | None = None,
    **settings: Any,
) -> list[BaseTool]:
    """LangChain tools that let an agent manage its long-term memory: ``hindsight_retain`` (save a fact),
    ``hindsight_recall`` (search memory), ``hindsight_reflect`` (a synthesized answer from memory).

    ``include`` picks some of them (``"retain"``, ``"recall"``, ``"reflect"``), in that order. The bank of
    a call, first found: ``config["configurable"]["hindsight_bank_id"]``, ``bank_id``,
    ``config["configurable"][bank_id_from_config]`` (e.g. ``bank_id_from_config="user_id"``: the app's own
    key, read per call), ``HINDSIGHT_BANK_ID``; with none, the call answers with an error tool message
    naming them. ``settings`` are the core's (``budget``, ``max_memory_tokens``, ``reflect_context``,
    ``tags``, ``session_id``, ``sync_storage``, ``strict``, ``hindsight_api_url``...), validated here: a bad
    one raises :class:`ConfigurationError` naming it. ``storage``: the background storage worker (default:
    the process-wide one).
    """
    options = validate_constructor_options(
        {**settings, **({"bank_id": bank_id} if bank_id is not None else {})}, "create_hindsight_tools"
    )
    bank_key = check_bank_key(bank_id_from_config, "create_hindsight_tools")
    chosen: Sequence[MemoryTool] = select_tools(include, owner="create_hindsight_tools(include=...)")
    runner = MemoryToolRunner(MemoryPipeline(source=SOURCE, storage=storage)) if storage else None
    warm_up()  # load the tokenizer in the background, so the first call does not wait for it
    tools: list[BaseTool] = []
    for spec in chosen:
        tool = HindsightTool(
            name=spec.name,
            description=spec.description,
            args_schema=spec.json_schema(),
            memory_tool=spec,
            bank_id_from_config=bank_key,
            options=options,
        )
        if runner is not None:
            tool._runner = runner
        tools.append(tool)
    return tools
