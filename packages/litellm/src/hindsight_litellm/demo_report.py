"""One demo turn, and the few lines that explain it: what was recalled, why, and what was stored.

With a real model the integration stores the turn after the reply (the transcript the core builds). With
the offline stand-in, the demo stores what the user tells it, as said, and no questions: the stand-in's
replies are acknowledgements and quotes, nothing worth remembering.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from typing import Any

from hindsight_core import InjectionDebugInfo
from hindsight_core.pipeline import transcript

from .offline_model import Embed, choose, is_question, memories_in

__all__ = ["Reporter"]

_WIDTH = 100
_SHOWN = 3


def _short(text: str, limit: int = 90) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _quoted(text: str, limit: int = 90) -> str:
    return f'"{_short(text, limit)}"'


def _field(result: Any, name: str) -> Any:
    """A field of a recall result in the debug record (a model or a plain mapping)."""
    return result.get(name) if isinstance(result, Mapping) else getattr(result, name, None)


def _score(result: Any) -> str:
    scores = _field(result, "scores") or {}
    semantic = scores.get("semantic")
    return f" (similarity {semantic:.2f})" if isinstance(semantic, float) else ""


class Reporter:
    """Runs a turn through ``hindsight_litellm.completion`` and prints it with its explanation."""

    def __init__(
        self,
        *,
        offline: bool,
        bank: str,
        url: str,
        embed: Embed | None,
        say: Callable[[str], None],
        echo: bool = True,
    ) -> None:
        self._echo = echo  # print the user's text (the chat's input() prompt already shows it)
        self._offline = offline
        self._bank = bank
        self._url = url
        self._embed = embed
        self._say = say

    def _line(self, label: str, text: str) -> None:
        indent = " " * 12
        self._say(textwrap.fill(text, width=_WIDTH, initial_indent=f"  {label:10}", subsequent_indent=indent))

    def turn(self, model: str, messages: list[dict[str, Any]], text: str, *, show_block: bool = False) -> str:
        """Send ``text`` after ``messages`` (both updated in place), print the turn, return the reply."""
        import hindsight_litellm as hl

        if self._echo:
            self._say(f"you> {text}")
        messages.append({"role": "user", "content": text})
        try:
            response = hl.completion(
                model=model, messages=messages, hindsight_store_conversations=not self._offline
            )
        except Exception:
            messages.pop()
            raise
        reply = str(response.choices[0].message.content or "").strip()
        debug = hl.get_last_injection_debug()
        self._recalled(debug, show_block)
        self._say(textwrap.fill(f"bot> {reply}", width=_WIDTH, subsequent_indent="     "))
        self._why(debug, text)
        self._stored(messages, reply)
        messages.append({"role": "assistant", "content": reply})
        self._say("")
        return reply

    def _recalled(self, debug: InjectionDebugInfo | None, show_block: bool) -> None:
        if debug is None:
            self._line("recalled:", "nothing (no debug record)")
            return
        if not debug.injected:
            reason = debug.error or debug.skipped_reason or "no memory matched"
            self._line("recalled:", f"nothing ({reason})")
            return
        results = debug.recall_results or []
        found = f"{debug.memories_found} {'memory' if debug.memories_found == 1 else 'memories'}"
        self._line(
            "recalled:",
            f"{found} for {_quoted(debug.query or '', 60)}; "
            f"{debug.memories_used} injected ({debug.tokens_injected} tokens), best first:",
        )
        for index, result in enumerate(results[:_SHOWN], 1):
            self._say(f"{'':12}{index}. {_short(str(_field(result, 'text')), 70)}{_score(result)}")
        if len(results) > _SHOWN:
            self._say(f"{'':12}... and {len(results) - _SHOWN} more")
        if show_block:
            self._say("  --- the block injected into the prompt " + "-" * 36)
            self._say(textwrap.indent(debug.memory_context.rstrip(), "  "))
            self._say("  " + "-" * 74)

    def _why(self, debug: InjectionDebugInfo | None, text: str) -> None:
        if debug is None or not debug.injected:
            return
        if not self._offline:
            self._line("why:", "the server ranked them by relevance to your message; the model read them")
            return
        if not is_question(text):
            return
        for choice in choose(text, memories_in(debug.memory_context), self._embed):
            reason = {
                "meaning": f"closest in meaning (similarity {choice.score:.2f})",
                "shared words": f"shares the most words ({choice.score:.0f})",
                "recall order": "no shared words: the server's best match",
            }[choice.how]
            self._line("why:", f"{_quoted(choice.memory, 60)} answers {_quoted(choice.part)}: {reason}")

    def _stored(self, messages: list[dict[str, Any]], reply: str) -> None:
        import hindsight_litellm as hl

        text = str(messages[-1]["content"])
        if not self._offline:
            stored = transcript(messages, reply)
            self._line("stored:", f"{_quoted(stored, 160)} (queued; the server extracts facts from it)")
            return
        if is_question(text):
            self._line("stored:", "nothing (the offline demo stores what you tell it, not your questions)")
            return
        hl.retain(text, bank_id=self._bank, hindsight_api_url=self._url, sync=True)
        self._line("stored:", f"{_quoted(text, 200)} (as you said it)")
