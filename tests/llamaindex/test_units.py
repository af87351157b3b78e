"""HindsightMemory without a server: turn detection, ReAct reduction, where the memory block goes,
configuration, and the tokenizer working offline."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, ImageBlock, MessageRole, TextBlock, ToolCallBlock
from llama_index.core.llms.mock import MockLLM

from hindsight_core import ConfigurationError
from llama_index.memory.hindsight import HindsightMemory, HindsightMemoryBlock, InsertMethod
from llama_index.memory.hindsight._messages import TurnTracker, answer_text, insert_memory
from tests.helpers import closed_port_url

BLOCK = "<hindsight_memories>\nreference\n</hindsight_memories>"


def msg(role: str, text: str = "", **kwargs: Any) -> ChatMessage:
    return ChatMessage(role=role, content=text, **kwargs)


# ------------------------------------------------------------------------------------------ answers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Paris.", "Paris."),
        ("Thought: I can answer.\nAnswer: Paris.", "Paris."),
        (
            'Thought: look it up\nAction: search\nAction Input: {"q": "x"}\nObservation: Paris\n'
            "Thought: I can answer without more tools.\nAnswer: It is Paris.\nReally.",
            "It is Paris.\nReally.",
        ),
        ('Thought: look it up\nAction: search\nAction Input: {"q": "x"}', None),
        ("Thought: (Implicit) done\nAnswer (Starts With): Par ...", "Par ..."),
        ("   ", None),
        ("The Answer: is in the text, no ReAct here", "The Answer: is in the text, no ReAct here"),
    ],
)
def test_answer_text(text: str, expected: str | None) -> None:
    assert answer_text(msg("assistant", text)) == expected


def test_tool_calling_messages_are_not_answers() -> None:
    with_blocks = ChatMessage(
        role="assistant",
        blocks=[
            TextBlock(text="Let me check"),
            ToolCallBlock(tool_call_id="1", tool_name="f", tool_kwargs={}),
        ],
    )
    with_kwargs = msg("assistant", "checking", additional_kwargs={"tool_calls": [{"id": "1"}]})
    assert answer_text(with_blocks) is None
    assert answer_text(with_kwargs) is None


def test_turn_tracker() -> None:
    tracker = TurnTracker()
    assert tracker.add(msg("system", "be nice")) is None
    assert tracker.add(msg("assistant", "Hello! How can I help?")) is None  # no question yet
    assert tracker.add(msg("user", "first")) is None
    assert tracker.add(msg("user", "second")) is None
    assert tracker.add(msg("assistant", "", additional_kwargs={"tool_calls": [{"id": "1"}]})) is None
    assert tracker.add(msg("tool", "result")) is None
    turn = tracker.add(msg("assistant", "done"))
    assert turn is not None
    assert [m.content for m in turn.user] == ["first", "second"]
    assert turn.answer == "done"
    assert tracker.add(msg("assistant", "and another thing")) is None  # same turn, already complete

    # A turn that never got an answer is dropped when the next question comes.
    tracker.add(msg("user", "unanswered"))
    tracker.add(msg("tool", "result"))
    tracker.add(msg("user", "next"))
    turns = tracker.add_all([msg("assistant", "Thought: ok\nAnswer: fine")])
    assert [([m.content for m in t.user], t.answer) for t in turns] == [(["next"], "fine")]


# ------------------------------------------------------------------------------------------ insertion


def test_system_insertion_merges_into_the_first_system_message_without_mutating() -> None:
    history = [msg("system", "Be brief."), msg("user", "hi")]
    result = insert_memory(history, BLOCK, InsertMethod.SYSTEM)
    assert result[0].content == f"Be brief.\n\n{BLOCK}"
    assert result[1] is history[1]
    assert history[0].content == "Be brief."


def test_user_insertion_after_the_question_without_mutating() -> None:
    history = [msg("system", "Be brief."), msg("user", "hi")]
    result = insert_memory(history, BLOCK, InsertMethod.USER, after_question=True)
    assert result[-1].content == f"hi\n\n{BLOCK}"
    assert result[0] is history[0]
    assert history[1].content == "hi"
    before = insert_memory(history, BLOCK, InsertMethod.USER)
    assert before[-1].content == f"{BLOCK}\n\nhi"


def test_system_insertion_adds_a_system_message_at_the_top() -> None:
    history = [msg("user", "hi")]
    result = insert_memory(history, BLOCK, InsertMethod.SYSTEM)
    assert [(m.role, m.content) for m in result] == [(MessageRole.SYSTEM, BLOCK), (MessageRole.USER, "hi")]
    assert len(history) == 1


def test_user_insertion() -> None:
    history = [msg("user", "old"), msg("assistant", "reply"), msg("user", "question")]
    result = insert_memory(history, BLOCK, InsertMethod.USER)
    assert result[-1].content == f"{BLOCK}\n\nquestion"
    assert history[-1].content == "question"
    # A chat engine asks before adding the question: the block comes last, right before it.
    result = insert_memory(history[:2], BLOCK, InsertMethod.USER)
    assert [(m.role, m.content) for m in result[2:]] == [(MessageRole.USER, BLOCK)]


def test_user_insertion_keeps_other_blocks() -> None:
    image = ImageBlock(url="https://example.com/cat.png")
    history = [ChatMessage(role="user", blocks=[TextBlock(text="what is this?"), image])]
    result = insert_memory(history, BLOCK, InsertMethod.USER)
    assert result[0].blocks[0] == TextBlock(text=BLOCK)
    assert result[0].blocks[2] is image
    assert len(history[0].blocks) == 2


def test_nothing_to_insert() -> None:
    history = [msg("user", "hi")]
    assert insert_memory(history, "", InsertMethod.SYSTEM) == history


# ------------------------------------------------------------------------------------------ configuration


def test_from_defaults_follows_chat_memory_buffer() -> None:
    assert HindsightMemory.from_defaults(bank_id="b").token_limit == 3000
    assert HindsightMemory.from_defaults(bank_id="b", token_limit=123).token_limit == 123
    llm = MockLLM()
    memory = HindsightMemory.from_defaults(llm=llm, bank_id="b")
    assert memory.token_limit == int(llm.metadata.context_window * 0.75)
    history = [msg("user", "hi"), msg("assistant", "hello")]
    assert HindsightMemory.from_defaults(chat_history=history, bank_id="b").get_all() == history


def test_options_are_validated_when_configured() -> None:
    with pytest.raises(ConfigurationError, match="did you mean 'budget'"):
        HindsightMemory.from_defaults(bank_id="b", budjet="low")
    with pytest.raises(ConfigurationError, match="'budget'"):
        HindsightMemory.from_defaults(bank_id="b", budget="huge")
    with pytest.raises(ConfigurationError, match="bank_id"):
        HindsightMemory.from_defaults(bank_id=" ")
    with pytest.raises(ConfigurationError, match="fact type"):
        HindsightMemoryBlock(bank_id="b", options={"fact_types": ["gossip"]})
    memory = HindsightMemory.from_defaults(bank_id="b", session_id="s", budget="low", max_memories=3)
    settings = memory.settings
    assert (settings.bank_id, settings.session_id, settings.budget, settings.max_memories) == (
        "b",
        "s",
        "low",
        3,
    )


def test_environment_supplies_the_bank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HINDSIGHT_BANK_ID", "from-env")
    assert HindsightMemory.from_defaults().settings.bank_id == "from-env"
    assert HindsightMemory.from_defaults(bank_id="explicit").settings.bank_id == "explicit"


def test_insert_method_and_injection_mode() -> None:
    assert HindsightMemory.from_defaults(bank_id="b", insert_method="user").insert_method is InsertMethod.USER
    mapped = HindsightMemory.from_defaults(bank_id="b", injection_mode="prepend_user")
    assert mapped.insert_method is InsertMethod.USER
    with pytest.raises(ConfigurationError, match="disagree"):
        HindsightMemory.from_defaults(
            bank_id="b", insert_method=InsertMethod.USER, injection_mode="system_message"
        )


def test_serialization_never_contains_the_api_key() -> None:
    memory = HindsightMemory.from_defaults(bank_id="b", api_key="sk-secret-123", budget="low")
    data = memory.to_dict()
    assert "sk-secret-123" not in repr(data)
    assert data["options"] == {"budget": "low"}
    assert data["insert_method"] == "system"


def test_no_bank_fails_open_without_io() -> None:
    memory = HindsightMemory.from_defaults(hindsight_api_url=closed_port_url(), max_retries=0)
    if memory.settings.bank_id:
        pytest.skip("HINDSIGHT_BANK_ID is set in this environment")
    memory.put(msg("user", "hi"))
    assert [m.content for m in memory.get()] == ["hi"]
    record = memory.last_debug
    assert record is not None
    assert record.error is not None
    assert "bank_id" in record.error
    memory.put(msg("assistant", "hello"))
    assert record.storage_status == "skipped"


def test_default_tokenizer_works_offline() -> None:
    """LlamaIndex's default tokenizer (tiktoken) loads the encoding shipped in llama-index-core: with
    every proxy pointing at a closed port, a download would fail."""
    dead = closed_port_url()
    env = {k: v for k, v in os.environ.items() if k != "TIKTOKEN_CACHE_DIR"}
    env.update({"HTTP_PROXY": dead, "HTTPS_PROXY": dead, "http_proxy": dead, "https_proxy": dead})
    code = (
        "from llama_index.memory.hindsight import HindsightMemory\n"
        "memory = HindsightMemory.from_defaults(bank_id='b')\n"
        "print(len(memory.tokenizer_fn('hello world')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"
