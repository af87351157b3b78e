"""configure()/set_defaults()/get_config() and the direct memory APIs, against the real server."""

from __future__ import annotations

import inspect

import pytest

import hindsight_litellm as hl
from hindsight_core import ConfigurationError, HindsightClient, NotConfiguredError, NotFoundError
from tests.helpers import wait_for

SEEDS_NAMES = [
    "configure",
    "enable",
    "disable",
    "is_enabled",
    "cleanup",
    "get_config",
    "is_configured",
    "reset_config",
    "recall",
    "arecall",
    "reflect",
    "areflect",
    "retain",
    "aretain",
    "get_last_injection_debug",
    "clear_injection_debug",
    "wrap_openai",
    "wrap_anthropic",
    "completion",
    "acompletion",
    "set_defaults",
    "hindsight_memory",
]
COMPAT_NAMES = [
    "HindsightAnthropic",
    "HindsightCallback",
    "HindsightConfig",
    "HindsightDefaults",
    "HindsightError",
    "HindsightOpenAI",
    "InjectionDebugInfo",
    "MemoryInjectionMode",
    "RecallDebugInfo",
    "RecallResponse",
    "RecallResult",
    "ReflectDebugInfo",
    "ReflectResult",
    "RetainDebugInfo",
    "RetainResult",
    "cleanup_callback",
    "get_callback",
    "get_defaults",
    "get_pending_retain_errors",
    "get_pending_storage_errors",
    "set_bank_mission",
]


@pytest.mark.parametrize("name", SEEDS_NAMES + COMPAT_NAMES)
def test_public_names_exist(name: str) -> None:
    assert name in hl.__all__
    assert getattr(hl, name) is not None


def test_configure_signature_keeps_the_published_options() -> None:
    parameters = inspect.signature(hl.configure).parameters
    for option in [
        "hindsight_api_url",
        "api_key",
        "excluded_models",
        "sync_storage",
        "mission",
        "bank_name",
        "bank_id",
        "session_id",
        "document_id",
        "store_conversations",
        "inject_memories",
        "injection_mode",
        "budget",
        "fact_types",
        "max_memories",
        "max_memory_tokens",
        "include_entities",
        "trace",
        "tags",
        "recall_tags",
        "recall_tags_match",
        "use_reflect",
        "reflect_context",
        "reflect_response_schema",
        "reflect_include_facts",
        "verbose",
        "recall_budget",
    ]:
        assert option in parameters, option


def test_configuration_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HINDSIGHT_API_URL", raising=False)
    assert hl.get_config() is None
    assert not hl.is_configured()
    config = hl.configure(
        hindsight_api_url="http://memory.example:8888",
        api_key="hs-secret-key",
        bank_id="my-agent",
        recall_budget="high",
        fact_types=["world", "agent"],
        max_memories=5,
        max_memory_tokens=1000,
        injection_mode=hl.MemoryInjectionMode.PREPEND_USER,
        excluded_models=["gpt-3.5*"],
        verbose=True,
    )
    assert hl.is_configured()
    assert config.hindsight_api_url == "http://memory.example:8888"
    assert config.bank_id == "my-agent"
    assert config.default_settings.budget == "high"
    assert config.default_settings.fact_types == ["world", "agent"]  # as given (0.5.4 reads them back)
    assert config.injection_mode is hl.MemoryInjectionMode.PREPEND_USER
    assert config.verbose
    assert "hs-secret-key" not in repr(config)
    assert config.api_key == "hs-secret-key"
    defaults = hl.set_defaults(bank_id="other", use_reflect=True, reflect_context="coding assistant")
    assert defaults.bank_id == "other"
    assert defaults.use_reflect
    assert defaults.max_memories == 5  # untouched by set_defaults
    current = hl.get_config()
    assert current is not None
    assert current.bank_id == "other"
    assert hl.get_defaults() == defaults
    hl.configure(bank_id="fresh", budget="mid")  # sets what it is given, keeps the rest
    again = hl.get_config()
    assert again is not None
    assert again.bank_id == "fresh"
    assert again.default_settings.budget == "mid"
    assert again.default_settings.use_reflect  # from set_defaults, untouched
    assert again.default_settings.max_memories == 5
    hl.reset_config()
    assert hl.get_config() is None
    assert not hl.is_configured()
    hl.configure()
    fresh = hl.get_config()
    assert fresh is not None
    assert fresh.default_settings.max_memories is None


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"budget": "maximum"}, "'budget'"),
        ({"injection_mode": "append"}, "'system_message', 'prepend_user'"),
        ({"fact_types": ["rumour"]}, "unknown fact type 'rumour'"),
        ({"max_memory_tokens": -5}, "'max_memory_tokens'"),
        ({"hindsight_api_url": "memory.example"}, "must start with http"),
    ],
)
def test_bad_configuration_is_rejected_with_the_option_named(options: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        hl.configure(bank_id="x", **options)  # type: ignore[arg-type]
    assert needle in str(info.value)
    assert not hl.is_configured()


@pytest.mark.server
def test_configure_with_mission_creates_the_bank(hindsight_server: str, bank_id: str) -> None:
    hl.configure(
        hindsight_api_url=hindsight_server,
        bank_id=bank_id,
        bank_name="Customer Support Router",
        mission="Route customer support requests to billing, technical or sales.",
    )
    with HindsightClient(hindsight_server) as client:
        bank = client.get_bank(bank_id)
        assert bank.reflect_mission == "Route customer support requests to billing, technical or sales."
        names = {b.bank_id: b.name for b in client.list_banks(query=bank_id)}
        assert names[bank_id] == "Customer Support Router"
    hl.set_bank_mission("Only billing now.", bank_id=bank_id)
    with HindsightClient(hindsight_server) as client:
        assert client.get_bank(bank_id).reflect_mission == "Only billing now."


@pytest.mark.server
def test_article_setup_order_applies_the_mission(hindsight_server: str, bank_id: str) -> None:
    """configure(url) -> set_defaults(bank_id) -> configure(url, mission, bank_name): the bank gets its
    mission and keeps its id (the article's order), and the reverse order works too."""
    hl.configure(hindsight_api_url=hindsight_server)
    hl.set_defaults(bank_id=bank_id)
    hl.configure(hindsight_api_url=hindsight_server, mission="Route support requests.", bank_name="Router")
    defaults = hl.get_defaults()
    assert defaults is not None
    assert defaults.bank_id == bank_id
    with HindsightClient(hindsight_server) as client:
        assert client.get_bank(bank_id).reflect_mission == "Route support requests."
    hl.reset_config()
    other = f"{bank_id}-2"
    hl.configure(hindsight_api_url=hindsight_server, mission="Remember preferences.")
    hl.set_defaults(bank_id=other)
    with HindsightClient(hindsight_server) as client:
        assert client.get_bank(other).reflect_mission == "Remember preferences."


@pytest.mark.server
def test_context_manager_arguments_passed_explicitly_win(hindsight_server: str) -> None:
    """As in 0.5.4, a ``hindsight_memory()`` block is a complete configuration: what it passes wins, and
    what it does not pass has its default inside the block (not the configured value)."""
    from hindsight_litellm.config import LAYERS

    hl.configure(
        hindsight_api_url=hindsight_server, store_conversations=False, max_memory_tokens=500, budget="high"
    )
    with hl.hindsight_memory(store_conversations=True, max_memory_tokens=4096, budget="mid", bank_id="b"):
        settings = LAYERS.resolve()
        assert (settings.store_conversations, settings.max_memory_tokens, settings.budget) == (
            True,
            4096,
            "mid",
        )
    with hl.hindsight_memory(bank_id="b"):
        settings = LAYERS.resolve()
        assert (settings.store_conversations, settings.max_memory_tokens, settings.budget) == (
            True,
            4096,
            "mid",
        )
        assert settings.hindsight_api_url == hindsight_server  # the server is inherited (0.5.4 lost it)
    settings = LAYERS.resolve()
    assert (settings.store_conversations, settings.max_memory_tokens, settings.budget) == (False, 500, "high")


@pytest.mark.server
def test_direct_apis_sync(hindsight_server: str, seeded: str) -> None:
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded)
    memories = hl.recall("what projects is the user working on?", budget="mid")
    assert len(memories) >= 1
    assert any("FastAPI" in m.text for m in memories)
    for m in memories:
        assert m.fact_type in ("world", "experience", "observation")
        assert isinstance(m.weight, float)
    assert memories.debug is None  # as in 0.5.4, debug info comes with verbose=True
    assert memories[0].text == memories.results[0].text
    assert str(memories[0]) == memories[0].text
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded, verbose=True)
    loud = hl.recall("what projects is the user working on?")
    assert loud.debug is not None
    assert loud.debug.bank_id == seeded
    assert loud.debug.max_tokens == 4096
    result = hl.reflect("what do you know about the user's preferences?", context="I am a support agent.")
    assert result.text
    retained = hl.retain(
        content="User mentioned they're switching from Flask to FastAPI",
        context="Discussion about web frameworks",
        sync=True,
    )
    assert retained.success
    assert retained.items_count == 1
    assert any("Flask" in m.text for m in hl.recall("Is the user switching from Flask?"))


@pytest.mark.server
async def test_direct_apis_async(hindsight_server: str, seeded: str) -> None:
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded)
    memories = await hl.arecall("what colour does the user like?")
    assert any("teal" in m.text for m in memories)
    context = await hl.areflect("summarize user preferences", include_facts=True)
    assert context.text
    assert context.based_on
    result = await hl.aretain(content="The user adopted a dog named Pixel.", document_id="pets")
    assert result.success

    async def found() -> bool:
        return any("Pixel" in m.text for m in await hl.arecall("What is the user's dog called?"))

    import asyncio

    for _ in range(100):
        if await found():
            break
        await asyncio.sleep(0.2)
    assert await found()


@pytest.mark.server
def test_direct_api_errors_are_raised(hindsight_server: str) -> None:
    hl.configure(hindsight_api_url=hindsight_server)
    with pytest.raises(NotFoundError):
        hl.recall("anything", bank_id="no-such-bank-ever")
    hl.reset_config()
    with pytest.raises(NotConfiguredError) as info:  # a RuntimeError too, as 0.5.4 raised
        hl.recall("anything", hindsight_api_url=hindsight_server)
    assert "bank_id" in str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert "configure()" in str(info.value)


@pytest.mark.server
def test_retain_background_by_default_is_recallable(hindsight_server: str, bank_id: str) -> None:
    from tests.helpers import recall_texts, seed_bank

    seed_bank(hindsight_server, bank_id)
    hl.configure(hindsight_api_url=hindsight_server, bank_id=bank_id)
    assert hl.retain("The user's bicycle is red.").success
    wait_for(lambda: any("bicycle" in t for t in recall_texts(hindsight_server, bank_id, "bicycle colour")))
