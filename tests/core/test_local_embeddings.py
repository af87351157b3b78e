"""The local server's embeddings: the WordLlama model in the server's environment, the hashed fallback, and
recall through the real server of facts asked for in other words."""

from __future__ import annotations

import base64
import math
import struct
import sys
from collections.abc import Iterator

import httpx
import pytest

from hindsight_core import HindsightClient
from hindsight_core.local import embeddings
from tests.embeddings_endpoint import model_embeddings, spawn_embeddings

SISTER = "My sister's name is Ines and she plays the cello."
NURSE = "I work as a nurse at the Santa Maria hospital."
OTHERS = [
    "We adopted a beagle puppy called Biscuit last spring.",
    "I drive a blue Toyota Corolla to the office.",
    "I'm vegetarian and I haven't eaten meat for ten years.",
    "My favourite author is Ursula K. Le Guin.",
]


def _embed(url: str, texts: list[str], **extra: str) -> list[list[float]]:
    response = httpx.post(f"{url}/embeddings", json={"input": texts, **extra}, timeout=30.0, trust_env=False)
    assert response.status_code == 200, response.text
    return [item["embedding"] for item in response.json()["data"]]


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def model_url() -> Iterator[str]:
    with model_embeddings() as url:
        yield url


@pytest.mark.server
def test_the_model_puts_a_question_in_other_words_next_to_its_fact(model_url: str) -> None:
    questions = ["What instrument does my sister play?", "What is my job?"]
    vectors = _embed(model_url, [*questions, SISTER, NURSE, *OTHERS])
    assert all(len(v) == 256 for v in vectors)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-6) for v in vectors)
    instrument, job, facts = vectors[0], vectors[1], vectors[2:]
    assert max(range(len(facts)), key=lambda i: _cosine(instrument, facts[i])) == 0  # the cello
    assert max(range(len(facts)), key=lambda i: _cosine(job, facts[i])) == 1  # the nurse
    # The words alone do not do it: the hashed vectors rank another fact first for "What is my job?".
    hashed = [embeddings.embed(text) for text in [SISTER, NURSE, *OTHERS]]
    job_hashed = embeddings.embed("What is my job?")
    assert max(range(len(hashed)), key=lambda i: _cosine(job_hashed, hashed[i])) != 1


@pytest.mark.server
def test_the_model_endpoint_speaks_the_openai_wire_format(model_url: str) -> None:
    info = httpx.get(f"{model_url}/models", timeout=10.0, trust_env=False).json()["data"][0]
    assert info == {"id": embeddings.WORDLLAMA_MODEL, "object": "model", "dimensions": 256}
    floats = _embed(model_url, [SISTER, ""])
    assert math.isclose(math.sqrt(sum(x * x for x in floats[1])), 1.0)  # an empty text still has a vector
    raw = base64.b64decode(_embed(model_url, [SISTER], encoding_format="base64")[0])  # type: ignore[arg-type]
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(decoded, floats[0], strict=True))
    single = httpx.post(f"{model_url}/embeddings", json={"input": SISTER}, timeout=10.0, trust_env=False)
    assert single.json()["model"] == embeddings.WORDLLAMA_MODEL
    assert httpx.post(f"{model_url}/embeddings", json={"input": [1]}, timeout=10.0).status_code == 400


def test_without_the_model_the_endpoint_falls_back_to_hashed_vectors_and_says_so() -> None:
    # This interpreter (the workspace's) has no wordllama: "auto" must fall back, loudly, not die.
    with spawn_embeddings(sys.executable) as (url, printed):
        assert "FALLING BACK to hashed bag-of-words vectors" in printed
        assert "No module named 'wordllama'" in printed
        assert f"model={embeddings.HASHED_MODEL} dimensions={embeddings.DIMENSIONS}" in printed
        assert _embed(url, ["Alice likes tea"])[0] == embeddings.embed("Alice likes tea")


def test_hashed_vectors_can_be_asked_for() -> None:
    with spawn_embeddings(sys.executable, "--model", "hashed") as (_, printed):
        assert "FALLING BACK" not in printed
        assert "as asked" in printed


@pytest.mark.server
def test_the_session_server_recalls_facts_asked_for_in_other_words(
    hindsight_server: str, bank_id: str
) -> None:
    with HindsightClient(hindsight_server) as client:
        client.create_bank(bank_id, extraction_mode="chunks", enable_observations=False)
        client.retain_batch(bank_id, [{"content": fact} for fact in [SISTER, NURSE, *OTHERS]])
        instrument = client.recall(bank_id, "What instrument does my sister play?").results
        job = client.recall(bank_id, "What is my job?").results
        client.delete_bank(bank_id)
    assert instrument[0].text == SISTER
    assert NURSE in [result.text for result in job[:2]]
