"""A hooks module as a proxy operator writes it next to ``config.yaml``
(``litellm_settings: callbacks: custom_hooks.hook``): an instance of a subclass that only changes defaults.

Loaded by ``tests/litellm/test_proxy.py`` through LiteLLM's own loader (``get_instance_fn``).
"""

from __future__ import annotations

from hindsight_litellm.proxy import HindsightProxyHook


class TeamHook(HindsightProxyHook):
    """Banks named ``team-<identity>``."""


hook = TeamHook(bank_prefix="team-", budget="low")
