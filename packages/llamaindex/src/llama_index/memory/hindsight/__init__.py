"""Hindsight long-term memory for LlamaIndex.

``HindsightMemory`` is a chat-memory buffer for any ``memory=`` slot (chat engines, ``FunctionAgent``,
``ReActAgent``, ``AgentWorkflow``); ``HindsightMemoryBlock`` is a block for LlamaIndex's ``Memory``.
"""

from llama_index.core.memory.memory import InsertMethod

from .base import HindsightMemory
from .block import HindsightMemoryBlock

__all__ = ["HindsightMemory", "HindsightMemoryBlock", "InsertMethod"]
