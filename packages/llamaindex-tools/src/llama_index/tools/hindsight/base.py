"""``HindsightToolSpec``: long-term memory as tools an agent decides to use (LlamaIndex's ``BaseToolSpec``).

The tools (descriptions, parameters) and what a call does are ``hindsight_core``'s
(:mod:`hindsight_core.tools`): recall and reflect render their answer as the memory block automatic memory
injects (same budget), retain goes through the background storage worker; a memory failure is an
answer the agent reads, not an exception (unless ``strict``). This module maps them to LlamaIndex
tool functions, each a sync function with its async twin, so ``FunctionTool.acall`` awaits the core's
async client on the event loop (no thread).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from llama_index.core.bridge.pydantic import BaseModel, Field, create_model
from llama_index.core.tools.tool_spec.base import SPEC_FUNCTION_TYPE, BaseToolSpec
from llama_index.core.tools.types import ToolMetadata

from hindsight_core.debug import InjectionDebugInfo
from hindsight_core.errors import ConfigurationError
from hindsight_core.memory import MemoryPipeline
from hindsight_core.settings import MemorySettings, SettingsLayers, validate_options
from hindsight_core.storage import StorageWorker
from hindsight_core.tools import (
    OPERATIONS,
    RECALL_TOOL,
    REFLECT_TOOL,
    RETAIN_TOOL,
    MemoryTool,
    MemoryToolRunner,
    ToolResult,
    select_tools,
)
from hindsight_core.warmup import warm_up

__all__ = ["SOURCE", "HindsightToolSpec"]

SOURCE = "llama-index-tools-hindsight"
"""How stored notes are labelled (``metadata["source"]``) and the logger suffix."""

_LAYERS = SettingsLayers("llamaindex-tools")
_RUNNER = MemoryToolRunner(MemoryPipeline(source=SOURCE))

_FUNCTIONS: dict[str, tuple[str, str]] = {
    "retain": ("retain_memory", "aretain_memory"),
    "recall": ("recall_memory", "arecall_memory"),
    "reflect": ("reflect_on_memory", "areflect_on_memory"),
}
_TOOL_OF: dict[str, MemoryTool] = {
    name: tool for tool in (RETAIN_TOOL, RECALL_TOOL, REFLECT_TOOL) for name in _FUNCTIONS[tool.operation]
}


def _schema(name: str, tool: MemoryTool) -> type[BaseModel]:
    """The tool's parameters (the core's definition) as the pydantic model LlamaIndex tools describe."""
    fields: dict[str, Any] = {p.name: (str, Field(description=p.description)) for p in tool.parameters}
    schema: type[BaseModel] = create_model(name, **fields)
    return schema


class HindsightToolSpec(BaseToolSpec):
    """Hindsight memory tools for LlamaIndex agents (``FunctionAgent``, ``ReActAgent``, ``AgentWorkflow``)::

        tools = HindsightToolSpec(bank_id="alice").to_tool_list()
        agent = FunctionAgent(tools=tools, llm=llm)

    - ``retain_memory(content)``: save a fact to long-term memory (in the background; ``sync_storage=True``
      waits);
    - ``recall_memory(query)``: search memory; the answer is the memory block, within ``max_memory_tokens``;
    - ``reflect_on_memory(query)``: a synthesized answer from memory (honours ``reflect_context``);

    each with an async twin (``aretain_memory``...), which ``to_tool_list()`` pairs with it. ``include``
    picks some of them (``"retain"``, ``"recall"``, ``"reflect"``). One spec serves one bank (one user or
    agent): make one per user. ``session_id`` names the document notes are appended to. Other options are
    ``hindsight_core``'s settings (``hindsight_api_url``, ``api_key``, ``budget``, ``max_memory_tokens``,
    ``fact_types``, ``tags``, ``recall_tags``, ``reflect_context``, ``strict``...), validated here: a bad one
    raises :class:`ConfigurationError` naming it. :attr:`last_debug` is the record of the last call.
    """

    def __init__(
        self,
        bank_id: str | None = None,
        *,
        session_id: str | None = None,
        include: Iterable[str] = OPERATIONS,
        storage: StorageWorker | None = None,
        **options: Any,
    ) -> None:
        named = {k: v for k, v in (("bank_id", bank_id), ("session_id", session_id)) if v is not None}
        self._options = validate_options({**options, **named}, where="HindsightToolSpec option")
        chosen = select_tools(include, owner="HindsightToolSpec(include=...)")
        self.spec_functions: list[SPEC_FUNCTION_TYPE] = [_FUNCTIONS[tool.operation] for tool in chosen]
        self._runner = (
            MemoryToolRunner(MemoryPipeline(source=SOURCE, storage=storage)) if storage else _RUNNER
        )
        self._last_record: InjectionDebugInfo | None = None
        self._settings()  # no bank anywhere: fail now, not at the agent's first tool call
        warm_up()  # load the tokenizer in the background, so the first call does not wait for it

    def __repr__(self) -> str:
        shown = {k: ("***" if k == "api_key" else v) for k, v in self._options.items()}
        return f"HindsightToolSpec({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    @property
    def last_debug(self) -> InjectionDebugInfo | None:
        """The debug record of this spec's last tool call (what was looked up or stored, any error)."""
        return self._last_record

    def _settings(self) -> MemorySettings:
        settings = _LAYERS.resolve(self._options)
        if not settings.bank_id:
            raise ConfigurationError(
                "HindsightToolSpec: no Hindsight bank: pass HindsightToolSpec(bank_id=...) or set "
                "HINDSIGHT_BANK_ID"
            )
        return settings

    def _done(self, result: ToolResult) -> str:
        if result.record is not None:
            self._last_record = result.record
        return result.text

    def _call(self, tool: MemoryTool, arguments: dict[str, Any]) -> str:
        return self._done(self._runner.run(tool, arguments, self._settings()))

    async def _acall(self, tool: MemoryTool, arguments: dict[str, Any]) -> str:
        return self._done(await self._runner.arun(tool, arguments, self._settings()))

    def get_metadata_from_fn_name(
        self, fn_name: str, spec_functions: list[SPEC_FUNCTION_TYPE] | None = None
    ) -> ToolMetadata | None:
        """The tool's name, the core's description for the model, and its parameters."""
        tool = _TOOL_OF.get(fn_name)
        if tool is None:
            return super().get_metadata_from_fn_name(fn_name, spec_functions)
        name = _FUNCTIONS[tool.operation][0]  # the async twin is the same tool
        return ToolMetadata(name=name, description=tool.description, fn_schema=_schema(name, tool))

    # ------------------------------------------------------------------------------------------ tools

    def retain_memory(self, content: str) -> str:
        """Save a fact to long-term memory (see ``hindsight_core.tools.RETAIN_TOOL``)."""
        return self._call(RETAIN_TOOL, {"content": content})

    async def aretain_memory(self, content: str) -> str:
        """:meth:`retain_memory` for asyncio."""
        return await self._acall(RETAIN_TOOL, {"content": content})

    def recall_memory(self, query: str) -> str:
        """Search long-term memory (see ``hindsight_core.tools.RECALL_TOOL``)."""
        return self._call(RECALL_TOOL, {"query": query})

    async def arecall_memory(self, query: str) -> str:
        """:meth:`recall_memory` for asyncio."""
        return await self._acall(RECALL_TOOL, {"query": query})

    def reflect_on_memory(self, query: str) -> str:
        """A synthesized answer from long-term memory (see ``hindsight_core.tools.REFLECT_TOOL``)."""
        return self._call(REFLECT_TOOL, {"query": query})

    async def areflect_on_memory(self, query: str) -> str:
        """:meth:`reflect_on_memory` for asyncio."""
        return await self._acall(REFLECT_TOOL, {"query": query})
