"""The local server's models: choosing them, the API's environment, installing the embedding model, and a
real server run with a provider's LLM and embeddings (a loopback OpenAI-compatible fake)."""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path

import pytest

import hindsight_core.local.installer as installer_module
from hindsight_core import HindsightClient
from hindsight_core.local import (
    EMBEDDER_REQUIREMENT,
    SERVER_REQUIREMENT,
    LocalHindsightServer,
    installed,
    provision,
    resolve_models,
)
from hindsight_core.local.api_env import api_environment
from tests.providers import FakeOpenAI

KEY = "sk-test-local-models-0123456789"


# --- choosing the models -----------------------------------------------------------------------------------


def test_offline_by_default_even_with_a_provider_key() -> None:
    models = resolve_models(environ={"OPENAI_API_KEY": KEY})
    assert models.offline
    assert (models.provider, models.embeddings, models.llm) == ("mock", "model", "mock")
    assert models.api_env() == {"HINDSIGHT_API_LLM_PROVIDER": "mock"}


def test_openai_by_argument_or_environment_uses_its_llm_and_embeddings() -> None:
    environ = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    by_argument = resolve_models("openai", environ=environ)
    by_variable = resolve_models(environ={**environ, "HINDSIGHT_LOCAL_PROVIDER": "OpenAI"})
    assert by_argument == by_variable
    assert by_argument.llm == "openai/gpt-4o-mini"
    assert by_argument.api_env() == {
        "HINDSIGHT_API_LLM_PROVIDER": "openai",
        "HINDSIGHT_API_LLM_API_KEY": KEY,
        "HINDSIGHT_API_LLM_MODEL": "gpt-4o-mini",
        "HINDSIGHT_API_LLM_BASE_URL": "http://127.0.0.1:9/v1",
        "HINDSIGHT_API_EMBEDDINGS_PROVIDER": "openai",
        "HINDSIGHT_API_EMBEDDINGS_OPENAI_API_KEY": KEY,
        "HINDSIGHT_API_EMBEDDINGS_OPENAI_MODEL": "text-embedding-3-small",
        "HINDSIGHT_API_EMBEDDINGS_OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
    }
    assert KEY not in repr(by_argument)
    assert KEY not in by_argument.describe()


def test_models_can_be_overridden_and_embeddings_kept_local() -> None:
    environ = {
        "OPENAI_API_KEY": KEY,
        "HINDSIGHT_LOCAL_LLM_MODEL": "gpt-4o",
        "HINDSIGHT_LOCAL_EMBEDDINGS": "model",
    }
    models = resolve_models("openai", environ=environ)
    assert models.llm == "openai/gpt-4o"
    assert models.embeddings == "model"
    assert not any(key.startswith("HINDSIGHT_API_EMBEDDINGS") for key in models.api_env())
    anthropic = resolve_models("anthropic", environ={"ANTHROPIC_API_KEY": KEY})
    assert (anthropic.llm, anthropic.embeddings) == ("anthropic/claude-haiku-4-5", "model")


@pytest.mark.parametrize(
    ("provider", "embeddings", "environ", "message"),
    [
        ("openai", None, {}, "provider 'openai' needs OPENAI_API_KEY in the environment"),
        ("gemini", None, {}, "unknown provider 'gemini'"),
        (None, "provider", {}, "embeddings 'provider' needs a real provider"),
        ("anthropic", "provider", {"ANTHROPIC_API_KEY": KEY}, "has no embeddings API"),
        (None, "bert", {}, "unknown embeddings choice 'bert'"),
    ],
)
def test_bad_choices_name_the_problem(
    provider: str | None, embeddings: str | None, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_models(provider, embeddings, environ=environ)


def test_a_missing_key_fails_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="needs OPENAI_API_KEY"):
        LocalHindsightServer(provider="openai")


def test_the_api_environment_takes_keys_from_the_choice_only() -> None:
    inherited = {"OPENAI_API_KEY": KEY, "HINDSIGHT_API_LLM_PROVIDER": "openai", "PATH": "/bin"}
    common = {
        "api_port": 1,
        "database_url": "postgresql://x",
        "worker_id": "w",
        "log_level": "warning",
        "extra": {},
    }
    offline = api_environment(
        inherited,
        embeddings_port=2,
        embeddings_model="wordllama-l2-supercat-256",
        semantic_min_similarity=0.05,
        models=resolve_models(environ={}),
        **common,  # type: ignore[arg-type]
    )
    assert KEY not in offline.values()
    assert offline["PATH"] == "/bin"
    assert offline["HINDSIGHT_API_LLM_PROVIDER"] == "mock"
    assert offline["HINDSIGHT_API_EMBEDDINGS_OPENAI_BASE_URL"] == "http://127.0.0.1:2/v1"
    assert offline["HINDSIGHT_API_SEMANTIC_MIN_SIMILARITY"] == "0.05"
    provider = api_environment(
        inherited,
        embeddings_port=None,
        embeddings_model=None,
        semantic_min_similarity=None,
        models=resolve_models("openai", environ={"OPENAI_API_KEY": KEY}),
        **common,  # type: ignore[arg-type]
    )
    assert provider["HINDSIGHT_API_EMBEDDINGS_OPENAI_API_KEY"] == KEY
    assert "HINDSIGHT_API_EMBEDDINGS_OPENAI_BASE_URL" not in provider  # the provider's own URL
    assert "HINDSIGHT_API_SEMANTIC_MIN_SIMILARITY" not in provider


# --- installing the embedding model -----------------------------------------------------------------------


def _executable(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _old_install(home: Path) -> None:
    """A complete server install as made before the embedding model existed (no "embedder" in the marker)."""
    venv = home / "venv"
    _executable(venv / "bin" / "hindsight-api", "exit 0\n")
    _executable(venv / "bin" / "python", "exit 0\n")
    _executable(venv / "lib" / "python3.11" / "site-packages" / "pg0" / "bin" / "pg0", "exit 0\n")
    marker = {"requirement": SERVER_REQUIREMENT, "python": "python3", "installed_at": 0}
    (venv / ".hindsight-local-installed.json").write_text(json.dumps(marker), encoding="utf-8")


def test_an_old_install_gets_the_model_alone_and_a_failure_is_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _old_install(tmp_path)
    calls = tmp_path / "uv-calls.txt"
    # A uv that lists packages fine but cannot install (as offline): the server must stay usable.
    uv = _executable(
        tmp_path / "uv",
        f'echo "$*" >> {calls}\n'
        'case "$2" in freeze) echo "numpy==2.4.6" ;; *) echo "no network" >&2; exit 2 ;; esac\n',
    )
    monkeypatch.setattr(installer_module, "find_uv", lambda: [str(uv)])
    progress: list[str] = []
    found = provision(tmp_path, on_progress=progress.append)
    assert found.embedder is None
    assert found.embedder_error is not None
    assert "exited with code 2" in found.embedder_error
    assert any("hashed vectors" in message for message in progress)
    commands = calls.read_text().splitlines()
    assert [c.split()[:2] for c in commands] == [["pip", "freeze"], ["pip", "install"]]  # no reinstall
    assert commands[1].endswith(EMBEDDER_REQUIREMENT)
    assert "--constraint" in commands[1]  # pinned to what the server has
    again = installed(tmp_path)
    assert again is not None
    assert again.embedder_error == found.embedder_error
    provision(tmp_path)  # a failure is remembered: no new attempt on every start
    assert len(calls.read_text().splitlines()) == 2
    provision(tmp_path, retry_embedder=True)  # `hindsight-local provision`
    assert len(calls.read_text().splitlines()) == 4


# --- a real server with a provider's models --------------------------------------------------------------


def _extraction(body: dict[str, object]) -> str:
    """What the server's fact extraction asks for (JSON), answered as a provider would."""
    fact = {
        "what": "Ines, the user's sister, plays the cello in an orchestra.",
        "when": "N/A",
        "where": "N/A",
        "who": "Ines (the user's sister)",
        "why": "N/A",
        "fact_type": "world",
        "entities": ["Ines"],
    }
    if body.get("response_format"):
        return json.dumps({"facts": [fact]})
    return "ok"


@pytest.mark.server
def test_the_server_runs_with_a_providers_llm_and_embeddings(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOpenAI(reply=_extraction) as fake:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        server = LocalHindsightServer(provider="openai")
        try:
            url = server.start()
            state = server.state
            assert state is not None
            assert state.llm == "openai/gpt-4o-mini"
            assert state.embeddings_model == "openai/text-embedding-3-small"
            assert state.embeddings_pid is None  # no loopback endpoint: the provider's embeddings
            bank = f"test-{uuid.uuid4().hex}"
            with HindsightClient(url) as client:
                client.create_bank(bank)
                client.retain(bank, "My sister Ines plays the cello.")
                texts = [r.text for r in client.recall(bank, "Ines sister cello orchestra").results]
            # Fact extraction went through the provider: the stored fact is the LLM's wording.
            assert any("plays the cello in an orchestra" in text for text in texts), texts
            chats = [r for r in fake.requests if r.path == "/v1/chat/completions"]
            vectors = [r for r in fake.requests if r.path == "/v1/embeddings"]
            assert chats
            assert vectors
            assert {r.header("authorization") for r in chats + vectors} == {f"Bearer {KEY}"}
            assert {r.json["model"] for r in chats} == {"gpt-4o-mini"}
            assert {r.json["model"] for r in vectors} == {"text-embedding-3-small"}
            run_dir = server.run_dir
            for path in run_dir.iterdir():  # the key reaches the server's environment only
                if path.is_file():
                    assert KEY not in path.read_text(encoding="utf-8", errors="replace"), path
        finally:
            server.stop()
