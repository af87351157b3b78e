"""An offline stand-in for an LLM, for the demo when no provider key is available.

It is a LiteLLM custom provider (``hindsight-offline/<anything>``): the call goes through LiteLLM exactly
as a real one would, memory injection included. It does not generate language. To a question it answers
with what the user said in the injected memory block, choosing for each part of the question ("What am I
building, and which framework do I use?" has two) the memory closest in meaning, by the same embeddings
the local server uses when their endpoint is known, else by shared words, else in the server's recall
order. Statements get a short acknowledgement. Every reply says it comes from the offline model.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from hindsight_core.pipeline import MEMORY_CLOSE, MEMORY_OPEN, content_text

__all__ = [
    "LABEL",
    "OFFLINE_PROVIDER",
    "Choice",
    "Embed",
    "answer",
    "choose",
    "http_embed",
    "is_question",
    "memories_in",
    "question_parts",
    "register",
]

OFFLINE_PROVIDER = "hindsight-offline"
LABEL = "(offline demo model)"
Embed = Callable[[list[str]], list[list[float]]]
"""Texts to unit vectors."""

_WORD = re.compile(r"[a-z0-9']+")
_MEMORY_LINE = re.compile(r"^\d+\. \[[A-Z ]+\] (.+)$")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_SPEAKER = re.compile(r"\b(user|assistant): ")
_QUESTION_WORDS = r"what|which|who|whom|whose|where|when|why|how|do|does|did|is|are|am|can|could|will|would"
_PARTS = re.compile(rf"(?:,|;|\?)?\s+(?:and|also|plus)\s+(?=(?:{_QUESTION_WORDS})\b)|[;?]\s+", re.IGNORECASE)
_STOP = frozenset(
    """a an and are as at be do does did for from have i i'm in is it its me my of on or so that the this to
    was what which who why how you your we our about any know anything remember tell""".split()
)


@dataclass(frozen=True)
class Choice:
    """The memory chosen for one part of a question, and why."""

    part: str
    memory: str
    score: float
    how: Literal["meaning", "shared words", "recall order"]


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def is_question(text: str) -> bool:
    """Whether ``text`` asks something (ends with a question mark)."""
    return text.rstrip().endswith("?")


def memories_in(text: str) -> list[str]:
    """What the user said, sentence by sentence, in the memory lines of the blocks in ``text``, in order.

    Stored conversations read ``user: ... assistant: ...``: only the user's part is kept, and questions
    are left out (a question is not something the user told).
    """
    found: list[str] = []
    for block in text.split(MEMORY_OPEN)[1:]:
        for line in block.split(MEMORY_CLOSE, 1)[0].splitlines():
            match = _MEMORY_LINE.match(line.strip())
            if not match:
                continue
            parts = _SPEAKER.split(match.group(1))
            said = [parts[i + 1] for i in range(1, len(parts) - 1, 2) if parts[i] == "user"] or [parts[0]]
            for piece in _SENTENCE.split(" ".join(said)):
                sentence = piece.strip()
                if sentence and LABEL not in sentence and not is_question(sentence) and sentence not in found:
                    found.append(sentence)
    return found


def question_parts(question: str) -> list[str]:
    """The separate questions in ``question`` ("What X, and which Y?" is two)."""
    parts = [part.strip(" ,;?") for part in _PARTS.split(question.strip())]
    return [part for part in parts if part] or [question.strip()]


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def _vectors(embed: Embed | None, texts: list[str]) -> list[list[float]] | None:
    if embed is None:
        return None
    try:
        vectors = embed(texts)
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None  # the endpoint went away: rank by words instead
    return vectors if len(vectors) == len(texts) else None


def choose(question: str, memories: Sequence[str], embed: Embed | None = None) -> list[Choice]:
    """For each part of ``question``, the best of ``memories`` (given in recall order) and why."""
    if not memories:
        return []
    parts = question_parts(question)
    vectors = _vectors(embed, [*parts, *memories])
    chosen: list[Choice] = []
    for index, part in enumerate(parts):
        if vectors is not None:
            scores = [_cosine(vectors[index], vectors[len(parts) + i]) for i in range(len(memories))]
            how: Literal["meaning", "shared words", "recall order"] = "meaning"
        else:
            asked = _words(part)
            scores = [float(len(asked & _words(memory))) for memory in memories]
            how = "shared words" if max(scores) > 0 else "recall order"
        best = max(range(len(memories)), key=lambda i: (scores[i], -i))  # ties: the server's order
        if all(c.memory != memories[best] for c in chosen):
            chosen.append(Choice(part, memories[best], round(scores[best], 3), how))
    return chosen


def _question(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            text = content_text(message.get("content"))
            if MEMORY_OPEN in text:  # prepend_user mode: the question follows the block
                text = text.split(MEMORY_CLOSE, 1)[-1]
            return text.strip()
    return ""


def answer(messages: list[dict[str, Any]], embed: Embed | None = None) -> str:
    """The offline model's reply to ``messages``."""
    question = _question(messages)
    if not is_question(question):
        return f"Noted. {LABEL}"
    block = "\n".join(content_text(message.get("content")) for message in messages)
    if MEMORY_OPEN not in block:
        return f"I have nothing in memory about that yet. {LABEL}"
    chosen = choose(question, memories_in(block), embed)
    if not chosen:
        return f"The memories recalled for this hold nothing you told me that I can quote. {LABEL}"
    quoted = " ".join(f'"{choice.memory}"' for choice in chosen)
    return f"From memory, you told me: {quoted} {LABEL}"


def http_embed(base_url: str, timeout: float = 5.0) -> Embed:
    """Embeddings from an OpenAI-compatible endpoint (``{base_url}/embeddings``), e.g. the local server's."""
    url = base_url.rstrip("/") + "/embeddings"

    def embed(texts: list[str]) -> list[list[float]]:
        response = httpx.post(url, json={"input": texts, "model": "local"}, timeout=timeout, trust_env=False)
        response.raise_for_status()
        data = sorted(response.json()["data"], key=lambda item: item["index"])
        return [list(map(float, item["embedding"])) for item in data]

    return embed


def register(embed: Embed | None = None) -> None:
    """Make ``hindsight-offline/<name>`` a LiteLLM model (idempotent), ranking with ``embed`` if given."""
    import litellm
    from litellm.llms.custom_llm import CustomLLM
    from litellm.utils import custom_llm_setup

    class _OfflineModel(CustomLLM):
        def _reply(self, model: str, messages: list[dict[str, Any]]) -> Any:
            return litellm.ModelResponse(
                model=model,
                choices=[
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": answer(messages, embed)},
                    }
                ],
            )

        def completion(self, model: str, messages: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
            return self._reply(model, messages)

        async def acompletion(
            self, model: str, messages: list[dict[str, Any]], *args: Any, **kwargs: Any
        ) -> Any:
            # Ranking may call the embeddings endpoint: off the event loop.
            return await asyncio.to_thread(self._reply, model, messages)

    providers = [p for p in (litellm.custom_provider_map or []) if p.get("provider") != OFFLINE_PROVIDER]
    litellm.custom_provider_map = [
        *providers,
        {"provider": OFFLINE_PROVIDER, "custom_handler": _OfflineModel()},
    ]
    custom_llm_setup()  # type: ignore[no-untyped-call]
