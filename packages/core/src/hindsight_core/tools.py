"""Agent-driven memory: retain, recall and reflect as tools a tool-calling model can use.

Each tool is defined once here, for every framework: its name (``hindsight_retain``, ``hindsight_recall``,
``hindsight_reflect``), a description written for the model choosing between tools, and its parameters
(:meth:`MemoryTool.json_schema`). :class:`MemoryToolRunner` runs a call through the memory pipeline, so a
tool call behaves like automatic memory does:

- recall and reflect go through :meth:`MemoryPipeline.prepare`: the same query limit, the same renderer
  and the same ``max_memory_tokens`` budget as an injected block (a tool result is the block an automatic
  lookup would have injected), the same debug record and failure policy. Reflect uses ``reflect_context``.
- retain goes through :meth:`MemoryPipeline.remember`: the storage worker, the conversation's document,
  the settings' tags; the agent's turn is not held unless ``sync_storage`` is set.
- a memory failure is an answer, not an exception: the model reads that memory is unavailable and goes
  on (the error is in the debug record and a rate-limited warning); with ``strict`` it raises.
- bad arguments from the model (missing, empty, too long, not text) get a message naming the problem, so
  the model can correct its call.

Framework adapters only wrap :data:`MEMORY_TOOLS` in their tool types and resolve the settings of a call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .debug import InjectionDebugInfo, set_last_debug
from .errors import ConfigurationError
from .memory import NO_BANK_YET, MemoryPipeline
from .pipeline import Message, count_tokens
from .settings import MemorySettings

__all__ = [
    "MAX_RETAIN_TOKENS",
    "MEMORY_TOOLS",
    "OPERATIONS",
    "RECALL_TOOL",
    "REFLECT_TOOL",
    "RETAIN_TOOL",
    "MemoryTool",
    "MemoryToolRunner",
    "Operation",
    "ToolParameter",
    "ToolResult",
    "ToolStatus",
    "check_arguments",
    "select_tools",
]

Operation = Literal["retain", "recall", "reflect"]
OPERATIONS: tuple[Operation, ...] = ("retain", "recall", "reflect")

MAX_RETAIN_TOKENS = 2000
"""The most one ``hindsight_retain`` call stores: a fact or a few, not a document (longer text is refused
with a message asking for the key facts)."""

_MAX_CHARS = 50 * MAX_RETAIN_TOKENS  # refused without counting: no text this long fits in the limit

ToolStatus = Literal["ok", "empty", "invalid", "unavailable"]


@dataclass(frozen=True)
class ToolParameter:
    """One parameter of a tool: always a required string."""

    name: str
    description: str
    max_tokens: int | None = None


@dataclass(frozen=True)
class MemoryTool:
    """What a model is told about one memory tool."""

    operation: Operation
    name: str
    description: str
    parameters: tuple[ToolParameter, ...]

    def json_schema(self) -> dict[str, Any]:
        """The parameters as a JSON schema object (what tool-calling APIs take)."""
        return {
            "type": "object",
            "properties": {p.name: {"type": "string", "description": p.description} for p in self.parameters},
            "required": [p.name for p in self.parameters],
            "additionalProperties": False,
        }


RETAIN_TOOL = MemoryTool(
    operation="retain",
    name="hindsight_retain",
    description=(
        "Save information to long-term memory so that it can be recalled in later conversations. Use it "
        "when the user shares something worth knowing beyond this conversation: a preference, a personal "
        "detail, a decision, a plan, a correction of something known before. Write one self-contained "
        "statement that names who it is about (e.g. 'The user is allergic to peanuts.'); make one call "
        "per fact. Do not save small talk or what memory already holds."
    ),
    parameters=(
        ToolParameter(
            "content",
            "The fact to remember, as a self-contained statement in plain words.",
            max_tokens=MAX_RETAIN_TOKENS,
        ),
    ),
)
RECALL_TOOL = MemoryTool(
    operation="recall",
    name="hindsight_recall",
    description=(
        "Search long-term memory for what is known from earlier conversations: facts about the user, their "
        "preferences, people, history and plans. Use it before answering when the answer may depend on "
        "the user's situation, or when the user refers to something said before. Returns the matching "
        "memories, most relevant first, or says that nothing matches."
    ),
    parameters=(
        ToolParameter("query", "What to look up: a few words or a question (e.g. 'food allergies')."),
    ),
)
REFLECT_TOOL = MemoryTool(
    operation="reflect",
    name="hindsight_reflect",
    description=(
        "Ask long-term memory a question that needs reasoning over many memories, and get a synthesized "
        "answer (e.g. 'What kind of trips does the user enjoy?'). Slower than a memory search: to look up "
        "specific facts, search memory instead."
    ),
    parameters=(ToolParameter("query", "The question to answer from what memory holds."),),
)

MEMORY_TOOLS: Mapping[Operation, MemoryTool] = {
    "retain": RETAIN_TOOL,
    "recall": RECALL_TOOL,
    "reflect": REFLECT_TOOL,
}
_LOOKUP: dict[str, MemoryTool] = {
    **{tool.name: tool for tool in MEMORY_TOOLS.values()},
    **{str(op): tool for op, tool in MEMORY_TOOLS.items()},
}


def select_tools(include: Iterable[str], *, owner: str = "include") -> tuple[MemoryTool, ...]:
    """The tools named by ``include`` (operations or tool names), in the order given. Raises
    :class:`ConfigurationError` for an unknown name or an empty selection."""
    if isinstance(include, str):
        include = (include,)
    chosen: list[MemoryTool] = []
    for name in include:
        tool = _LOOKUP.get(name) if isinstance(name, str) else None
        if tool is None:
            allowed = ", ".join(repr(op) for op in OPERATIONS)
            raise ConfigurationError(f"{owner}: unknown memory tool {name!r}; choose from {allowed}")
        if tool not in chosen:
            chosen.append(tool)
    if not chosen:
        raise ConfigurationError(f"{owner}: no memory tool selected; choose from {', '.join(OPERATIONS)}")
    return tuple(chosen)


@dataclass(frozen=True)
class ToolResult:
    """The answer of one tool call: ``text`` is what the model reads.

    ``status``: ``ok`` (memories, an answer, or the note was saved), ``empty`` (nothing found, or nothing
    stored yet), ``invalid`` (bad arguments: ``text`` says what to fix), ``unavailable`` (memory could not
    be reached: the error is in ``record``). ``record`` is the call's debug record (None for ``invalid``).
    """

    text: str
    status: ToolStatus
    record: InjectionDebugInfo | None = None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        return "text"
    return type(value).__name__


def _check_value(parameter: ToolParameter, value: Any) -> str | None:
    """The problem with ``value`` as ``parameter`` (None when fine). Messages do not name the tool: each
    framework names it its own way, and the model knows which one it called."""
    name = repr(parameter.name)
    if not isinstance(value, str):
        return f"{name} must be text (a string), not {_kind(value)}. {parameter.description}"
    if not value.strip():
        return f"{name} is empty. {parameter.description}"
    limit = parameter.max_tokens
    if limit is not None and (len(value) > _MAX_CHARS or count_tokens(value) > limit):
        size = f"{len(value):,} characters" if len(value) > _MAX_CHARS else f"{count_tokens(value):,} tokens"
        return (
            f"{name} is too long ({size}; at most {limit:,} tokens per call). Keep only the key facts, "
            "one short statement per call."
        )
    return None


def check_arguments(tool: MemoryTool, arguments: Any) -> dict[str, str] | ToolResult:
    """The checked arguments of a call, or an ``invalid`` result whose text tells the model what to fix."""
    expected = ", ".join(repr(p.name) for p in tool.parameters)
    if not isinstance(arguments, Mapping):
        return ToolResult(
            f"The arguments must be an object with {expected}, not {_kind(arguments)}.", "invalid"
        )
    known = {p.name for p in tool.parameters}
    unknown = [str(key) for key in arguments if key not in known]
    if unknown:
        listed = ", ".join(map(repr, unknown))
        return ToolResult(f"Unknown argument {listed}: this tool takes only {expected}.", "invalid")
    checked: dict[str, str] = {}
    for parameter in tool.parameters:
        if parameter.name not in arguments:
            return ToolResult(f"Missing {parameter.name!r}. {parameter.description}", "invalid")
        problem = _check_value(parameter, arguments[parameter.name])
        if problem is not None:
            return ToolResult(problem, "invalid")
        checked[parameter.name] = arguments[parameter.name].strip()
    return checked


_RETAIN_CONTEXT = "noted by an AI assistant during a conversation (memory tool)"
_UNAVAILABLE = "Long-term memory is unavailable right now ({cause}), so {outcome}. Continue without it."


def _lookup_settings(tool: MemoryTool, query: str, settings: MemorySettings) -> MemorySettings:
    # The model's query, and the tool's own operation, whatever the automatic-memory switches say.
    return settings.model_copy(
        update={"query": query, "use_reflect": tool.operation == "reflect", "inject_memories": True}
    )


def _looked_up(tool: MemoryTool, record: InjectionDebugInfo) -> ToolResult:
    if record.error is not None:
        cause = record.error.split(":", 1)[0]
        text = _UNAVAILABLE.format(cause=cause, outcome="nothing could be looked up")
        return ToolResult(text, "unavailable", record)
    if record.memory_context:
        return ToolResult(record.memory_context, "ok", record)
    if record.skipped_reason == NO_BANK_YET:
        return ToolResult("Nothing is stored in long-term memory yet.", "empty", record)
    if tool.operation == "reflect":
        return ToolResult("Long-term memory has nothing to answer this with.", "empty", record)
    if record.memories_found:
        return ToolResult("The matching memories do not fit the memory budget.", "empty", record)
    return ToolResult("No memories match this query.", "empty", record)


def _retained(record: InjectionDebugInfo, waited: bool) -> ToolResult:
    # Decided by the mode, not by how far the worker got: the same call always gets the same answer.
    if record.error is None and waited:  # ``remember`` records an error unless the note was stored
        return ToolResult("Saved to long-term memory.", "ok", record)
    if record.error is None and record.storage_status in ("queued", "stored"):
        return ToolResult("Noted: it is being saved to long-term memory in the background.", "ok", record)
    cause = (record.error or record.storage_status).split(":", 1)[0]
    return ToolResult(
        _UNAVAILABLE.format(cause=cause, outcome="saving it did not complete"), "unavailable", record
    )


def _checked(tool: MemoryTool, arguments: Any, settings: MemorySettings) -> dict[str, str] | ToolResult:
    if not settings.bank_id:
        raise ConfigurationError(f"{tool.name}: no Hindsight bank_id for this call")
    return check_arguments(tool, arguments)


class MemoryToolRunner:
    """Runs memory tool calls through a :class:`MemoryPipeline` (sync and async share everything but the
    I/O). Stateless apart from the pipeline: one runner serves concurrent calls of many users."""

    def __init__(self, pipeline: MemoryPipeline) -> None:
        self.pipeline = pipeline

    def run(
        self,
        tool: MemoryTool,
        arguments: Any,
        settings: MemorySettings,
        *,
        messages: Sequence[Message] = (),
    ) -> ToolResult:
        """Run one call (blocking I/O). ``messages``: the conversation, if the caller knows it (it picks the
        document a retained note goes to, as for stored turns). Raises :class:`ConfigurationError` when
        ``settings`` name no bank, and memory errors only in strict mode."""
        checked = _checked(tool, arguments, settings)
        if isinstance(checked, ToolResult):
            return checked
        if tool.operation == "retain":
            record = self.pipeline.remember(
                checked["content"], settings, messages=messages, context=_RETAIN_CONTEXT
            )
            set_last_debug(record)
            return _retained(record, settings.sync_storage)
        call = self.pipeline.prepare((), _lookup_settings(tool, checked["query"], settings))
        return _looked_up(tool, call.record)

    async def arun(
        self,
        tool: MemoryTool,
        arguments: Any,
        settings: MemorySettings,
        *,
        messages: Sequence[Message] = (),
    ) -> ToolResult:
        """:meth:`run` for asyncio: the async client, nothing blocks the event loop."""
        checked = _checked(tool, arguments, settings)
        if isinstance(checked, ToolResult):
            return checked
        if tool.operation == "retain":
            record = await self.pipeline.aremember(
                checked["content"], settings, messages=messages, context=_RETAIN_CONTEXT
            )
            set_last_debug(record)
            return _retained(record, settings.sync_storage)
        call = await self.pipeline.aprepare((), _lookup_settings(tool, checked["query"], settings))
        return _looked_up(tool, call.record)
