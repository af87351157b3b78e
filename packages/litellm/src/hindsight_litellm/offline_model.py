"""An offline stand-in for an LLM, for the demo when no provider key is available.

It is a LiteLLM custom provider (``hindsight-offline/<anything>``): the call goes through LiteLLM exactly
as a real one would, memory injection included. It does not generate language; it answers questions
with the lines of the injected memory block that share the most words with the question, and
acknowledges statements. Every reply says it comes from the offline model.
"""

from __future__ import annotations

import re
from typing import Any

from hindsight_core.pipeline import MEMORY_CLOSE, MEMORY_OPEN, content_text

__all__ = ["OFFLINE_PROVIDER", "answer", "register"]

OFFLINE_PROVIDER = "hindsight-offline"
LABEL = "(offline demo model)"
_WORD = re.compile(r"[a-z0-9']+")
_MEMORY_LINE = re.compile(r"^\d+\. \[[A-Z ]+\] (.+)$")
_STOP = frozenset(
    """a an and are as at be do does did for from have i i'm in is it its me my of on or so that the this to
    was what which who why how you your we our about any know anything remember tell""".split()
)


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_SPEAKER = re.compile(r"\b(user|assistant): ")


def _memories(messages: list[dict[str, Any]]) -> list[str]:
    """What the user said, sentence by sentence, in the memory lines of the injected block."""
    found: list[str] = []
    for message in messages:
        text = content_text(message.get("content"))
        if MEMORY_OPEN not in text:
            continue
        block = text.split(MEMORY_OPEN, 1)[1].split(MEMORY_CLOSE, 1)[0]
        for line in block.splitlines():
            match = _MEMORY_LINE.match(line.strip())
            if not match:
                continue
            # Stored conversations read "user: ... assistant: ...": keep what the user said.
            parts = _SPEAKER.split(match.group(1))
            said = [parts[i + 1] for i in range(1, len(parts) - 1, 2) if parts[i] == "user"] or [parts[0]]
            for piece in _SENTENCE.split(" ".join(said)):
                sentence = piece.strip()
                if sentence and LABEL not in sentence and sentence not in found:
                    found.append(sentence)
    return found


def answer(messages: list[dict[str, Any]]) -> str:
    """The offline model's reply to ``messages``."""
    question = ""
    for message in reversed(messages):
        if message.get("role") == "user":
            question = content_text(message.get("content"))
            if MEMORY_OPEN in question:  # prepend_user mode: the question follows the block
                question = question.split(MEMORY_CLOSE, 1)[-1]
            question = question.strip()
            break
    if not question.endswith("?"):
        return f"Thanks, noted. {LABEL}"
    asked = _words(question)
    scored = sorted(
        ((len(asked & _words(memory)), index, memory) for index, memory in enumerate(_memories(messages))),
        key=lambda item: (-item[0], item[1]),
    )
    relevant = [memory for score, _, memory in scored if score > 0][:3]
    if not relevant:
        return f"I have nothing in memory about that yet. {LABEL}"
    quoted = " ".join(f'"{memory}"' for memory in relevant)
    return f"From memory, you told me: {quoted} {LABEL}"


def register() -> None:
    """Make ``hindsight-offline/<name>`` a LiteLLM model (idempotent). Imports LiteLLM."""
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
                        "message": {"role": "assistant", "content": answer(messages)},
                    }
                ],
            )

        def completion(self, model: str, messages: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
            return self._reply(model, messages)

        async def acompletion(
            self, model: str, messages: list[dict[str, Any]], *args: Any, **kwargs: Any
        ) -> Any:
            return self._reply(model, messages)

    providers = [p for p in (litellm.custom_provider_map or []) if p.get("provider") != OFFLINE_PROVIDER]
    litellm.custom_provider_map = [
        *providers,
        {"provider": OFFLINE_PROVIDER, "custom_handler": _OfflineModel()},
    ]
    custom_llm_setup()  # type: ignore[no-untyped-call]
