"""Bad inputs, table-driven, through every integration: each is answered with a clear error (the core's
``ConfigurationError``, or the framework's own error naming the problem) before anything is sent, or handled
(the LLM call goes on, memory does what it can, nothing in memory fails). Never a crash inside memory that
breaks the LLM call. The table in docs/reliability.md records these outcomes.

Also proven elsewhere: unknown and misspelled options (``tests/litellm/test_context_and_failures.py``,
``tests/langchain/test_runnable.py``, ``tests/llamaindex/test_units.py``), bad client and storage options
(``tests/core/test_client_faults.py``, ``tests/core/test_storage.py``), long queries cut to the server's
limit and multimodal/tool messages in transcripts (``tests/core/test_pipeline.py``).
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import litellm
import openai
import pydantic
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from llama_index.core.base.llms.types import ChatMessage, ImageBlock, TextBlock
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms.mock import MockLLMWithChatMemoryOfLastCall

import hindsight_litellm as hl
from hindsight_core import ConfigurationError
from hindsight_core.debug import InjectionDebugInfo
from hindsight_core.pipeline import MEMORY_OPEN
from hindsight_core.pipeline.query import MAX_QUERY_TOKENS
from hindsight_core.pipeline.tokens import count_tokens
from hindsight_core.storage import StorageWorker
from langchain_hindsight import RunnableWithHindsight, get_last_injection_debug
from llama_index.memory.hindsight import HindsightMemory
from tests.helpers import seed_bank
from tests.langchain.conftest import ModelInputs
from tests.providers import FakeOpenAI

pytestmark = pytest.mark.server

FACT = "The user's favourite drink is mint tea."
QUESTION = "What is my favourite drink?"
HUGE = "Tell me about my favourite drink again. " * 5_000 + QUESTION  # 200k characters, 45k tokens
IMAGE = "data:image/png;base64,iVBORw0KGgo="
NOT_JSON = '{"city": "Par'  # tool arguments cut short: not JSON


@dataclass
class Env:
    url: str
    bank: str
    provider: FakeOpenAI
    worker: StorageWorker


@dataclass
class Handled:
    """The call went on: the LLM's answer, the memory debug record, and what the LLM was sent."""

    answer: str
    record: InjectionDebugInfo | None
    sent: str


Run = Callable[[Env], Awaitable[Handled]]
Check = Callable[[Handled], None]


@dataclass(frozen=True)
class Case:
    """One row of the table: an integration, a bad input, and what must happen."""

    id: str
    adapter: str
    run: Run
    raises: type[BaseException] | None = None
    match: str = ""
    check: Check | None = None
    lookup: bool = True  # the call looks memory up (and must find the seeded fact)


# ------------------------------------------------------------------------------------------- adapters


def _openai_sent(provider: FakeOpenAI) -> str:
    return json.dumps(provider.last_json["messages"])


def _litellm(messages: Any = None, **options: Any) -> Run:
    async def run(env: Env) -> Handled:
        kwargs = {
            "model": "openai/gpt-4o-mini",
            "api_base": env.provider.base_url,
            "api_key": "sk-test",
            "messages": [{"role": "user", "content": QUESTION}] if messages is None else messages,
            "hindsight_api_url": env.url,
            "hindsight_bank_id": env.bank,
            **options,
        }
        if messages is _NONE:
            kwargs["messages"] = None
        response = hl.completion(**kwargs)
        return Handled(response.choices[0].message.content or "", hl.get_last_injection_debug(), _sent(env))

    return run


def _alitellm(messages: Any) -> Run:
    async def run(env: Env) -> Handled:
        response = await hl.acompletion(
            model="openai/gpt-4o-mini",
            api_base=env.provider.base_url,
            api_key="sk-test",
            messages=messages,
            hindsight_api_url=env.url,
            hindsight_bank_id=env.bank,
        )
        return Handled(response.choices[0].message.content or "", hl.get_last_injection_debug(), _sent(env))

    return run


def _sent(env: Env) -> str:
    return _openai_sent(env.provider) if env.provider.requests else ""


def _configure(**options: Any) -> Run:
    async def run(env: Env) -> Handled:
        hl.configure(hindsight_api_url=env.url, bank_id=env.bank, **options)
        raise AssertionError("configure() accepted a bad option")

    return run


def _wrap_openai(messages: Any = None, **options: Any) -> Run:
    async def run(env: Env) -> Handled:
        sdk = openai.OpenAI(base_url=env.provider.base_url, api_key="sk-test", max_retries=0)
        client = hl.wrap_openai(sdk, hindsight_api_url=env.url, bank_id=env.bank, **options)
        response = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": QUESTION}] if messages is None else messages,
        )
        return Handled(response.choices[0].message.content or "", hl.get_last_injection_debug(), _sent(env))

    return run


def _langchain(value: Any = QUESTION, configurable: dict[str, Any] | None = None, **options: Any) -> Run:
    async def run(env: Env) -> Handled:
        model = GenericFakeChatModel(messages=itertools.cycle([AIMessage("Answered.")]))
        inputs = ModelInputs()
        chain = RunnableWithHindsight(
            model, bank_id=env.bank, hindsight_api_url=env.url, storage=env.worker, **options
        )
        output = chain.invoke(value, {"callbacks": [inputs], "configurable": configurable or {}})
        sent = json.dumps([m.model_dump(mode="json") for m in inputs.calls[-1]])
        return Handled(output.text, get_last_injection_debug(), sent)

    return run


def _llamaindex(message: Any = QUESTION, *, put: list[ChatMessage] | None = None, **options: Any) -> Run:
    async def run(env: Env) -> Handled:
        memory = HindsightMemory.from_defaults(bank_id=env.bank, hindsight_api_url=env.url, **options)
        llm = MockLLMWithChatMemoryOfLastCall(max_tokens=2, is_chat_model=True)
        if put is not None:  # messages handed to the memory directly (as agents do), then a lookup
            memory.put_messages(put)
            history = memory.get()
            return Handled(
                "(memory.get)", memory.last_debug, json.dumps([m.model_dump(mode="json") for m in history])
            )
        engine = SimpleChatEngine.from_defaults(llm=llm, memory=memory)
        answer = str(engine.chat(message))
        messages = llm.last_chat_messages or []
        return Handled(answer, memory.last_debug, json.dumps([m.model_dump(mode="json") for m in messages]))

    return run


_NONE = object()  # "messages=None" (None itself means: the default question)


class _Pydantic(pydantic.BaseModel):
    role: str
    content: str


# ------------------------------------------------------------------------------------------- checks


def _injected(handled: Handled) -> None:
    assert handled.record is not None
    assert handled.record.injected, handled.record
    assert MEMORY_OPEN in handled.sent


def _no_lookup(handled: Handled) -> None:
    assert handled.record is not None
    assert handled.record.error is None
    assert handled.record.skipped_reason == "no user text to look up memories for"


def _query_cut_keeping_the_question(handled: Handled) -> None:
    _injected(handled)
    assert handled.record is not None
    assert handled.record.query is not None
    assert handled.record.query.endswith(QUESTION)
    assert count_tokens(handled.record.query) <= MAX_QUERY_TOKENS  # what the server accepts


def _query_is_the_text_part(handled: Handled) -> None:
    _injected(handled)
    assert handled.record is not None
    assert handled.record.query is not None
    assert handled.record.query.startswith(QUESTION)  # then an "[image]" placeholder
    assert "base64" not in handled.record.query


def _image_reaches_the_model(handled: Handled) -> None:
    _query_is_the_text_part(handled)
    assert IMAGE in handled.sent


def _sent_as_a_list(handled: Handled) -> None:
    _injected(handled)
    assert handled.sent.startswith("[")


CASES: list[Case] = [
    # -- LiteLLM: options
    Case(
        "litellm-option-type",
        "litellm",
        _litellm(hindsight_max_memories="five"),
        ConfigurationError,
        r"'max_memories'.*valid integer",
    ),
    Case(
        "litellm-option-enum",
        "litellm",
        _litellm(hindsight_injection_mode="sideways"),
        ConfigurationError,
        re.escape("'injection_mode': must be one of 'system_message', 'prepend_user'"),
    ),
    Case(
        "litellm-option-bool",
        "litellm",
        _litellm(hindsight_store_conversations="maybe"),
        ConfigurationError,
        r"'store_conversations'.*valid boolean",
    ),
    Case(
        "litellm-option-range",
        "litellm",
        _litellm(hindsight_recall_timeout=0),
        ConfigurationError,
        r"'recall_timeout'.*greater than 0",
    ),
    Case(
        "litellm-option-url",
        "litellm",
        _litellm(hindsight_api_url="ftp://memory.example"),
        ConfigurationError,
        r"'hindsight_api_url'.*http:// or https://",
    ),
    Case(
        "litellm-option-fact-types",
        "litellm",
        _litellm(hindsight_fact_types=["gossip"]),
        ConfigurationError,
        r"unknown fact type 'gossip'; allowed: world, experience, observation",
    ),
    Case(
        "litellm-configure-unknown",
        "litellm",
        _configure(bankid="x"),
        TypeError,
        r"unexpected keyword argument 'bankid'",
    ),
    Case(
        "litellm-configure-enum", "litellm", _configure(budget="max"), ConfigurationError, r"'budget'.*'low'"
    ),
    # -- LiteLLM: messages
    Case("litellm-messages-none", "litellm", _litellm(_NONE), check=_no_lookup, lookup=False),
    Case("litellm-messages-empty", "litellm", _litellm([]), check=_no_lookup, lookup=False),
    Case(
        "litellm-messages-string",
        "litellm",
        _litellm("What is my favourite drink?"),
        ConfigurationError,
        r"messages must be a list of messages.*got str",
    ),
    Case(
        "litellm-messages-dict",
        "litellm",
        _litellm({"role": "user", "content": QUESTION}),
        ConfigurationError,
        r"messages must be a list of messages.*got dict",
    ),
    Case(
        "litellm-messages-of-strings",
        "litellm",
        _litellm(["hello", "there"]),
        ConfigurationError,
        r"messages\[0\] must be a message.*got str",
    ),
    Case(
        "litellm-messages-tuple",
        "litellm",
        _litellm(({"role": "user", "content": QUESTION},)),
        check=_sent_as_a_list,
    ),
    Case(
        "litellm-messages-pydantic",
        "litellm",
        _litellm([litellm.Message(role="user", content=QUESTION)]),
        check=_injected,
    ),
    Case(
        "litellm-messages-own-pydantic",
        "litellm",
        _litellm([_Pydantic(role="user", content=QUESTION)]),
        check=_injected,
    ),
    Case(
        "litellm-content-none",
        "litellm",
        _litellm([{"role": "user", "content": None}]),
        check=_no_lookup,
        lookup=False,
    ),
    Case(
        "litellm-content-huge",
        "litellm",
        _litellm([{"role": "user", "content": HUGE}]),
        check=_query_cut_keeping_the_question,
    ),
    Case(
        "litellm-content-multimodal",
        "litellm",
        _litellm(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": QUESTION},
                        {"type": "image_url", "image_url": {"url": IMAGE}},
                    ],
                }
            ]
        ),
        check=_image_reaches_the_model,
    ),
    Case(
        "litellm-tool-arguments-not-json",
        "litellm",
        _litellm(
            [
                {"role": "user", "content": "What is the weather in Paris?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": NOT_JSON},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
                {"role": "user", "content": QUESTION},
            ]
        ),
        check=_injected,
    ),
    Case(
        "litellm-model-unknown-provider",
        "litellm",
        _litellm(model="totally-unknown-model"),
        litellm.exceptions.BadRequestError,
        r"LLM Provider NOT provided",
    ),
    Case("litellm-model-unknown", "litellm", _litellm(model="openai/no-such-model-2099"), check=_injected),
    Case(
        "litellm-acompletion-messages-string",
        "litellm.acompletion",
        _alitellm("What is my favourite drink?"),
        ConfigurationError,
        r"messages must be a list of messages.*got str",
    ),
    # -- OpenAI SDK wrapper
    Case(
        "wrap_openai-option-unknown",
        "wrap_openai",
        _wrap_openai(bankid="x"),
        ConfigurationError,
        r"unknown option 'bankid'; did you mean 'bank_id'",
    ),
    Case(
        "wrap_openai-option-enum",
        "wrap_openai",
        _wrap_openai(budget="max"),
        ConfigurationError,
        r"'budget'.*'low', 'mid' or 'high'",
    ),
    Case(
        "wrap_openai-messages-string",
        "wrap_openai",
        _wrap_openai("What is my favourite drink?"),
        ConfigurationError,
        r"messages must be a list of messages.*got str",
    ),
    Case(
        "wrap_openai-messages-tuple",
        "wrap_openai",
        _wrap_openai(({"role": "user", "content": QUESTION},)),
        check=_sent_as_a_list,
    ),
    Case(
        "wrap_openai-content-huge",
        "wrap_openai",
        _wrap_openai([{"role": "user", "content": HUGE}]),
        check=_query_cut_keeping_the_question,
    ),
    # -- LangChain
    Case(
        "langchain-option-fact-types",
        "langchain",
        _langchain(fact_types=["gossip"]),
        ConfigurationError,
        r"'fact_types'.*unknown fact type 'gossip'",
    ),
    Case(
        "langchain-configurable-type",
        "langchain",
        _langchain(configurable={"hindsight_max_memories": "five"}),
        ConfigurationError,
        r"hindsight_max_memories.*valid integer",
    ),
    Case(
        "langchain-input-none",
        "langchain",
        _langchain(None),
        TypeError,
        r"expected messages \(a string, a message, a prompt value or a list of messages\), got NoneType",
    ),
    Case(
        "langchain-input-not-messages",
        "langchain",
        _langchain([42]),
        NotImplementedError,
        r"Unsupported message type",
    ),
    Case("langchain-input-empty", "langchain", _langchain(""), check=_no_lookup, lookup=False),
    Case("langchain-input-huge", "langchain", _langchain(HUGE), check=_query_cut_keeping_the_question),
    Case("langchain-input-tuple", "langchain", _langchain((HumanMessage(QUESTION),)), check=_injected),
    Case(
        "langchain-input-multimodal",
        "langchain",
        _langchain(
            [
                HumanMessage(
                    content=[
                        {"type": "text", "text": QUESTION},
                        {"type": "image_url", "image_url": {"url": IMAGE}},
                    ]
                )
            ]
        ),
        check=_image_reaches_the_model,
    ),
    Case(
        "langchain-tool-arguments-not-json",
        "langchain",
        _langchain(
            [
                HumanMessage("What is the weather in Paris?"),
                AIMessage(
                    content="",
                    invalid_tool_calls=[
                        {
                            "type": "invalid_tool_call",
                            "id": "c1",
                            "name": "weather",
                            "args": NOT_JSON,
                            "error": None,
                        }
                    ],
                ),
                ToolMessage("sunny", tool_call_id="c1"),
                HumanMessage(QUESTION),
            ]
        ),
        check=_injected,
    ),
    # -- LlamaIndex
    Case(
        "llamaindex-option-fact-types",
        "llamaindex",
        _llamaindex(fact_types=["gossip"]),
        ConfigurationError,
        r"'fact_types'.*unknown fact type 'gossip'",
    ),
    Case(
        "llamaindex-insert-method",
        "llamaindex",
        _llamaindex(insert_method="sideways"),
        ConfigurationError,
        r"insert_method.*'system', 'user'.*got 'sideways'",
    ),
    Case(
        "llamaindex-token-limit",
        "llamaindex",
        _llamaindex(token_limit=-1),
        pydantic.ValidationError,
        r"token_limit\s+Input should be greater than 0",
    ),
    Case("llamaindex-chat-empty", "llamaindex", _llamaindex(""), check=_no_lookup, lookup=False),
    Case("llamaindex-chat-none", "llamaindex", _llamaindex(None), check=_no_lookup, lookup=False),
    Case("llamaindex-chat-huge", "llamaindex", _llamaindex(HUGE), check=_query_cut_keeping_the_question),
    Case(
        "llamaindex-put-multimodal",
        "llamaindex",
        _llamaindex(put=[ChatMessage(role="user", blocks=[TextBlock(text=QUESTION), ImageBlock(url=IMAGE)])]),
        check=_query_is_the_text_part,
    ),
    Case(
        "llamaindex-put-tool-arguments-not-json",
        "llamaindex",
        _llamaindex(
            put=[
                ChatMessage(role="user", content="What is the weather in Paris?"),
                ChatMessage(
                    role="assistant",
                    content="",
                    additional_kwargs={
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "weather", "arguments": NOT_JSON},
                            }
                        ]
                    },
                ),
                ChatMessage(role="tool", content="sunny", additional_kwargs={"tool_call_id": "c1"}),
                ChatMessage(role="assistant", content="It is sunny."),
                ChatMessage(role="user", content=QUESTION),
            ]
        ),
        check=_injected,
    ),
]


@pytest.fixture(scope="module")
def seeded_bank(hindsight_server: str) -> str:
    """One bank (verbatim chunks) holding FACT, shared by the table's rows (they only read it)."""
    bank = f"test-bad-inputs-{uuid.uuid4().hex}"
    seed_bank(hindsight_server, bank, [FACT])
    return bank


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_bad_input(
    case: Case, hindsight_server: str, seeded_bank: str, fake_openai: FakeOpenAI, worker: StorageWorker
) -> None:
    env = Env(hindsight_server, seeded_bank, fake_openai, worker)
    fake_openai.reply = "Answered."
    if case.raises is not None:
        with pytest.raises(case.raises, match=case.match):
            await case.run(env)
        assert fake_openai.requests == [], "nothing reached the model"
        assert worker.stats().submitted == 0, "nothing was stored"
        return
    handled = await case.run(env)
    assert handled.answer
    assert handled.record is not None
    assert handled.record.error is None, handled.record.error
    if case.lookup:
        assert handled.record.memories_found >= 1
    if case.check is not None:
        case.check(handled)
    # Whatever was handed to storage was stored (nothing rejected, nothing crashed in the worker).
    assert worker.flush(60)
    assert worker.pending_errors() == []
    assert worker.stats().failed == 0


def test_the_table_in_the_docs_has_every_case() -> None:
    """docs/reliability.md records the outcome of each case: a case added here must be added there."""
    docs = (Path(__file__).parents[2] / "docs" / "reliability.md").read_text()
    missing = [case.id for case in CASES if f"| `{case.id}` |" not in docs]
    assert not missing, f"add these cases to the bad-input table of docs/reliability.md: {missing}"
