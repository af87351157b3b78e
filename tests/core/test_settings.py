"""Settings: validation messages, layering, and scope isolation between threads and tasks."""

from __future__ import annotations

import asyncio
import threading

import pytest

from hindsight_core import ConfigurationError
from hindsight_core.pipeline import InjectionMode
from hindsight_core.settings import MemorySettings, SettingsLayers, validate_options


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("HINDSIGHT_API_URL", "HINDSIGHT_API_KEY", "HINDSIGHT_BANK_ID"):
        monkeypatch.delenv(variable, raising=False)


def test_defaults() -> None:
    settings = SettingsLayers("t").resolve()
    assert settings.bank_id is None
    assert settings.store_conversations is True
    assert settings.inject_memories is True
    assert settings.injection_mode is InjectionMode.SYSTEM_MESSAGE
    assert settings.use_reflect is False
    assert settings.max_memory_tokens == 4096
    assert settings.max_memories is None
    assert settings.budget == "mid"
    assert settings.recall_tags_match == "any"
    assert settings.connection.base_url == "https://api.hindsight.vectorize.io"  # Hindsight Cloud, as 0.5.4
    assert settings.connection.timeouts.recall == 5.0


def test_layers_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HINDSIGHT_BANK_ID", "from-env")
    monkeypatch.setenv("HINDSIGHT_API_URL", "http://env:1")
    layers = SettingsLayers("t")
    assert layers.resolve().bank_id == "from-env"
    layers.configure({"bank_id": "configured", "budget": "low"})
    assert layers.resolve().bank_id == "configured"
    assert layers.resolve().hindsight_api_url == "http://env:1"
    with layers.scope({"bank_id": "scoped"}):
        assert layers.resolve().bank_id == "scoped"
        assert layers.resolve().budget == "low"
        with layers.scope({"budget": "high"}):
            assert layers.resolve().bank_id == "scoped"
            assert layers.resolve().budget == "high"
            per_call = layers.resolve({"bank_id": "per-call"})
            assert per_call.bank_id == "per-call"
            assert per_call.budget == "high"
        assert layers.resolve().budget == "low"
    assert layers.resolve().bank_id == "configured"
    layers.configure({"bank_id": "replaced"}, replace=True)
    assert layers.resolve().budget == "mid"
    layers.reset()
    assert layers.resolve().bank_id == "from-env"


def test_scope_is_restored_when_an_exception_escapes() -> None:
    layers = SettingsLayers("t")
    layers.configure({"bank_id": "base"})
    with pytest.raises(RuntimeError), layers.scope({"bank_id": "inner"}):
        raise RuntimeError("boom")
    assert layers.resolve().bank_id == "base"


def test_scope_is_private_to_a_thread() -> None:
    layers = SettingsLayers("t")
    layers.configure({"bank_id": "base"})
    seen: dict[str, str | None] = {}
    entered = threading.Event()
    release = threading.Event()

    def inside() -> None:
        with layers.scope({"bank_id": "thread-a"}):
            entered.set()
            release.wait(5)
            seen["a"] = layers.resolve().bank_id

    thread = threading.Thread(target=inside)
    thread.start()
    entered.wait(5)
    seen["main"] = layers.resolve().bank_id
    release.set()
    thread.join()
    assert seen == {"a": "thread-a", "main": "base"}


async def test_scope_is_private_to_a_task() -> None:
    layers = SettingsLayers("t")

    async def user(name: str) -> list[str | None]:
        out = []
        with layers.scope({"bank_id": name}):
            for _ in range(5):
                await asyncio.sleep(0)
                out.append(layers.resolve().bank_id)
        return out

    results = await asyncio.gather(*(user(f"user-{i}") for i in range(50)))
    for i, banks in enumerate(results):
        assert banks == [f"user-{i}"] * 5
    assert layers.resolve().bank_id is None


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"budget": "huge"}, "invalid option 'budget': Input should be 'low', 'mid' or 'high' (got 'huge')"),
        ({"injection_mode": "sideways"}, "'system_message', 'prepend_user'"),
        (
            {"fact_types": ["world", "gossip"]},
            "unknown fact type 'gossip'; allowed: world, experience, observation",
        ),
        ({"max_memory_tokens": 0}, "invalid option 'max_memory_tokens'"),
        ({"max_memories": -1}, "invalid option 'max_memories'"),
        ({"recall_tags_match": "some"}, "invalid option 'recall_tags_match'"),
        ({"hindsight_api_url": "localhost:8888"}, "must start with http:// or https://"),
        ({"recall_timeout": 0}, "invalid option 'recall_timeout'"),
        ({"bank_id": ""}, "invalid option 'bank_id': must be a non-empty string"),
        ({"tags": ["ok", 3]}, "invalid option 'tags': must be a list of strings"),
        ({"budgett": "low"}, "unknown option 'budgett'; did you mean 'budget'?"),
        ({"store_conversations": "maybe"}, "invalid option 'store_conversations'"),
    ],
)
def test_invalid_values_name_the_option(values: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        SettingsLayers("t").configure(values)
    assert needle in str(info.value)
    with pytest.raises(ConfigurationError):
        SettingsLayers("t").resolve(values)


def test_api_key_is_never_shown() -> None:
    settings = SettingsLayers("t").resolve({"api_key": "sk-very-secret"})
    assert "sk-very-secret" not in repr(settings)
    assert "sk-very-secret" not in str(settings.model_dump())
    assert "sk-very-secret" not in repr(settings.connection)
    assert settings.connection.api_key == "sk-very-secret"
    with pytest.raises(ConfigurationError) as info:
        validate_options({"api_key": 12345})
    assert "12345" not in str(info.value)


def test_fact_types_translated_for_the_server() -> None:
    settings = MemorySettings(fact_types=["world", "agent", "opinion", "experience"])
    assert settings.fact_types == ("world", "agent", "opinion", "experience")
    assert settings.server_fact_types == ("world", "experience", "observation")
    assert MemorySettings().server_fact_types is None
    with pytest.raises(ConfigurationError, match="unknown fact type 'feelings'"):
        validate_options({"fact_types": ["world", "feelings"]})


def test_normalisation() -> None:
    values = validate_options(
        {
            "fact_types": ["world", "agent", "world"],
            "injection_mode": "PREPEND_USER",
            "tags": "one",
            "excluded_models": "gpt-3.5*",
        }
    )
    assert values == {
        "fact_types": ("world", "agent", "world"),  # kept as given; translated on the wire only
        "injection_mode": InjectionMode.PREPEND_USER,
        "tags": ("one",),
        "excluded_models": ("gpt-3.5*",),
    }


@pytest.mark.parametrize(
    ("model", "excluded"),
    [
        ("gpt-3.5-turbo", True),
        ("GPT-3.5-turbo-16k", True),
        ("gpt-4o", False),
        ("openai/gpt-3.5-turbo", True),
        ("openai/text-embedding-3-small", True),
        ("azure/gpt-4", False),
        (None, False),
    ],
)
def test_excluded_models_are_glob_patterns(model: str | None, excluded: bool) -> None:
    settings = MemorySettings(excluded_models=("gpt-3.5*", "*embedding*"))
    assert settings.is_excluded(model) is excluded
    assert MemorySettings().is_excluded("gpt-3.5") is False


def test_document_id_falls_back_to_session_id() -> None:
    assert MemorySettings(session_id="s1").effective_document_id == "s1"
    # session_id wins over the deprecated document_id (hindsight-litellm 0.5.4's precedence)
    assert MemorySettings(session_id="s1", document_id="d1").effective_document_id == "s1"
    assert MemorySettings(document_id="d1").effective_document_id == "d1"
    assert MemorySettings().effective_document_id is None
