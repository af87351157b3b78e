"""The demo's offline stand-in model: it answers from the injected memories, chosen by meaning."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hindsight_core.pipeline import MEMORY_CLOSE, MEMORY_OPEN
from hindsight_litellm.offline_model import (
    LABEL,
    Embed,
    answer,
    choose,
    http_embed,
    memories_in,
    question_parts,
    register,
)
from tests.embeddings_endpoint import model_embeddings

SISTER = "My sister's name is Ines and she plays the cello."
NURSE = "I work as a nurse at the Santa Maria hospital."


def _block(*lines: str) -> str:
    body = "\n".join(f"{i}. [WORLD] {line}" for i, line in enumerate(lines, 1))
    return f"{MEMORY_OPEN}\nReference data.\n\n# Relevant Memories\n{body}\n{MEMORY_CLOSE}"


def _messages(question: str, *memories: str) -> list[dict[str, str]]:
    messages = [{"role": "user", "content": question}]
    if memories:
        messages.insert(0, {"role": "system", "content": _block(*memories)})
    return messages


@pytest.fixture(scope="module")
def embed() -> Iterator[Embed]:
    with model_embeddings() as url:
        yield http_embed(url)


@pytest.mark.server
def test_it_answers_a_question_in_other_words_with_the_memory_that_means_it(embed: Embed) -> None:
    # The server's order puts the wrong memory first; shared words cannot tell them apart.
    reply = answer(_messages("What is my job?", SISTER, NURSE), embed)
    assert reply == f'From memory, you told me: "{NURSE}" {LABEL}'
    reply = answer(_messages("What instrument does my sister play?", NURSE, SISTER), embed)
    assert reply == f'From memory, you told me: "{SISTER}" {LABEL}'
    chosen = choose("What is my job?", [SISTER, NURSE], embed)
    assert [(c.memory, c.how) for c in chosen] == [(NURSE, "meaning")]
    assert 0 < chosen[0].score <= 1


@pytest.mark.server
def test_each_part_of_a_question_gets_its_own_memory(embed: Embed) -> None:
    memories = [
        "For testing I always use pytest, and I like type hints everywhere.",
        "I'm building a FastAPI application for a bakery's online orders.",
        "I have two cats, Miso and Tofu.",
    ]
    chosen = choose("What am I building, and which testing framework do I use?", memories, embed)
    assert [c.memory for c in chosen] == [memories[1], memories[0]]


def test_question_parts() -> None:
    assert question_parts("What am I building, and which testing framework do I use?") == [
        "What am I building",
        "which testing framework do I use",
    ]
    assert question_parts("What is my job?") == ["What is my job"]
    assert question_parts("Do I like tea and coffee?") == ["Do I like tea and coffee"]


def test_an_injected_block_is_never_answered_with_nothing() -> None:
    # No embeddings and no shared word: the server's best match is quoted, not "nothing in memory".
    reply = answer(_messages("What is my job?", NURSE, SISTER))
    assert reply == f'From memory, you told me: "{NURSE}" {LABEL}'
    assert "nothing in memory" in answer(_messages("What is my job?"))  # no block: honest
    only_questions = answer(_messages("What is my job?", "What instrument does my sister play?"))
    assert "nothing in memory" not in only_questions
    assert "nothing you told me that I can quote" in only_questions


def test_shared_words_rank_when_no_embeddings_are_known() -> None:
    chosen = choose("Where does my mother live?", [SISTER, "My mother lives in Lisbon."])
    assert [(c.memory, c.how) for c in chosen] == [("My mother lives in Lisbon.", "shared words")]


def test_an_unreachable_endpoint_falls_back_to_words() -> None:
    dead = http_embed("http://127.0.0.1:9/v1", timeout=0.5)
    chosen = choose("Where does my mother live?", [SISTER, "My mother lives in Lisbon."], dead)
    assert chosen[0].how == "shared words"


def test_memories_keep_what_the_user_said_without_boilerplate_or_questions() -> None:
    block = _block(
        f"user: {SISTER} assistant: Thanks, noted. {LABEL}",
        "user: What is my job? assistant: I have nothing in memory about that yet.",
        NURSE,
    )
    assert memories_in(block) == [SISTER, NURSE]


def test_statements_are_acknowledged() -> None:
    assert answer(_messages(SISTER, NURSE)) == f"Noted. {LABEL}"


async def test_it_runs_as_a_litellm_model_sync_and_async() -> None:
    import litellm

    register()
    messages = _messages("Where does my mother live?", SISTER, "My mother lives in Lisbon.")
    sync = litellm.completion(model="hindsight-offline/test", messages=messages)
    asynchronous = await litellm.acompletion(model="hindsight-offline/test", messages=messages)
    expected = f'From memory, you told me: "My mother lives in Lisbon." {LABEL}'
    assert sync.choices[0].message.content == expected
    assert asynchronous.choices[0].message.content == expected
