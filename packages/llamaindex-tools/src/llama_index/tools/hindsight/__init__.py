"""Hindsight long-term memory as LlamaIndex agent tools: the agent decides what to remember and when to
look it up (``retain_memory``, ``recall_memory``, ``reflect_on_memory``, each with an async twin).

For memory that works without the agent asking, see ``llama-index-memory-hindsight``.
"""

from .base import HindsightToolSpec

__all__ = ["HindsightToolSpec"]
