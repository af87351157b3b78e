"""The hooks ``bench.proxy`` names in the proxy's ``config.yaml`` (``callbacks: _proxy_hooks.<name>``).

Copied next to the configuration file, where LiteLLM's loader finds it. ``baseline`` injects, as a system
message, the very block our memory renders from the recorded facts (``BENCH_PROXY_FACTS``, a JSON file):
what any memory must send, with none of the work of getting it. The others are our hook as users configure it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from hindsight_core.pipeline.render import Memory, render_recall
from hindsight_litellm.proxy import HindsightProxyHook, hindsight_proxy_hook

__all__ = ["FixedBlockHook", "baseline", "memory", "memory_no_storage", "storage_only"]


def _block() -> str:
    with open(os.environ["BENCH_PROXY_FACTS"], encoding="utf-8") as file:
        facts = json.load(file)
    return render_recall(tuple(Memory(text=f, type="world") for f in facts), 4096, None).text


class FixedBlockHook(CustomLogger):
    """Inserts the same memory block into every chat request, as a system message."""

    def __init__(self) -> None:
        super().__init__()
        self.block = _block()

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: str
    ) -> dict[str, Any]:
        messages = data.get("messages")
        if isinstance(messages, list):
            data["messages"] = [{"role": "system", "content": self.block}, *messages]
        for key in [k for k in data if k.startswith("hindsight_")]:
            del data[key]
        return data


baseline = FixedBlockHook()
memory = hindsight_proxy_hook
memory_no_storage = HindsightProxyHook(store_conversations=False)
storage_only = HindsightProxyHook(inject_memories=False)
