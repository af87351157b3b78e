"""One conversation through each adapter, in one injection mode: what the provider (or the framework's model)
received at each turn. Used by ``bench/prompt_cache.py``.

Every runner plays the same application: a system prompt, then for each turn the history so far (the
scripted questions and the model's answers) and the next question. The model replies with the scripted
answer of the turn. Mode ``none`` is the same adapter with ``inject_memories=False``: the application's own
prompt. Storage is off (``store_conversations=False``), so the bank, and what recall finds, stay the same
for the whole benchmark. Each conversation has a session of its own, so no lookup is shared between runs.

A runner returns one request body per turn, in its wire format: ``("openai", {"messages": [...]})`` or
``("anthropic", {"system": ..., "messages": [...]})``. For LangChain and LlamaIndex, whose models are
fakes here, the messages the model received are converted to OpenAI-style dicts.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench._conversation import ANSWERS, QUESTIONS, app_messages
from tests.providers import FakeAnthropic, FakeOpenAI

__all__ = ["RUNNERS", "Context", "Runner", "separate_system"]

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-3-5-sonnet-20241022"

Body = dict[str, Any]


@dataclass
class Context:
    url: str
    bank: str
    openai: FakeOpenAI
    anthropic: FakeAnthropic


Runner = Callable[[Context, str, str, int], list[Body]]
"""(context, system prompt, mode, turns) -> the request body of each turn."""


def _memory(mode: str) -> dict[str, Any]:
    """The adapter's memory options for ``mode`` (``none``: the application's own prompt)."""
    if mode == "none":
        return {"inject_memories": False}
    return {"injection_mode": mode}


def _session() -> str:
    return f"cache-{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------------------------- LiteLLM


def _litellm(wire: str) -> Runner:
    def run(ctx: Context, system: str, mode: str, turns: int) -> list[Body]:
        import hindsight_litellm as hl

        fake: FakeOpenAI | FakeAnthropic = ctx.openai if wire == "openai" else ctx.anthropic
        model = f"openai/{OPENAI_MODEL}" if wire == "openai" else f"anthropic/{ANTHROPIC_MODEL}"
        options = {f"hindsight_{k}": v for k, v in _memory(mode).items()}
        session = _session()
        bodies = []
        for turn in range(turns):
            fake.reply = ANSWERS[turn]
            hl.completion(
                model=model,
                api_base=fake.base_url,
                api_key="sk-test",
                messages=app_messages(system, turn),
                hindsight_api_url=ctx.url,
                hindsight_bank_id=ctx.bank,
                hindsight_session_id=session,
                hindsight_store_conversations=False,
                **options,
            )
            bodies.append(fake.last_json)
        return bodies

    return run


def _wrap_openai(ctx: Context, system: str, mode: str, turns: int) -> list[Body]:
    import openai

    import hindsight_litellm as hl

    bodies = []
    with openai.OpenAI(base_url=ctx.openai.base_url, api_key="sk-test", max_retries=0) as client:
        wrapped = hl.wrap_openai(
            client,
            hindsight_api_url=ctx.url,
            bank_id=ctx.bank,
            session_id=_session(),
            store_conversations=False,
            **_memory(mode),
        )
        for turn in range(turns):
            ctx.openai.reply = ANSWERS[turn]
            wrapped.chat.completions.create(model=OPENAI_MODEL, messages=app_messages(system, turn))
            bodies.append(ctx.openai.last_json)
    return bodies


def _wrap_anthropic(ctx: Context, system: str, mode: str, turns: int) -> list[Body]:
    import anthropic

    import hindsight_litellm as hl

    bodies = []
    with anthropic.Anthropic(base_url=ctx.anthropic.base_url, api_key="sk-ant-test", max_retries=0) as client:
        wrapped = hl.wrap_anthropic(
            client,
            hindsight_api_url=ctx.url,
            bank_id=ctx.bank,
            session_id=_session(),
            store_conversations=False,
            **_memory(mode),
        )
        for turn in range(turns):
            ctx.anthropic.reply = ANSWERS[turn]
            wrapped.messages.create(
                model=ANTHROPIC_MODEL, max_tokens=512, system=system, messages=app_messages(system, turn)[1:]
            )
            bodies.append(ctx.anthropic.last_json)
    return bodies


def _proxy(ctx: Context, system: str, mode: str, turns: int) -> list[Body]:
    """The LiteLLM proxy's pre-call hook on each request, as the proxy calls it; then the request goes to the
    provider through LiteLLM, as the proxy sends it."""
    import litellm
    from litellm.proxy._types import UserAPIKeyAuth

    from hindsight_litellm.proxy import HindsightProxyHook

    hook = HindsightProxyHook(
        hindsight_api_url=ctx.url,
        bank_id=ctx.bank,
        session_id=_session(),
        store_conversations=False,
        **_memory(mode),
    )
    key = UserAPIKeyAuth(api_key="sk-virtual-key")

    async def conversation() -> list[Body]:
        bodies = []
        for turn in range(turns):
            data: dict[str, Any] = {
                "model": OPENAI_MODEL,
                "messages": app_messages(system, turn),
                "litellm_call_id": str(uuid.uuid4()),
                "metadata": {"user_api_key_alias": None, "headers": {}},
            }
            data = await hook.async_pre_call_hook(key, None, data, "acompletion")
            ctx.openai.reply = ANSWERS[turn]
            response = await litellm.acompletion(
                model=f"openai/{OPENAI_MODEL}",
                api_base=ctx.openai.base_url,
                api_key="sk-test",
                messages=data["messages"],
            )
            await hook.async_post_call_success_hook(data, key, response)
            bodies.append(ctx.openai.last_json)
        return bodies

    return asyncio.run(conversation())


def separate_system(ctx: Context, system: str, turns: int) -> dict[str, list[Body]]:
    """Not a mode of ours: the memory block as a system message of its own, just before the latest user
    message (the seeds' "memories go into a system message", placed after the history). The block of each
    turn is the one ``system_message`` mode renders (from the debug record); the messages go through plain
    LiteLLM to both wires."""
    import litellm

    import hindsight_litellm as hl

    session = _session()
    bodies: dict[str, list[Body]] = {"openai": [], "anthropic": []}
    for turn in range(turns):
        messages = app_messages(system, turn)
        hl.completion(
            model=f"openai/{OPENAI_MODEL}",
            api_base=ctx.openai.base_url,
            api_key="sk-test",
            messages=messages,
            hindsight_api_url=ctx.url,
            hindsight_bank_id=ctx.bank,
            hindsight_session_id=session,
            hindsight_store_conversations=False,
        )
        record = hl.get_last_injection_debug()
        block = record.memory_context if record is not None and record.injected else ""
        placed = [*messages[:-1], *([{"role": "system", "content": block}] if block else []), messages[-1]]
        for wire, fake, model in (
            ("openai", ctx.openai, f"openai/{OPENAI_MODEL}"),
            ("anthropic", ctx.anthropic, f"anthropic/{ANTHROPIC_MODEL}"),
        ):
            fake.reply = ANSWERS[turn]
            litellm.completion(model=model, api_base=fake.base_url, api_key="sk-test", messages=placed)
            bodies[wire].append(fake.last_json)
    return bodies


# ------------------------------------------------------------------------------------------- LangChain


def _langchain_recorder() -> tuple[Any, list[list[Any]]]:
    from langchain_core.callbacks import BaseCallbackHandler

    seen: list[list[Any]] = []

    class Recorder(BaseCallbackHandler):
        def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
            seen.extend(list(batch) for batch in messages)

    return Recorder(), seen


def _langchain_model() -> Any:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    class Model(GenericFakeChatModel):
        def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
            return self

    return Model(messages=iter([AIMessage(answer) for answer in ANSWERS]))


def _openai_dicts(messages: Sequence[Any]) -> Body:
    from langchain_core.messages import convert_to_openai_messages

    return {"messages": convert_to_openai_messages(list(messages))}


def _langchain_runnable(ctx: Context, system: str, mode: str, turns: int) -> list[Body]:
    from langchain_core.messages import convert_to_messages

    from langchain_hindsight import RunnableWithHindsight

    recorder, seen = _langchain_recorder()
    runnable = RunnableWithHindsight(
        _langchain_model(),
        hindsight_api_url=ctx.url,
        bank_id=ctx.bank,
        session_id=_session(),
        store_conversations=False,
        **_memory(mode),
    )
    for turn in range(turns):
        runnable.invoke(convert_to_messages(app_messages(system, turn)), config={"callbacks": [recorder]})
    return [_openai_dicts(messages) for messages in seen]


def _langchain_middleware(ctx: Context, system: str, mode: str, turns: int) -> list[Body]:
    from langchain.agents import create_agent
    from langchain_core.messages import HumanMessage
    from langgraph.checkpoint.memory import InMemorySaver

    from langchain_hindsight import HindsightMiddleware

    recorder, seen = _langchain_recorder()
    middleware = HindsightMiddleware(
        hindsight_api_url=ctx.url, bank_id=ctx.bank, store_conversations=False, **_memory(mode)
    )
    agent = create_agent(
        _langchain_model(),
        tools=[],
        system_prompt=system,
        middleware=[middleware],
        checkpointer=InMemorySaver(),
    )
    config: Any = {"configurable": {"thread_id": _session()}, "callbacks": [recorder]}
    for turn in range(turns):
        agent.invoke({"messages": [HumanMessage(QUESTIONS[turn])]}, config=config)
    return [_openai_dicts(messages) for messages in seen]


# ------------------------------------------------------------------------------------------ LlamaIndex


def _llamaindex(ctx: Context, system: str, mode: str, turns: int) -> list[Body]:
    """``HindsightMemory`` in a ``SimpleChatEngine``: what the engine's LLM received. Modes: ``none``,
    ``SYSTEM`` and ``USER`` (LlamaIndex's ``InsertMethod``), and ``append_user`` (``USER`` with
    ``injection_mode="append_user"``: after the question). The buffer's token limit is set high, so
    that it never drops old messages (which would change the prefix in every mode alike)."""
    from llama_index.core.base.llms.types import ChatMessage, TextBlock
    from llama_index.core.chat_engine import SimpleChatEngine
    from llama_index.core.llms.mock import MockFunctionCallingLLM

    from llama_index.memory.hindsight import HindsightMemory, InsertMethod

    seen: list[list[ChatMessage]] = []

    def respond(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        seen.append(list(messages))
        return ChatMessage(role="assistant", content=ANSWERS[len(seen) - 1])

    options: dict[str, Any] = {"inject_memories": False} if mode == "none" else {}
    if mode == "append_user":
        options["injection_mode"] = "append_user"
    memory = HindsightMemory.from_defaults(
        bank_id=ctx.bank,
        session_id=_session(),
        hindsight_api_url=ctx.url,
        token_limit=1_000_000,
        insert_method=InsertMethod.SYSTEM if mode in ("none", "SYSTEM") else InsertMethod.USER,
        store_conversations=False,
        **options,
    )
    engine = SimpleChatEngine.from_defaults(
        llm=MockFunctionCallingLLM(response_generator=respond), memory=memory, system_prompt=system
    )
    for turn in range(turns):
        engine.chat(QUESTIONS[turn])

    def as_dict(message: ChatMessage) -> dict[str, Any]:
        text = "\n".join(b.text for b in message.blocks if isinstance(b, TextBlock))
        return {"role": message.role.value, "content": text}

    return [{"messages": [as_dict(m) for m in messages]} for messages in seen]


OURS_MODES = ("none", "system_message", "prepend_user", "append_user")
LLAMAINDEX_MODES = ("none", "SYSTEM", "USER", "append_user")

RUNNERS: dict[str, tuple[str, Runner, tuple[str, ...]]] = {
    "litellm.completion (OpenAI)": ("openai", _litellm("openai"), OURS_MODES),
    "litellm.completion (Anthropic)": ("anthropic", _litellm("anthropic"), OURS_MODES),
    "wrap_openai": ("openai", _wrap_openai, OURS_MODES),
    "wrap_anthropic": ("anthropic", _wrap_anthropic, OURS_MODES),
    "LiteLLM proxy hook": ("openai", _proxy, OURS_MODES),
    "LangChain RunnableWithHindsight": ("openai", _langchain_runnable, OURS_MODES),
    "LangChain HindsightMiddleware": ("openai", _langchain_middleware, OURS_MODES),
    "LlamaIndex HindsightMemory": ("openai", _llamaindex, LLAMAINDEX_MODES),
}
"""adapter -> (wire of its bodies, runner, modes)."""
