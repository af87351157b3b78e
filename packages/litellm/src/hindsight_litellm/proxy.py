"""Server-side memory for the LiteLLM proxy.

:class:`HindsightProxyHook` is a LiteLLM ``CustomLogger`` for the proxy: it injects memory into each chat
request in ``async_pre_call_hook`` and stores the exchange after the call (``async_post_call_success_hook``,
or, for streamed replies, when ``async_post_call_streaming_iterator_hook`` has passed the last chunk).
Clients of the proxy need no change.

``config.yaml``::

    model_list:
      - model_name: gpt-4o-mini
        litellm_params: {model: openai/gpt-4o-mini}
    litellm_settings:
      callbacks: hindsight_litellm.proxy.hindsight_proxy_hook

The ready-made ``hindsight_proxy_hook`` reads its settings from the environment
(``HINDSIGHT_API_URL``, ``HINDSIGHT_API_KEY``, ``HINDSIGHT_BANK_ID``) and from ``configure()``; for other
settings create your own instance in a module next to ``config.yaml``
(``hook = HindsightProxyHook(budget="low", bank_prefix="team-")``) and name that module in ``callbacks``.

Which bank a request uses, first match wins: the request's ``hindsight_bank_id`` (top level or in
``metadata``), then the caller's identity (the request's ``user`` field, the API key's user id, team id,
key alias; the placeholder user id LiteLLM gives the master key, ``default_user_id``, is not an identity),
then the hook's own ``bank_id``. ``bank_prefix`` is put in front of identities, so one proxy can keep
users' memories apart from other banks. On a proxy shared by clients who must not read each other's
memory, pass ``trust_request_bank=False``: the bank then comes from the API key's identity only. Other
``hindsight_*`` request fields are per-request settings (a request can never change the Hindsight server,
key, or retry policy), and are removed before the request goes to the provider.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from litellm import constants as litellm_constants
from litellm.integrations.custom_logger import CustomLogger

from hindsight_core._logging import RateLimitedLog
from hindsight_core.memory import MemoryCall
from hindsight_core.settings import validate_options

from ._messages import openai_reply, to_message_dicts
from ._streams import OpenAICollector
from .config import LAYERS, PIPELINE
from .integration import pop_hindsight_options

__all__ = ["HindsightProxyHook", "hindsight_proxy_hook"]

_log = logging.getLogger("hindsight_litellm.proxy")
_ignored = RateLimitedLog(_log, interval=60.0)
_CHAT_CALLS = frozenset({"completion", "acompletion"})
_MAX_PENDING = 10_000
# Options a request may not set: where the server is and how it is reached (each distinct value would also
# open pooled clients of its own), and the proxy's own policies.
_SERVER_ONLY = frozenset(
    {
        "hindsight_api_url",
        "api_key",
        "connect_timeout",
        "recall_timeout",
        "reflect_timeout",
        "retain_timeout",
        "max_retries",
        "sync_storage",
        "strict",
    }
)
# The user id LiteLLM gives the master key (and requests made without a virtual key's user): a
# placeholder shared by every such request, not a person, so it never selects a bank.
_ADMIN_USER_ID = str(getattr(litellm_constants, "LITELLM_PROXY_ADMIN_NAME", "default_user_id"))


_HOOKS = (
    "async_pre_call_hook",
    "async_post_call_success_hook",
    "async_post_call_streaming_iterator_hook",
    "async_post_call_failure_hook",
)


class HindsightProxyHook(CustomLogger):
    """Memory for the chat requests a LiteLLM proxy serves. Options are memory settings."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The proxy only calls a hook defined in the callback's own class (it looks in
        # ``type(callback).__dict__``): a subclass that changes nothing else would silently get no memory.
        super().__init_subclass__(**kwargs)
        for name in _HOOKS:
            if name not in vars(cls):
                setattr(cls, name, getattr(cls, name))

    def __init__(
        self,
        *,
        bank_prefix: str = "",
        identity_fields: Sequence[str] = ("user", "user_id", "team_id", "key_alias"),
        trust_request_bank: bool = True,
        **settings: Any,
    ) -> None:
        super().__init__()
        self.bank_prefix = bank_prefix
        self.identity_fields = tuple(identity_fields)
        self.trust_request_bank = trust_request_bank
        self._settings = validate_options(settings)
        self._pending: OrderedDict[str, MemoryCall] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ helpers

    def _bank_for(self, data: dict[str, Any], user_api_key_dict: Any, options: dict[str, Any]) -> str | None:
        requested = options.pop("bank_id", None)
        if requested and self.trust_request_bank:
            return str(requested)
        for field in self.identity_fields:
            if field == "user" and not self.trust_request_bank:
                continue  # the request's ``user`` is chosen by the client
            value = data.get("user") if field == "user" else getattr(user_api_key_dict, field, None)
            if field == "user_id" and value == _ADMIN_USER_ID:
                continue
            if isinstance(value, str) and value.strip():
                return f"{self.bank_prefix}{value.strip()}"
        bank = self._settings.get("bank_id") or LAYERS.resolve().bank_id
        return str(bank) if bank else None

    @staticmethod
    def _key(data: dict[str, Any]) -> str:
        return str(data.get("litellm_call_id") or id(data))

    def _remember(self, key: str, call: MemoryCall) -> None:
        with self._lock:
            self._pending[key] = call
            while len(self._pending) > _MAX_PENDING:  # a request whose post-call hook never ran
                self._pending.popitem(last=False)

    def _take(self, data: dict[str, Any]) -> MemoryCall | None:
        with self._lock:
            return self._pending.pop(self._key(data), None)

    # ---------------------------------------------------------------------------------------- the hooks

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: str
    ) -> dict[str, Any]:
        """Inject memory into the request's messages (chat requests only)."""
        options = pop_hindsight_options(data)
        metadata = data.get("metadata")
        if isinstance(metadata, dict):
            options = {**pop_hindsight_options(metadata), **options}
        if call_type not in _CHAT_CALLS or not isinstance(data.get("messages"), list):
            return data
        try:
            for option in _SERVER_ONLY & options.keys():
                del options[option]  # a client must not point the proxy at another server or key
                _ignored.warning(
                    option, "Ignored a request's %s option: only the proxy's configuration sets it", option
                )
            bank = self._bank_for(data, user_api_key_dict, options)
            settings = LAYERS.resolve({**self._settings, **options, **({"bank_id": bank} if bank else {})})
        except Exception as exc:
            _log.warning("Hindsight memory skipped for a proxy request: %s", exc)
            return data
        call = await PIPELINE.aprepare(to_message_dicts(data["messages"]), settings, model=data.get("model"))
        data["messages"] = call.messages
        self._remember(self._key(data), call)
        return data

    async def async_post_call_success_hook(
        self, data: dict[str, Any], user_api_key_dict: Any, response: Any
    ) -> Any:
        """Store the exchange of a non-streamed request."""
        call = self._take(data)
        if call is not None:
            await PIPELINE.afinish(call, openai_reply(response))
        return response

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: Any, request_data: dict[str, Any]
    ) -> AsyncGenerator[Any, None]:
        """Pass the chunks through and store the reply when the stream has ended (or was cut short)."""
        call = self._take(request_data)
        collector = OpenAICollector()
        try:
            async for chunk in response:
                collector.add(chunk)
                yield chunk
        finally:
            if call is not None:
                await PIPELINE.afinish(call, collector.reply())

    async def async_post_call_failure_hook(
        self,
        request_data: dict[str, Any],
        original_exception: Exception,
        user_api_key_dict: Any,
        traceback_str: Any = None,
    ) -> None:
        """A failed request stores nothing."""
        self._take(request_data)


hindsight_proxy_hook = HindsightProxyHook()
"""The ready-made hook: settings from the environment and ``configure()``."""
