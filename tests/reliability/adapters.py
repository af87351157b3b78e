"""Every integration behind one small interface, so a reliability property is tested for all of them by one
parametrized test.

An adapter is built for a :class:`Target` (the Hindsight URL it talks to, the bank, the conversation, extra
core settings) and asks its LLM one question at a time through its framework's own entry point:

- ``litellm.completion`` / ``litellm.acompletion``: ``hindsight_litellm.configure()`` + ``completion()`` /
  ``acompletion()``, the fake OpenAI provider answering over HTTP;
- ``wrap_openai``: ``hindsight_litellm.wrap_openai(openai.OpenAI(...))``, same provider;
- ``langchain``: ``RunnableWithHindsight`` around LangChain's ``GenericFakeChatModel``;
- ``llamaindex``: ``HindsightMemory`` in a ``SimpleChatEngine`` with LlamaIndex's mock LLM.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import openai
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms.mock import MockLLMWithChatMemoryOfLastCall

import hindsight_litellm as hl
from hindsight_core.debug import InjectionDebugInfo
from hindsight_core.storage import StorageWorker
from langchain_hindsight import RunnableWithHindsight, get_last_injection_debug
from llama_index.memory.hindsight import HindsightMemory
from tests.langchain.conftest import ModelInputs
from tests.llamaindex.conftest import sent_text
from tests.providers import FakeOpenAI

__all__ = ["ADAPTERS", "REPLY", "Adapter", "Answer", "Target"]

REPLY = "Still answering."
"""What the fake LLMs answer (LlamaIndex's mock LLM answers ``text text``)."""
_LLAMAINDEX_REPLY = "text text"


@dataclass
class Target:
    """What an adapter is pointed at."""

    url: str
    bank: str
    session: str | None
    """None: no session, each conversation is stored in a document of its own."""
    provider: FakeOpenAI
    worker: StorageWorker
    options: dict[str, Any] = field(default_factory=dict)
    """More core settings: ``recall_timeout``, ``max_retries``, ``api_key``, ``strict``..."""


@dataclass
class Answer:
    """One LLM call through an integration: the answer, the call's debug record, what the LLM was sent,
    and framework metadata that carries the record (LangChain's ``response_metadata["hindsight"]``)."""

    text: str
    record: InjectionDebugInfo
    sent: str
    metadata: Any = None


class Adapter:
    """One integration, built for a target; :meth:`ask` makes one LLM call through it."""

    name = "adapter"
    reply = REPLY

    def __init__(self, target: Target) -> None:
        self.target = target

    async def ask(self, question: str) -> Answer:
        raise NotImplementedError

    def objects(self) -> list[object]:
        """The user-facing objects of this integration (their reprs must never show the API key)."""
        return []


def _openai_sent(provider: FakeOpenAI) -> str:
    return "\n".join(str(m.get("content")) for m in provider.last_json["messages"])


def _last_record() -> InjectionDebugInfo:
    record = hl.get_last_injection_debug()
    assert record is not None, "no debug record"
    return record


class _LiteLLM(Adapter):
    def __init__(self, target: Target) -> None:
        super().__init__(target)
        target.provider.reply = REPLY
        hl.configure(
            hindsight_api_url=target.url, bank_id=target.bank, session_id=target.session, **target.options
        )

    def call(self, question: str) -> dict[str, Any]:
        return {
            "model": "openai/gpt-4o-mini",
            "api_base": self.target.provider.base_url,
            "api_key": "sk-test",
            "messages": [{"role": "user", "content": question}],
        }

    def objects(self) -> list[object]:
        return [hl.get_config(), hl.get_defaults()]


class LiteLLMCompletion(_LiteLLM):
    name = "litellm.completion"

    async def ask(self, question: str) -> Answer:
        response = hl.completion(**self.call(question))
        return Answer(response.choices[0].message.content, _last_record(), _openai_sent(self.target.provider))


class LiteLLMACompletion(_LiteLLM):
    name = "litellm.acompletion"

    async def ask(self, question: str) -> Answer:
        response = await hl.acompletion(**self.call(question))
        return Answer(response.choices[0].message.content, _last_record(), _openai_sent(self.target.provider))


class WrapOpenAI(Adapter):
    name = "wrap_openai"

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        target.provider.reply = REPLY
        sdk = openai.OpenAI(base_url=target.provider.base_url, api_key="sk-test", max_retries=0)
        self.client = hl.wrap_openai(
            sdk,
            hindsight_api_url=target.url,
            bank_id=target.bank,
            session_id=target.session,
            **target.options,
        )

    async def ask(self, question: str) -> Answer:
        response = self.client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
        )
        text = response.choices[0].message.content or ""
        return Answer(text, _last_record(), _openai_sent(self.target.provider))

    def objects(self) -> list[object]:
        return [self.client, self.client.chat, self.client.chat.completions]


class LangChain(Adapter):
    name = "langchain"

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        model = GenericFakeChatModel(messages=itertools.cycle([AIMessage(REPLY)]))
        self.inputs = ModelInputs()
        self.chain = RunnableWithHindsight(
            model,
            bank_id=target.bank,
            session_id=target.session,
            hindsight_api_url=target.url,
            storage=target.worker,
            **target.options,
        )

    async def ask(self, question: str) -> Answer:
        output = self.chain.invoke(question, {"callbacks": [self.inputs]})
        record = get_last_injection_debug()
        assert record is not None, "no debug record"
        return Answer(output.text, record, self.inputs.texts[-1], output.response_metadata.get("hindsight"))

    def objects(self) -> list[object]:
        return [self.chain]


class LlamaIndex(Adapter):
    name = "llamaindex"
    reply = _LLAMAINDEX_REPLY

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.memory = HindsightMemory.from_defaults(
            bank_id=target.bank, session_id=target.session, hindsight_api_url=target.url, **target.options
        )
        self.llm = MockLLMWithChatMemoryOfLastCall(max_tokens=2, is_chat_model=True)
        self.engine = SimpleChatEngine.from_defaults(llm=self.llm, memory=self.memory)

    async def ask(self, question: str) -> Answer:
        answer = str(self.engine.chat(question))
        record = self.memory.last_debug
        assert record is not None, "no debug record"
        return Answer(answer, record, sent_text(self.llm.last_chat_messages))

    def objects(self) -> list[object]:
        return [self.memory, self.engine]


ADAPTERS: dict[str, Callable[[Target], Adapter]] = {
    adapter.name: adapter
    for adapter in (LiteLLMCompletion, LiteLLMACompletion, WrapOpenAI, LangChain, LlamaIndex)
}
