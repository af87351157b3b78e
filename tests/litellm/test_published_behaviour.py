"""What an application written against the published hindsight-litellm 0.5.4 observes, kept.

Each test names the published behaviour it holds us to (learned by running 0.5.4 side by side: see
``tests/compat``). The deliberate differences are tested too, with their reason.
"""

from __future__ import annotations

import warnings
from typing import Any
from unittest import mock

import litellm
import pytest

import hindsight_litellm as hl
from hindsight_core import HindsightError, MemorySettings, NotConfiguredError
from hindsight_litellm import config
from hindsight_litellm.config import LAYERS
from tests.litellm.conftest import openai_call
from tests.providers import FakeOpenAI

CLOUD = "https://api.hindsight.vectorize.io"


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HINDSIGHT_API_URL", "HINDSIGHT_API_KEY", "HINDSIGHT_BANK_ID"):
        monkeypatch.delenv(name, raising=False)


def _memory_blocks(messages: list[dict[str, Any]]) -> int:
    return sum(str(m.get("content")).count("<hindsight_memories>") for m in messages)


# -------------------------------------------------------------------------------- 1. the default server


def test_published_default_server_is_hindsight_cloud() -> None:
    """0.5.4: a cloud user who configures only the key and the bank gets Hindsight Cloud."""
    cfg = hl.configure(api_key="hs-key", bank_id="my-agent")
    assert cfg.hindsight_api_url == CLOUD
    assert LAYERS.resolve().connection.base_url == CLOUD
    assert hl.HindsightConfig().hindsight_api_url == CLOUD


def test_hindsight_api_url_in_the_environment_wins_over_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HINDSIGHT_API_URL", "http://memory.internal:8888")
    assert hl.configure(bank_id="b").hindsight_api_url == "http://memory.internal:8888"


def test_every_package_shares_the_default_server() -> None:
    """One default for every package: the core's settings (used by LangChain and LlamaIndex too)."""
    assert MemorySettings().connection.base_url == CLOUD


# ---------------------------------------------------------------------------------- 2. module constants


def test_published_module_constants() -> None:
    assert config.DEFAULT_HINDSIGHT_API_URL == CLOUD
    assert config.DEFAULT_BANK_ID == "default"
    assert config.HINDSIGHT_API_KEY_ENV == "HINDSIGHT_API_KEY"


def test_api_key_read_from_the_published_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.HINDSIGHT_API_KEY_ENV, "hs-from-env")
    cfg = hl.configure(bank_id="b")
    assert cfg.api_key == "hs-from-env"
    assert "hs-from-env" not in repr(cfg)


# ----------------------------------------------------------------------------- 3. configuration state


def test_published_state_before_and_after_configure() -> None:
    """0.5.4: get_config()/get_defaults() are None until configure(); is_configured() needs a bank."""
    assert hl.get_config() is None
    assert hl.get_defaults() is None
    assert not hl.is_configured()
    hl.configure(hindsight_api_url="http://memory.example:8888")
    assert hl.get_config() is not None
    assert hl.get_defaults() is not None
    assert not hl.is_configured()  # no bank yet
    hl.set_defaults(bank_id="b")
    assert hl.is_configured()
    hl.reset_config()
    assert hl.get_config() is None
    assert not hl.is_configured()


def test_published_set_defaults_alone_configures_with_the_defaults() -> None:
    defaults = hl.set_defaults(bank_id="b", budget="low")
    assert isinstance(defaults, config.HindsightCallSettings)
    cfg = hl.get_config()
    assert cfg is not None
    assert cfg.hindsight_api_url == CLOUD
    assert cfg.excluded_models == []
    assert hl.is_configured()


def test_published_enable_without_configure_raises_runtime_error() -> None:
    with pytest.raises(RuntimeError, match=r"configure\(\)") as info:
        hl.enable()
    assert isinstance(info.value, HindsightError)
    assert not hl.is_enabled()


def test_published_enable_without_a_bank_raises_runtime_error_naming_set_defaults() -> None:
    hl.configure(hindsight_api_url="http://memory.example:8888")
    with pytest.raises(RuntimeError) as info:
        hl.enable()
    assert "bank_id" in str(info.value)
    assert "set_defaults(bank_id=...)" in str(info.value)
    assert isinstance(info.value, NotConfiguredError)


def test_published_direct_apis_without_configuration_raise_runtime_error() -> None:
    for call in (lambda: hl.recall("q"), lambda: hl.reflect("q"), lambda: hl.retain("c")):
        with pytest.raises(RuntimeError, match=r"configure\(\)"):
            call()


def test_published_completion_with_a_configuration_but_no_bank_raises(fake_openai: FakeOpenAI) -> None:
    """0.5.4 raised HindsightError naming bank_id before calling the provider."""
    hl.configure(hindsight_api_url="http://memory.example:8888")
    with pytest.raises(HindsightError, match="bank_id"):
        hl.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": "Hi"}]))
    assert fake_openai.requests == []


def test_published_validation_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="budget"):
        hl.configure(budget="huge")
    with pytest.raises(ValueError, match="recall_tags_match"):
        hl.set_defaults(recall_tags_match="some")


def test_published_cleanup_forgets_the_configuration() -> None:
    hl.configure(hindsight_api_url="http://memory.example:8888", bank_id="b")
    hl.enable()
    hl.cleanup()
    assert hl.get_config() is None
    assert not hl.is_enabled()
    assert litellm.completion.__module__.startswith("litellm")


# ------------------------------------------------------------------------------ 4. values read back


@pytest.mark.server
def test_published_fact_types_read_back_as_given_and_translated_on_the_wire(
    hindsight_server: str, seeded: str
) -> None:
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded, fact_types=["world", "opinion", "agent"])
    defaults = hl.get_defaults()
    assert defaults is not None
    assert defaults.fact_types == ["world", "opinion", "agent"]
    assert LAYERS.resolve().server_fact_types == ("world", "observation", "experience")
    memories = hl.recall("What colour does the user like?")  # the server accepts the translated names
    assert any("teal" in m.text for m in memories)
    assert all(m.fact_type in ("world", "observation", "experience") for m in memories)


# ---------------------------------------------------------------------------- 5. deprecations, guards


def test_published_document_id_is_deprecated_in_favour_of_session_id() -> None:
    with pytest.warns(DeprecationWarning, match="session_id") as seen:
        hl.configure(hindsight_api_url="http://memory.example:8888", document_id="d1")
    assert seen[0].filename == __file__  # the warning points at the caller
    with pytest.warns(DeprecationWarning, match="session_id"):
        hl.set_defaults(document_id="d2")
    with (
        pytest.warns(DeprecationWarning, match="session_id"),
        hl.hindsight_memory(bank_id="b", document_id="d"),
    ):
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hl.configure(hindsight_api_url="http://memory.example:8888", session_id="s")


def test_published_session_id_wins_over_document_id() -> None:
    assert config.HindsightCallSettings(session_id="s", document_id="d").effective_document_id == "s"
    assert config.HindsightCallSettings(document_id="d").effective_document_id == "d"
    assert MemorySettings(session_id="s", document_id="d").effective_document_id == "s"


@pytest.mark.server
def test_published_warning_when_enable_meets_a_registered_callback_and_still_one_block(
    hindsight_server: str, seeded: str, fake_openai: FakeOpenAI
) -> None:
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded, store_conversations=False)
    litellm.callbacks = [hl.get_callback()]
    try:
        with pytest.warns(RuntimeWarning, match="HindsightCallback"):
            hl.enable()
        hl.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": "Favourite colour?"}]))
    finally:
        litellm.callbacks = []
        hl.cleanup_callback()
    assert _memory_blocks(fake_openai.last_json["messages"]) == 1


# ------------------------------------------------------------------ 6. hindsight_memory() as a configuration


def test_published_context_manager_is_a_complete_temporary_configuration() -> None:
    hl.configure(
        hindsight_api_url="http://memory.example:8888",
        api_key="hs-configured",
        bank_id="outer",
        budget="high",
        tags=["outer"],
        recall_tags=["outer"],
        use_reflect=True,
        reflect_context="outer context",
        sync_storage=True,
        max_memories=3,
    )
    before = (hl.get_config(), hl.get_defaults(), hl.is_enabled())
    with hl.hindsight_memory(bank_id="inner", max_memory_tokens=500):
        cfg, defaults = hl.get_config(), hl.get_defaults()
        assert cfg is not None
        assert defaults is not None
        assert hl.is_enabled()
        assert hl.is_configured()
        assert defaults.bank_id == "inner"
        assert defaults.max_memory_tokens == 500
        # what the block does not pass has its default, as in 0.5.4
        assert (defaults.budget, defaults.tags, defaults.recall_tags) == ("mid", None, None)
        assert (defaults.use_reflect, defaults.reflect_context, defaults.max_memories) == (False, None, None)
        assert cfg.sync_storage is False
        # the deliberate difference: the server and its key are inherited (0.5.4 switched to the cloud)
        assert cfg.hindsight_api_url == "http://memory.example:8888"
        assert cfg.api_key == "hs-configured"
    assert (hl.get_config(), hl.get_defaults(), hl.is_enabled()) == before


def test_published_context_manager_restores_nothing_configured() -> None:
    with hl.hindsight_memory(hindsight_api_url="http://memory.example:8888", bank_id="b"):
        assert hl.get_config() is not None
        assert hl.is_enabled()
    assert hl.get_config() is None
    assert hl.get_defaults() is None
    assert not hl.is_enabled()
    assert not hl.is_configured()


def test_published_context_manager_needs_a_bank() -> None:
    hl.configure(hindsight_api_url="http://memory.example:8888", bank_id="configured")
    with pytest.raises(RuntimeError, match="bank_id"), hl.hindsight_memory():
        pass  # the configured bank is a memory option: not inherited
    assert hl.get_defaults().bank_id == "configured"  # type: ignore[union-attr]


def test_published_context_manager_restores_after_an_exception() -> None:
    hl.configure(hindsight_api_url="http://memory.example:8888", bank_id="a", budget="low")
    before = hl.get_config()
    with pytest.raises(KeyError), hl.hindsight_memory(bank_id="b", budget="high"):
        raise KeyError("inside")
    assert hl.get_config() == before


# ------------------------------------------------------------ 7. litellm.completion as it is at call time


@pytest.mark.server
def test_published_completion_calls_a_mocked_litellm_completion_with_the_memories(
    hindsight_server: str, seeded: str, fake_openai: FakeOpenAI
) -> None:
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded, store_conversations=False)
    call = openai_call(fake_openai, messages=[{"role": "user", "content": "What colour does the user like?"}])
    with mock.patch("litellm.completion") as spy:
        spy.return_value = "mocked"
        assert hl.completion(**call) == "mocked"
    sent = spy.call_args.kwargs["messages"]
    assert _memory_blocks(sent) == 1
    assert "teal" in str(sent)
    assert fake_openai.requests == []


@pytest.mark.server
def test_a_mock_installed_after_enable_sees_one_block_and_a_spy_of_the_patch_adds_none(
    hindsight_server: str, seeded: str, fake_openai: FakeOpenAI
) -> None:
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded, store_conversations=False)
    hl.enable()
    call = openai_call(fake_openai, messages=[{"role": "user", "content": "What colour does the user like?"}])
    with mock.patch("litellm.completion") as spy:
        spy.return_value = "mocked"
        hl.completion(**call)
    assert _memory_blocks(spy.call_args.kwargs["messages"]) == 1
    # a spy wrapping our patched function: it reaches LiteLLM with one block, never two
    with mock.patch("litellm.completion", wraps=litellm.completion) as wrapping_spy:
        hl.completion(**call)
    assert wrapping_spy.called
    assert _memory_blocks(fake_openai.last_json["messages"]) == 1
    assert len(fake_openai.requests) == 1


# ------------------------------------------------------------------------------------ result shapes


def test_published_result_shapes() -> None:
    assert str(hl.RecallResult(text="t", fact_type="world", weight=0.5)) == "t"
    assert str(hl.ReflectResult(text="r")) == "r"
    assert bool(hl.RetainResult(success=True)) is True
    assert bool(hl.RetainResult(success=False)) is False
    assert hl.RetainResult(success=True).items_count == 0


@pytest.mark.server
def test_published_wrappers_default_to_the_bank_named_default(
    hindsight_server: str, fake_openai: FakeOpenAI
) -> None:
    import openai

    from tests.helpers import seed_bank

    seed_bank(hindsight_server, config.DEFAULT_BANK_ID, ["The user's lucky number is 4711."])
    client = openai.OpenAI(base_url=fake_openai.base_url, api_key="sk-test")
    wrapped = hl.wrap_openai(client, hindsight_api_url=hindsight_server, store_conversations=False)
    wrapped.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "What is the user's lucky number?"}]
    )
    assert "4711" in str(fake_openai.last_json["messages"])


@pytest.mark.usefixtures("private_storage")
def test_sync_storage_with_strict_raises_when_the_turn_is_not_stored(fake_openai: FakeOpenAI) -> None:
    """0.5.4's sync_storage raised storage errors at once; ours does with strict=True (the failure is
    reported, not raised, without it)."""
    from hindsight_core import StorageError
    from tests.helpers import closed_port_url

    hl.configure(
        hindsight_api_url=closed_port_url(),
        bank_id="b",
        sync_storage=True,
        strict=True,
        inject_memories=False,
        retain_timeout=1.0,
        max_retries=0,
    )
    with pytest.raises(StorageError, match="could not be stored"):
        hl.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": "Remember this."}]))
    assert len(fake_openai.requests) == 1  # the LLM call was made; its storage failed
    hl.configure(strict=False)
    response = hl.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": "And this."}]))
    assert response.choices[0].message.content
    debug = hl.get_last_injection_debug()
    assert debug is not None
    assert debug.storage_status != "stored"


@pytest.mark.server
def test_sync_storage_waits_for_the_turn(hindsight_server: str, seeded: str, fake_openai: FakeOpenAI) -> None:
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded, sync_storage=True, strict=True)
    hl.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": "My cat is Miso."}]))
    debug = hl.get_last_injection_debug()
    assert debug is not None
    assert debug.storage_status == "stored"


def test_published_background_retain_returns_at_once_and_reports_failures_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """0.5.4: retain(sync=False) returns success=True at once; failures are collected and handed out once
    by get_pending_retain_errors()."""
    from hindsight_core.storage import StorageWorker
    from tests.helpers import closed_port_url, wait_for

    worker = StorageWorker(retry_initial=60, retry_max=60, exit_timeout=0.1)  # no retry during the test
    monkeypatch.setattr(config.PIPELINE, "_storage", worker)
    try:
        hl.configure(hindsight_api_url=closed_port_url(), bank_id="b", max_retries=0)
        result = hl.retain("The user's cat is called Miso.")
        assert result.success
        assert bool(result)
        errors = wait_for(hl.get_pending_retain_errors, timeout=30, what="the background retain's error")
        assert all(isinstance(error, HindsightError) for error in errors)
        assert "could not reach" in str(errors[0])
        assert hl.get_pending_retain_errors() == []  # handed out once
    finally:
        worker.close(timeout=0)


@pytest.mark.server
def test_published_retain_into_a_document_replaces_it(hindsight_server: str, bank_id: str) -> None:
    from tests.helpers import document_text, flush_storage, seed_bank, wait_for

    seed_bank(hindsight_server, bank_id)
    hl.configure(hindsight_api_url=hindsight_server, bank_id=bank_id)
    hl.retain("First version of the notes.", document_id="notes")
    flush_storage()
    wait_for(lambda: document_text(hindsight_server, bank_id, "notes"), what="the first version")
    hl.retain("Second version of the notes.", document_id="notes")
    flush_storage()
    text = wait_for(
        lambda: (t := document_text(hindsight_server, bank_id, "notes")) and "Second" in t and t,
        what="the second version",
    )
    assert "First version" not in text  # replaced, as the server's retain does (0.5.4 sent it so)
