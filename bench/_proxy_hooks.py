"""The hooks ``bench.proxy`` names in the proxy's ``config.yaml`` (``callbacks: _proxy_hooks.<name>``).

Copied next to the configuration file, where LiteLLM's loader finds it. ``baseline`` injects, as a system
message, the very block our memory renders from the recorded facts (``BENCH_PROXY_FACTS``, a JSON file):
what any memory must send, with none of the work of getting it. The others are our hook as users configure it.
``switch`` hands each request to the hook its ``bench_hook`` field names (default ``baseline``), so that one
proxy process serves every hook and their CPU is compared within that process.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from hindsight_core.pipeline.render import Memory, render_recall
from hindsight_litellm.proxy import HindsightProxyHook, hindsight_proxy_hook

__all__ = [
    "FixedBlockHook",
    "SwitchHook",
    "baseline",
    "memory",
    "memory_no_storage",
    "storage_only",
    "switch",
]


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


class SwitchHook(CustomLogger):
    """Runs each request through the hook named by its ``bench_hook`` field (removed from the request)."""

    def __init__(self, hooks: dict[str, CustomLogger]) -> None:
        super().__init__()
        self.hooks = hooks
        self.chosen: dict[str, CustomLogger] = {}

    def _hook(self, data: dict[str, Any], *, done: bool) -> CustomLogger:
        key = str(data.get("litellm_call_id"))
        return (self.chosen.pop(key, None) if done else self.chosen.get(key)) or self.hooks["baseline"]

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: str
    ) -> dict[str, Any]:
        hook = self.hooks[str(data.pop("bench_hook", "baseline"))]
        self.chosen[str(data.get("litellm_call_id"))] = hook
        result: Any = await hook.async_pre_call_hook(user_api_key_dict, cache, data, call_type)  # type: ignore[arg-type]
        return result if isinstance(result, dict) else data

    async def async_post_call_success_hook(
        self, data: dict[str, Any], user_api_key_dict: Any, response: Any
    ) -> Any:
        return await self._hook(data, done=True).async_post_call_success_hook(
            data, user_api_key_dict, response
        )

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: Any, request_data: dict[str, Any]
    ) -> AsyncGenerator[Any, None]:
        hook = self._hook(request_data, done=True)
        async for chunk in hook.async_post_call_streaming_iterator_hook(
            user_api_key_dict, response, request_data
        ):
            yield chunk

    async def async_post_call_failure_hook(
        self, request_data: dict[str, Any], *args: Any, **kwargs: Any
    ) -> None:
        await self._hook(request_data, done=True).async_post_call_failure_hook(request_data, *args, **kwargs)


switch = SwitchHook(
    {
        "baseline": baseline,
        "memory": memory,
        "memory_no_storage": memory_no_storage,
        "storage_only": storage_only,
    }
)
