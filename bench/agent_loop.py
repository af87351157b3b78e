"""Agent loops with memory: recalls and stored turns per user message, and the latency saved.

An agent answers one user message with several model calls: it asks for a tool, gets the result, asks
again... Here each user message is followed by ``AGENT_STEPS`` (5) tool-call/tool-result steps and the
answer: 6 model calls. The same loop runs through ``hindsight_litellm.completion``, LangChain's
``RunnableWithHindsight`` (the application's own tool loop) and ``HindsightMiddleware``
(``create_agent``), LlamaIndex's ``FunctionAgent`` with ``HindsightMemory``, and the published
hindsight-litellm 0.5.4 (its own venv, ``bench/legacy_054_turns.py``). The models are fakes that call the
tool five times, then answer (``tests/providers.py`` for the LiteLLM paths, the frameworks' own fakes
otherwise). The LiteLLM loops send the tool calls and results in the conversation but no tool definitions:
the fake needs none, and LiteLLM 1.106.2 without its ``mcp`` dependency (as in the 0.5.4 venv) fails on
``tools=`` (``litellm/main.py`` imports its MCP handler).

Every integration talks to the real local Hindsight server through a pass-through proxy
(``tests/reliability/hindsight_faults.py``) that counts the recall and retain requests and the turns in
each retain; our storage worker's ``submitted`` counter gives the turns handed to storage. The recall round
trip of the same server is measured in the same run (direct recalls of the benchmark's questions), and
the latency saved per user message is the recalls not made (one per model call would be 6) times it.

Run: ``uv run python -m bench.agent_loop [--messages 3] [--server-url URL] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench._common import machine, seed_tagged, server_url, summary, wait_idle, write_json
from bench._conversation import AGENT_STEPS, ANSWERS, FACTS, QUESTIONS, tool_arguments, tool_result
from bench.legacy_054_turns import run_in_peer_venv
from hindsight_core import HindsightClient
from hindsight_core.storage import default_worker
from tests.providers import FakeOpenAI
from tests.reliability.hindsight_faults import HindsightFaults

__all__ = ["main"]

SYSTEM = "You are Ada, a personal assistant. Search before you answer."


@dataclass
class Context:
    url: str  # the counting proxy in front of the server
    bank: str
    openai: FakeOpenAI


Loop = Callable[[Context, int], tuple[int, list[float]]]
"""(context, user messages) -> (model calls, seconds per user message)."""


def _session() -> str:
    return f"agent-{uuid.uuid4().hex[:12]}"


def _per_message(answer: Callable[[int], int], count: int) -> tuple[int, list[float]]:
    """Run ``answer`` (user message index -> model calls) for each user message: (calls, seconds each)."""
    calls, seconds = 0, []
    for index in range(count):
        started = time.perf_counter()
        calls += answer(index)
        seconds.append(time.perf_counter() - started)
    return calls, seconds


# --------------------------------------------------------------------------------------------- LiteLLM


def _litellm(ctx: Context, count: int) -> tuple[int, list[float]]:
    import hindsight_litellm as hl

    session = _session()
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]

    def answer(index: int) -> int:
        messages.append({"role": "user", "content": QUESTIONS[index]})
        for step in range(AGENT_STEPS + 1):
            answering = step == AGENT_STEPS
            call_id = f"call_{index}_{step}"
            ctx.openai.reply = (
                ANSWERS[index]
                if answering
                else {
                    "tool_calls": [
                        {"id": call_id, "name": "search", "arguments": tool_arguments(index, step)}
                    ]
                }
            )
            response = hl.completion(
                model="openai/gpt-4o-mini",
                api_base=ctx.openai.base_url,
                api_key="sk-test",
                messages=messages,
                hindsight_api_url=ctx.url,
                hindsight_bank_id=ctx.bank,
                hindsight_session_id=session,
            )
            messages.append(response.choices[0].message.model_dump(exclude_none=True))
            if not answering:
                result = tool_result(**tool_arguments(index, step))
                messages.append({"role": "tool", "tool_call_id": call_id, "content": result})
        return AGENT_STEPS + 1

    return _per_message(answer, count)


# ------------------------------------------------------------------------------------------- LangChain


def _langchain_model(count: int) -> Any:
    """A fake chat model that, for each user message, calls ``search`` five times, then answers."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    class Model(GenericFakeChatModel):
        def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
            return self

    replies = []
    for index in range(count):
        for step in range(AGENT_STEPS):
            call = {"name": "search", "args": tool_arguments(index, step), "id": f"call_{index}_{step}"}
            replies.append(AIMessage("", tool_calls=[call]))
        replies.append(AIMessage(ANSWERS[index]))
    return Model(messages=iter(replies))


def _langchain_tool() -> Any:
    from langchain_core.tools import tool

    @tool
    def search(query: str, page: int = 1) -> str:
        """Search the web and the user's documents."""
        return tool_result(query, page)

    return search


def _langchain_runnable(ctx: Context, count: int) -> tuple[int, list[float]]:
    from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage, ToolMessage

    from langchain_hindsight import RunnableWithHindsight

    search = _langchain_tool()
    runnable = RunnableWithHindsight(
        _langchain_model(count), hindsight_api_url=ctx.url, bank_id=ctx.bank, session_id=_session()
    )
    messages: list[BaseMessage] = [SystemMessage(SYSTEM)]

    def answer(index: int) -> int:
        messages.append(HumanMessage(QUESTIONS[index]))
        reply = runnable.invoke(messages)
        calls = 1
        while reply.tool_calls:
            messages.append(reply)
            for call in reply.tool_calls:
                messages.append(ToolMessage(search.invoke(call["args"]), tool_call_id=call["id"]))
            reply = runnable.invoke(messages)
            calls += 1
        messages.append(reply)
        return calls

    return _per_message(answer, count)


def _langchain_middleware(ctx: Context, count: int) -> tuple[int, list[float]]:
    from langchain.agents import create_agent
    from langchain_core.messages import AIMessage, HumanMessage
    from langgraph.checkpoint.memory import InMemorySaver

    from langchain_hindsight import HindsightMiddleware

    agent = create_agent(
        _langchain_model(count),
        tools=[_langchain_tool()],
        system_prompt=SYSTEM,
        middleware=[HindsightMiddleware(hindsight_api_url=ctx.url, bank_id=ctx.bank)],
        checkpointer=InMemorySaver(),
    )
    config: Any = {"configurable": {"thread_id": _session()}}
    seen = 0

    def answer(index: int) -> int:
        nonlocal seen
        result = agent.invoke({"messages": [HumanMessage(QUESTIONS[index])]}, config=config)
        replies = [m for m in result["messages"] if isinstance(m, AIMessage)]
        calls, seen = len(replies) - seen, len(replies)
        return calls

    return _per_message(answer, count)


# ------------------------------------------------------------------------------------------ LlamaIndex


def _llamaindex(ctx: Context, count: int) -> tuple[int, list[float]]:
    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
    from llama_index.core.llms.mock import MockFunctionCallingLLM
    from llama_index.core.tools import FunctionTool

    from llama_index.memory.hindsight import HindsightMemory

    calls = 0

    def respond(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        nonlocal calls
        calls += 1
        users = [i for i, m in enumerate(messages) if m.role == MessageRole.USER]
        index = len(users) - 1
        step = sum(1 for m in messages[users[-1] :] if m.role == MessageRole.TOOL)
        if step == AGENT_STEPS:
            return ChatMessage(role="assistant", content=ANSWERS[index])
        block = ToolCallBlock(
            tool_call_id=f"call_{index}_{step}", tool_name="search", tool_kwargs=tool_arguments(index, step)
        )
        return ChatMessage(role="assistant", blocks=[block])

    agent = FunctionAgent(
        tools=[FunctionTool.from_defaults(fn=tool_result, name="search")],
        llm=MockFunctionCallingLLM(response_generator=respond),
        system_prompt=SYSTEM,
    )
    memory = HindsightMemory.from_defaults(bank_id=ctx.bank, session_id=_session(), hindsight_api_url=ctx.url)

    async def conversation() -> list[float]:
        seconds = []
        for index in range(count):
            started = time.perf_counter()
            answer = str(await agent.run(user_msg=QUESTIONS[index], memory=memory))
            seconds.append(time.perf_counter() - started)
            if answer != ANSWERS[index]:
                raise RuntimeError(f"the agent answered {answer[:80]!r}")
        return seconds

    seconds = asyncio.run(conversation())
    return calls, seconds


LOOPS: dict[str, Loop] = {
    "hindsight_litellm.completion": _litellm,
    "LangChain RunnableWithHindsight": _langchain_runnable,
    "LangChain HindsightMiddleware": _langchain_middleware,
    "LlamaIndex FunctionAgent + HindsightMemory": _llamaindex,
}
LEGACY = "hindsight-litellm 0.5.4 (completion)"


# --------------------------------------------------------------------------------------------- counting


def _retains(proxy: HindsightFaults, since: int) -> tuple[int, int, int]:
    """Retain requests, turns (items) and stored characters the server got after ``proxy.seen[since]``."""
    requests = items = chars = 0
    for seen in proxy.seen[since:]:
        if seen.operation != "retain":
            continue
        requests += 1
        body = json.loads(seen.body or b"{}")
        for item in body.get("items") or []:
            items += 1
            chars += len(str(item.get("content") or ""))
    return requests, items, chars


def _legacy(ctx: Context, count: int, venv: Path | None) -> tuple[int, list[float], dict[str, Any]]:
    arguments = ["agent", "--server-url", ctx.url, "--bank", ctx.bank, "--messages", str(count)]
    result = run_in_peer_venv(arguments, venv, timeout=900)
    return result.pop("model_calls"), result.pop("seconds_per_message"), result


def recall_round_trip(url: str, bank: str, rounds: int = 2) -> dict[str, float]:
    """The server's recall round trip (ms) for the benchmark's questions, with our client."""
    samples = []
    with HindsightClient(url) as client:
        client.recall(bank, QUESTIONS[0])  # connection set up
        for _ in range(rounds):
            for question in QUESTIONS:
                started = time.perf_counter()
                client.recall(bank, question)
                samples.append((time.perf_counter() - started) * 1000)
    return summary(samples)


def measure(url: str, count: int, legacy_venv: Path | None, no_legacy: bool) -> dict[str, Any]:
    import litellm

    litellm.suppress_debug_info = True
    bank = f"bench-agent-{uuid.uuid4().hex[:8]}"
    seed_tagged(url, bank, FACTS, ["seed"])
    wait_idle(url, [bank])
    recall_ms = recall_round_trip(url, bank)
    rows: list[dict[str, Any]] = []
    proxy = HindsightFaults(url)
    try:
        with FakeOpenAI() as fake:
            ctx = Context(proxy.url, bank, fake)
            # LiteLLM's first call does one-off set-up: not part of any integration's time.
            litellm.completion(
                model="openai/gpt-4o-mini",
                api_base=fake.base_url,
                api_key="sk-test",
                messages=[{"role": "user", "content": "hi"}],
            )
            for name in [*LOOPS, *([] if no_legacy else [LEGACY])]:
                print(f"[agent_loop] {name}", file=sys.stderr, flush=True)
                recalls, mark, submitted = (
                    proxy.hits["recall"],
                    len(proxy.seen),
                    default_worker().stats().submitted,
                )
                extra: dict[str, Any] = {}
                try:
                    if name == LEGACY:
                        calls, seconds, extra = _legacy(ctx, count, legacy_venv)
                    else:
                        calls, seconds = LOOPS[name](ctx, count)
                except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
                    rows.append({"integration": name, "error": str(exc)})
                    continue
                default_worker().flush(timeout=60)
                requests, items, chars = _retains(proxy, mark)
                rows.append(
                    {
                        "integration": name,
                        "user_messages": count,
                        "model_calls": calls,
                        "recalls": proxy.hits["recall"] - recalls,
                        "handed_to_storage": None
                        if extra
                        else default_worker().stats().submitted - submitted,
                        "retain_requests": requests,
                        "turns_stored": items,
                        "stored_chars": chars,
                        "seconds_per_message": seconds,
                        **({"legacy": extra} if extra else {}),
                    }
                )
            errors = [repr(e) for e in (*fake.errors, *proxy.errors)]
    finally:
        proxy.close()
    return {
        "steps": AGENT_STEPS,
        "user_messages": count,
        "recall_ms": recall_ms,
        "rows": rows,
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--server-url", help="a running Hindsight server (default: start a local one)")
    parser.add_argument("--messages", type=int, default=3, help="user messages per integration (default 3)")
    parser.add_argument("--legacy-venv", type=Path, help="the 0.5.4 venv (default: tests/compat/peer.py's)")
    parser.add_argument("--no-legacy", action="store_true", help="skip hindsight-litellm 0.5.4")
    parser.add_argument("--json", help="write the results here (default: print them)")
    args = parser.parse_args()
    if not 1 <= args.messages <= len(QUESTIONS):
        parser.error(f"--messages must be between 1 and {len(QUESTIONS)}")
    started, load_before = datetime.now(timezone.utc).isoformat(timespec="seconds"), os.getloadavg()[0]
    with server_url(args.server_url) as url:
        result = measure(url, args.messages, args.legacy_venv, args.no_legacy)
    result["machine"] = machine()
    result["started"] = started
    result["load"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    for row in result["rows"]:
        print(json.dumps({k: v for k, v in row.items() if k != "legacy"}), file=sys.stderr)
    write_json(args.json, result)


if __name__ == "__main__":
    main()
