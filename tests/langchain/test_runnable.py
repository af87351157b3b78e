"""RunnableWithHindsight against the real Hindsight server, with LangChain's fake chat models.

What the model received is read from a callback handler (``on_chat_model_start``), so these tests prove
that memories reach the model, through LangChain's own machinery; what was stored is read back with the
core client's ``recall`` from banks in ``chunks`` mode (content stored verbatim).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any, cast

import pytest
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    FakeMessagesListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import RunnableConfig, RunnableLambda, RunnableParallel

from hindsight_core import ConfigurationError, HindsightClient
from hindsight_core.pipeline import MEMORY_OPEN
from hindsight_core.storage import StorageWorker
from langchain_hindsight import (
    BANK_KEY,
    SESSION_KEY,
    RunnableWithHindsight,
    clear_last_debug,
    get_last_injection_debug,
)
from tests.langchain.conftest import Bank, ModelInputs

pytestmark = pytest.mark.server

FACT = "The user's favourite colour is teal."


def marker() -> str:
    return uuid.uuid4().hex[:10]


def fake(*replies: str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=itertools.cycle([AIMessage(r) for r in replies]))


def config(inputs: ModelInputs, **configurable: Any) -> RunnableConfig:
    return {"callbacks": [inputs], "configurable": configurable}


def assert_saw_memory(inputs: ModelInputs, fact: str = FACT, *, calls: int = 1) -> None:
    assert len(inputs.calls) == calls
    for call in inputs.calls:
        system = [m for m in call if isinstance(m, SystemMessage)]
        assert len(system) == 1, call
        assert MEMORY_OPEN in system[0].text
        assert fact in system[0].text


# ------------------------------------------------------------------------------------------ invoke


def test_invoke_injects_memories_and_stores_the_exchange_once(bank: Bank, inputs: ModelInputs) -> None:
    bank.seed(FACT)
    tag = marker()
    chain = RunnableWithHindsight(
        fake(f"Teal, of course ({tag})."), bank_id=bank.bank_id, hindsight_api_url=bank.url
    )
    clear_last_debug()

    out = chain.invoke(
        [SystemMessage("You are terse."), HumanMessage(f"What is my favourite colour? {tag}")],
        config(inputs),
    )

    assert out.content == f"Teal, of course ({tag})."
    assert_saw_memory(inputs)
    assert inputs.calls[0][0].text.startswith("You are terse.\n\n")  # merged into the caller's system message
    record = get_last_injection_debug()
    assert record is not None
    assert record.injected
    assert record.bank_id == bank.bank_id
    assert record.query == f"What is my favourite colour? {tag}"
    assert FACT in record.memory_context
    meta = out.response_metadata["hindsight"]
    assert meta["injected"] is True
    assert meta["memory_context"] == record.memory_context

    stored = bank.stored(tag)
    assert stored == [f"user: What is my favourite colour? {tag}\nassistant: Teal, of course ({tag})."]
    assert record.storage_status == "stored"


async def test_ainvoke_injects_and_stores(bank: Bank, inputs: ModelInputs) -> None:
    bank.seed(FACT)
    tag = marker()
    chain = RunnableWithHindsight(fake(f"Teal ({tag})."), hindsight_api_url=bank.url)

    out = await chain.ainvoke(f"Which colour do I like? {tag}", config(inputs, **{BANK_KEY: bank.bank_id}))

    assert out.content == f"Teal ({tag})."
    assert_saw_memory(inputs)
    record = get_last_injection_debug()
    assert record is not None
    assert record.injected
    assert bank.stored(tag) == [f"user: Which colour do I like? {tag}\nassistant: Teal ({tag})."]


def test_follow_up_turn_stores_only_the_new_exchange(bank: Bank, inputs: ModelInputs) -> None:
    tag = marker()
    chain = RunnableWithHindsight(
        FakeListChatModel(responses=[f"Hello Ana ({tag}).", f"Your name is Ana ({tag})."]),
        hindsight_api_url=bank.url,
    )
    cfg = config(inputs, **{BANK_KEY: bank.bank_id, SESSION_KEY: f"session-{tag}"})
    history: list[Any] = [HumanMessage(f"Hi, I am Ana. {tag}")]
    history.append(chain.invoke(history, cfg))
    history.append(HumanMessage(f"What is my name? {tag}"))
    chain.invoke(history, cfg)

    # Each turn stored once, appended to the session's document; the first turn is not sent again.
    assert sorted(bank.exchanges(tag)) == [
        f"user: Hi, I am Ana. {tag}\nassistant: Hello Ana ({tag}).",
        f"user: What is my name? {tag}\nassistant: Your name is Ana ({tag}).",
    ]
    record = get_last_injection_debug()
    assert record is not None
    assert record.document_id == f"session-{tag}"


def test_prepend_user_mode_injects_into_the_last_user_message(bank: Bank, inputs: ModelInputs) -> None:
    bank.seed(FACT)
    tag = marker()
    chain = RunnableWithHindsight(
        fake(f"Teal ({tag})."),
        bank_id=bank.bank_id,
        hindsight_api_url=bank.url,
        injection_mode="prepend_user",
    )
    chain.invoke(f"My colour? {tag}", config(inputs))

    [call] = inputs.calls
    assert len(call) == 1
    assert isinstance(call[0], HumanMessage)
    assert FACT in call[0].text
    assert call[0].text.endswith(f"My colour? {tag}")
    stored = bank.stored(tag)
    assert stored == [f"user: My colour? {tag}\nassistant: Teal ({tag})."]  # the user's words, no memory


def test_reflect_mode_and_options_reach_the_core(bank: Bank, inputs: ModelInputs) -> None:
    bank.seed(FACT)
    chain = RunnableWithHindsight(
        fake("ok"),
        bank_id=bank.bank_id,
        hindsight_api_url=bank.url,
        use_reflect=True,
        store_conversations=False,
    )
    out = chain.invoke("What colour do I like?", config(inputs))
    meta = out.response_metadata["hindsight"]
    assert meta["mode"] == "reflect"
    assert meta["error"] is None
    assert meta["storage_status"] == "skipped"


def test_per_call_options_from_configurable(bank: Bank, inputs: ModelInputs) -> None:
    bank.seed(FACT)
    chain = RunnableWithHindsight(fake("ok"), bank_id=bank.bank_id, hindsight_api_url=bank.url)
    out = chain.invoke(
        "What colour do I like?",
        config(inputs, hindsight_inject_memories=False, hindsight_store_conversations=False),
    )
    assert out.response_metadata["hindsight"]["skipped_reason"] == "inject_memories is off"
    assert not any(MEMORY_OPEN in text for text in inputs.texts)


# --------------------------------------------------------------------------------------- streaming


def test_stream_injects_and_stores_after_the_last_chunk(bank: Bank, inputs: ModelInputs) -> None:
    bank.seed(FACT)
    tag = marker()
    chain = RunnableWithHindsight(
        fake(f"Teal is your colour {tag}"), bank_id=bank.bank_id, hindsight_api_url=bank.url
    )

    stream = chain.stream(f"What colour do I like? {tag}", config(inputs))
    first = next(stream)
    assert isinstance(first, AIMessageChunk)
    assert first.response_metadata["hindsight"]["injected"] is True
    record = get_last_injection_debug()
    assert record is not None
    assert record.injected
    status_while_streaming = record.storage_status
    rest = list(stream)
    assert status_while_streaming == "not stored"  # nothing is stored while the stream runs
    assert len(rest) > 1
    assert record.storage_status in ("queued", "stored")

    assert "".join(c.text for c in [first, *rest]) == f"Teal is your colour {tag}"
    assert_saw_memory(inputs)
    assert bank.stored(tag) == [f"user: What colour do I like? {tag}\nassistant: Teal is your colour {tag}"]


async def test_astream_injects_and_stores_after_the_last_chunk(bank: Bank, inputs: ModelInputs) -> None:
    bank.seed(FACT)
    tag = marker()
    chain = RunnableWithHindsight(
        fake(f"Teal is your colour {tag}"), bank_id=bank.bank_id, hindsight_api_url=bank.url
    )

    chunks: list[AIMessageChunk] = []
    async for chunk in chain.astream(f"What colour do I like? {tag}", config(inputs)):
        if not chunks:
            record = get_last_injection_debug()
            assert record is not None
            assert record.storage_status == "not stored"
        chunks.append(chunk)

    assert "".join(c.text for c in chunks) == f"Teal is your colour {tag}"
    assert_saw_memory(inputs)
    assert bank.stored(tag) == [f"user: What colour do I like? {tag}\nassistant: Teal is your colour {tag}"]


def test_stream_closed_early_stores_what_was_received(bank: Bank, inputs: ModelInputs) -> None:
    tag = marker()
    chain = RunnableWithHindsight(
        fake(f"{tag} one two three four"), bank_id=bank.bank_id, hindsight_api_url=bank.url
    )
    stream = cast(
        "Generator[AIMessageChunk, None, None]", chain.stream(f"Count for me {tag}", config(inputs))
    )
    received = next(stream).text + next(stream).text
    stream.close()

    assert received == f"{tag} "
    assert bank.stored(tag) == [f"user: Count for me {tag}\nassistant: {tag}"]


async def test_astream_closed_early_stores_what_was_received(bank: Bank, inputs: ModelInputs) -> None:
    tag = marker()
    chain = RunnableWithHindsight(
        fake(f"{tag} one two three four"), bank_id=bank.bank_id, hindsight_api_url=bank.url
    )
    stream = cast(
        "AsyncGenerator[AIMessageChunk, None]", chain.astream(f"Count for me {tag}", config(inputs))
    )
    first = await stream.__anext__()
    await stream.aclose()

    assert first.text == tag
    assert bank.stored(tag) == [f"user: Count for me {tag}\nassistant: {tag}"]


def test_model_error_stores_nothing(bank: Bank) -> None:
    tag = marker()

    def broken(_: Any) -> Any:
        raise RuntimeError("model down")

    chain = RunnableWithHindsight(RunnableLambda(broken), bank_id=bank.bank_id, hindsight_api_url=bank.url)
    with pytest.raises(RuntimeError, match="model down"):
        chain.invoke(f"Hello {tag}")
    record = get_last_injection_debug()
    assert record is not None
    assert record.storage_status == "not stored"
    with pytest.raises(RuntimeError, match="model down"):
        list(chain.stream(f"Hello again {tag}"))
    assert bank.stored(tag) == []


def test_mission_and_bank_name_set_up_the_bank_on_first_use(
    hindsight_server: str, bank_id: str, inputs: ModelInputs
) -> None:
    chain = RunnableWithHindsight(
        fake("ok"),
        bank_id=bank_id,
        hindsight_api_url=hindsight_server,
        mission="Remember the user's food allergies.",
        bank_name="Waiter",
        store_conversations=False,
    )
    chain.invoke("hello", config(inputs))
    with HindsightClient(hindsight_server) as client:
        assert client.get_bank(bank_id).reflect_mission == "Remember the user's food allergies."
        assert any(b.bank_id == bank_id and b.name == "Waiter" for b in client.list_banks(query=bank_id))


# ------------------------------------------------------------------------------------------ batch


def test_batch_each_input_gets_its_banks_memories(make_bank: Callable[[], Bank]) -> None:
    alice, bob = make_bank(), make_bank()
    alice.seed("Alice keeps bees in her garden.")
    bob.seed("Bob restores vintage motorbikes.")
    tag = marker()
    chain = RunnableWithHindsight(fake(f"Noted {tag}."), hindsight_api_url=alice.url)
    seen_alice, seen_bob = ModelInputs(), ModelInputs()

    outs = chain.batch(
        [f"What is my hobby? alice {tag}", f"What is my hobby? bob {tag}"],
        [config(seen_alice, **{BANK_KEY: alice.bank_id}), config(seen_bob, **{BANK_KEY: bob.bank_id})],
    )

    assert [o.content for o in outs] == [f"Noted {tag}."] * 2
    assert_saw_memory(seen_alice, "Alice keeps bees in her garden.")
    assert_saw_memory(seen_bob, "Bob restores vintage motorbikes.")
    assert "motorbikes" not in seen_alice.texts[0]
    assert "bees" not in seen_bob.texts[0]
    assert alice.stored(tag) == [f"user: What is my hobby? alice {tag}\nassistant: Noted {tag}."]
    assert bob.stored(tag) == [f"user: What is my hobby? bob {tag}\nassistant: Noted {tag}."]


async def test_abatch_each_input_gets_its_banks_memories(make_bank: Callable[[], Bank]) -> None:
    alice, bob = make_bank(), make_bank()
    alice.seed("Alice keeps bees in her garden.")
    bob.seed("Bob restores vintage motorbikes.")
    tag = marker()
    chain = RunnableWithHindsight(fake(f"Noted {tag}."), hindsight_api_url=alice.url)
    seen_alice, seen_bob = ModelInputs(), ModelInputs()

    await chain.abatch(
        [f"My hobby? alice {tag}", f"My hobby? bob {tag}"],
        [config(seen_alice, **{BANK_KEY: alice.bank_id}), config(seen_bob, **{BANK_KEY: bob.bank_id})],
    )

    assert_saw_memory(seen_alice, "Alice keeps bees in her garden.")
    assert_saw_memory(seen_bob, "Bob restores vintage motorbikes.")
    assert alice.stored(tag) == [f"user: My hobby? alice {tag}\nassistant: Noted {tag}."]
    assert bob.stored(tag) == [f"user: My hobby? bob {tag}\nassistant: Noted {tag}."]


async def test_concurrent_invocations_with_different_banks_stay_isolated(
    make_bank: Callable[[], Bank],
) -> None:
    alice, bob = make_bank(), make_bank()
    alice.seed("Alice keeps bees in her garden.")
    bob.seed("Bob restores vintage motorbikes.")
    tag = marker()
    chain = RunnableWithHindsight(fake(f"Sure {tag}."), hindsight_api_url=alice.url)
    seen = {"alice": ModelInputs(), "bob": ModelInputs()}
    banks = {"alice": alice, "bob": bob}

    async def ask(name: str) -> tuple[str, Any]:
        await chain.ainvoke(
            f"Tell me about my hobby, {name} {tag}", config(seen[name], **{BANK_KEY: banks[name].bank_id})
        )
        return name, get_last_injection_debug()  # this task's own record

    results = await asyncio.gather(*(ask(n) for n in ("alice", "bob", "alice", "bob")))

    for name, record in results:
        assert record is not None
        assert record.bank_id == banks[name].bank_id
        assert name in (record.query or "")
    assert_saw_memory(seen["alice"], "Alice keeps bees in her garden.", calls=2)
    assert_saw_memory(seen["bob"], "Bob restores vintage motorbikes.", calls=2)
    assert not any("motorbikes" in t for t in seen["alice"].texts)
    assert not any("bees" in t for t in seen["bob"].texts)
    assert {t.split("\n")[0] for t in alice.stored(tag)} == {f"user: Tell me about my hobby, alice {tag}"}
    assert {t.split("\n")[0] for t in bob.stored(tag)} == {f"user: Tell me about my hobby, bob {tag}"}


# ------------------------------------------------------------------------------------- composition


def test_inside_a_prompt_model_chain(bank: Bank, inputs: ModelInputs) -> None:
    bank.seed(FACT)
    tag = marker()
    prompt = ChatPromptTemplate.from_messages([("system", "You are a poet."), ("human", "{question}")])
    memory_model = RunnableWithHindsight(
        fake(f"Teal {tag}"), bank_id=bank.bank_id, hindsight_api_url=bank.url
    )
    chain = prompt | memory_model | StrOutputParser()

    assert chain.invoke({"question": f"My colour? {tag}"}, {"callbacks": [inputs]}) == f"Teal {tag}"
    assert "".join(chain.stream({"question": f"My colour, streamed? {tag}"}, {"callbacks": [inputs]})) == (
        f"Teal {tag}"
    )

    assert_saw_memory(inputs, calls=2)
    assert all(call[0].text.startswith("You are a poet.") for call in inputs.calls)
    assert sorted(bank.exchanges(tag)) == [
        f"user: My colour, streamed? {tag}\nassistant: Teal {tag}",
        f"user: My colour? {tag}\nassistant: Teal {tag}",
    ]


def test_wrapping_a_chain_with_memories_key(bank: Bank, inputs: ModelInputs) -> None:
    bank.seed(FACT)
    tag = marker()
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Known about the user:\n{memories}"), ("human", "{question}")]
    )
    chain = RunnableWithHindsight(
        prompt | fake(f"Teal {tag}") | StrOutputParser(),
        input_messages_key="question",
        memories_key="memories",
        bank_id=bank.bank_id,
        hindsight_api_url=bank.url,
    )

    assert chain.invoke({"question": f"My colour? {tag}"}, {"callbacks": [inputs]}) == f"Teal {tag}"

    [call] = inputs.calls
    assert call[0].text.startswith("Known about the user:\n" + MEMORY_OPEN)
    assert FACT in call[0].text
    assert call[1].text == f"My colour? {tag}"  # the question itself is left alone
    assert bank.stored(tag) == [f"user: My colour? {tag}\nassistant: Teal {tag}"]


async def test_wrapping_a_chain_with_a_messages_placeholder(bank: Bank, inputs: ModelInputs) -> None:
    bank.seed(FACT)
    tag = marker()
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Be brief."), MessagesPlaceholder("history"), ("human", "Answer now.")]
    )
    chain = RunnableWithHindsight(
        prompt | fake(f"Teal {tag}"),
        input_messages_key="history",
        bank_id=bank.bank_id,
        hindsight_api_url=bank.url,
    )

    out = await chain.ainvoke(
        {"history": [HumanMessage(f"What colour do I like? {tag}")]}, {"callbacks": [inputs]}
    )

    assert out.response_metadata["hindsight"]["injected"] is True
    [call] = inputs.calls
    # The block was injected into the history (as a system message at its top), the prompt's own
    # system message is unchanged.
    assert call[0].text == "Be brief."
    assert MEMORY_OPEN in call[1].text
    assert FACT in call[1].text
    assert bank.stored(tag) == [f"user: What colour do I like? {tag}\nassistant: Teal {tag}"]


def test_dict_output_with_output_messages_key(bank: Bank, inputs: ModelInputs) -> None:
    bank.seed(FACT)
    tag = marker()
    chain = RunnableWithHindsight(
        RunnableParallel(answer=fake(f"Teal is it {tag}"), source=RunnableLambda(lambda _: "memory")),
        output_messages_key="answer",
        bank_id=bank.bank_id,
        hindsight_api_url=bank.url,
    )

    out = chain.invoke(f"My colour? {tag}", {"callbacks": [inputs]})
    assert out["source"] == "memory"
    assert out["answer"].response_metadata["hindsight"]["injected"] is True
    chunks = list(chain.stream(f"My colour, streamed? {tag}", {"callbacks": [inputs]}))
    assert "".join(c["answer"].text for c in chunks if "answer" in c) == f"Teal is it {tag}"

    assert_saw_memory(inputs, calls=2)
    assert sorted(bank.exchanges(tag)) == [
        f"user: My colour, streamed? {tag}\nassistant: Teal is it {tag}",
        f"user: My colour? {tag}\nassistant: Teal is it {tag}",
    ]


def test_with_config_and_messages_list_model(bank: Bank, inputs: ModelInputs) -> None:
    bank.seed(FACT)
    tag = marker()
    chain = RunnableWithHindsight(
        FakeMessagesListChatModel(responses=[AIMessage(f"Teal {tag}")]), hindsight_api_url=bank.url
    ).with_config(configurable={BANK_KEY: bank.bank_id}, callbacks=[inputs])

    assert chain.invoke(f"My colour? {tag}").content == f"Teal {tag}"
    assert_saw_memory(inputs)


def test_runs_nest_under_the_wrapper(bank: Bank) -> None:
    from langchain_core.tracers.context import collect_runs

    chain = RunnableWithHindsight(fake("ok"), bank_id=bank.bank_id, hindsight_api_url=bank.url)
    with collect_runs() as collector:
        chain.invoke("hello")
        list(chain.stream("hello"))
    roots = collector.traced_runs
    assert [r.name for r in roots] == ["RunnableWithHindsight", "RunnableWithHindsight"]
    for root in roots:
        assert [c.run_type for c in root.child_runs] == ["llm"]


# ---------------------------------------------------------------------------- configuration errors


def test_bad_option_fails_at_construction_naming_it() -> None:
    with pytest.raises(ConfigurationError, match=r"'budgit'.*did you mean 'budget'"):
        RunnableWithHindsight(fake("ok"), budgit="high")
    with pytest.raises(ConfigurationError, match="budget"):
        RunnableWithHindsight(fake("ok"), budget="enormous")
    with pytest.raises(ConfigurationError, match="memories_key needs input_messages_key"):
        RunnableWithHindsight(fake("ok"), memories_key="memories")


def test_missing_bank_names_the_config_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HINDSIGHT_BANK_ID", raising=False)
    chain = RunnableWithHindsight(fake("ok"))
    with pytest.raises(ConfigurationError, match="hindsight_bank_id"):
        chain.invoke("hello")
    with pytest.raises(ConfigurationError, match=r"hindsight_budget.*budget"):
        chain.invoke("hello", {"configurable": {BANK_KEY: "b", "hindsight_budget": "enormous"}})


def test_config_specs_declare_bank_and_session() -> None:
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | RunnableWithHindsight(
        fake("ok"), bank_id="x"
    )
    ids = {spec.id for spec in chain.config_specs}
    assert {BANK_KEY, SESSION_KEY} <= ids


def test_dict_input_without_input_messages_key_is_explained(bank: Bank) -> None:
    chain = RunnableWithHindsight(fake("ok"), bank_id=bank.bank_id, hindsight_api_url=bank.url)
    with pytest.raises(ConfigurationError, match="input_messages_key"):
        chain.invoke({"question": "hi"})


# ------------------------------------------------------------------------------- failure policy


def test_hindsight_down_the_chain_still_answers(closed_port_url: str, inputs: ModelInputs) -> None:
    storage = StorageWorker(exit_timeout=0)
    chain = RunnableWithHindsight(
        fake("Still here."), bank_id="any", hindsight_api_url=closed_port_url, max_retries=0, storage=storage
    )
    try:
        out = chain.invoke("Hello?", config(inputs))
        streamed = "".join(c.text for c in chain.stream("Hello again?", config(inputs)))
    finally:
        storage.close(timeout=0)

    assert out.content == "Still here."
    assert streamed == "Still here."
    assert not any(MEMORY_OPEN in text for text in inputs.texts)
    meta = out.response_metadata["hindsight"]
    assert meta["injected"] is False
    assert meta["error"].startswith("APIConnectionError")
    record = get_last_injection_debug()
    assert record is not None
    assert record.error is not None
    assert "APIConnectionError" in record.error


async def test_hindsight_down_async_and_strict(closed_port_url: str) -> None:
    chain = RunnableWithHindsight(
        fake("Still here."),
        bank_id="any",
        hindsight_api_url=closed_port_url,
        max_retries=0,
        store_conversations=False,
    )
    out = await chain.ainvoke("Hello?")
    assert out.content == "Still here."
    assert "APIConnectionError" in out.response_metadata["hindsight"]["error"]

    from hindsight_core import APIConnectionError

    strict = RunnableWithHindsight(
        fake("x"), bank_id="any", hindsight_api_url=closed_port_url, max_retries=0, strict=True
    )
    with pytest.raises(APIConnectionError):
        await strict.ainvoke("Hello?")


# ----------------------------------------------------------------------------------- deprecations


@pytest.mark.filterwarnings(
    "error::DeprecationWarning", "error::PendingDeprecationWarning", "error::FutureWarning"
)
async def test_no_deprecation_warnings(bank: Bank) -> None:
    prompt = ChatPromptTemplate.from_messages([("human", "{q}")])
    chain = RunnableWithHindsight(fake("ok"), bank_id=bank.bank_id, hindsight_api_url=bank.url)
    composed = prompt | chain | StrOutputParser()
    composed.invoke({"q": "hi"})
    list(composed.stream({"q": "hi"}))
    composed.batch([{"q": "a"}, {"q": "b"}])
    await composed.ainvoke({"q": "hi"})
    [c async for c in composed.astream({"q": "hi"})]
    await composed.abatch([{"q": "a"}])
    chain.with_config(configurable={SESSION_KEY: "s"}).invoke("hi")
    assert chain.config_specs
    bank.settle()
