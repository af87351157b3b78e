"""The local real-server harness: the session server, start-up failure reports, embeddings, the CLI."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import hindsight_core.local.installer as installer_module
import hindsight_core.local.server as server_module
from hindsight_core.local import (
    LocalHindsightServer,
    LocalServerError,
    RunState,
    ServerInstall,
    check_health,
    cleanup_stale_runs,
)
from hindsight_core.local._process import pid_alive
from hindsight_core.local.embeddings import DIMENSIONS, embed, serve

URL = re.compile(r"http://127\.0\.0\.1:\d+")


# --- the session server --------------------------------------------------------------------------------


@pytest.mark.server
def test_session_server_is_healthy(hindsight_server: str) -> None:
    assert URL.fullmatch(hindsight_server) or os.environ.get("HINDSIGHT_TEST_API_URL")
    response = httpx.get(f"{hindsight_server}/health", timeout=10.0, trust_env=False)
    assert response.status_code == 200


@pytest.mark.server
def test_session_server_retains_and_recalls(hindsight_server: str, bank_id: str) -> None:
    with httpx.Client(base_url=hindsight_server, timeout=60.0, trust_env=False) as client:
        bank = client.put(f"/v1/default/banks/{bank_id}", json={"retain_extraction_mode": "chunks"})
        assert bank.status_code == 200, bank.text
        retained = client.post(
            f"/v1/default/banks/{bank_id}/memories",
            json={"items": [{"content": "The lighthouse keeper's cat is called Marmalade."}]},
        )
        assert retained.status_code == 200, retained.text
        recalled = client.post(
            f"/v1/default/banks/{bank_id}/memories/recall",
            json={"query": "What is the lighthouse keeper's cat called?"},
        )
        assert recalled.status_code == 200, recalled.text
        assert any("Marmalade" in result["text"] for result in recalled.json()["results"])
        client.delete(f"/v1/default/banks/{bank_id}")


# --- start-up failures name the step and its log (fake binaries: no real server, about a second) ---------


@pytest.fixture
def home() -> Iterator[Path]:
    """A cache home the pg0 user can enter when the tests run as root (tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="hindsight-local-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


_PG0_OK = """case "$1" in
  start) echo "fake pg0 $*"; echo "  PID:      999999999"; echo "PostgreSQL is running!" ;;
  *) echo "fake pg0 $*" ;;
esac
"""
_PG0_FAILS = """case "$1" in
  start) echo "initdb: error: cannot be run as root" >&2; exit 1 ;;
  *) exit 0 ;;
esac
"""


def _install(home: Path, *, pg0: str = _PG0_OK, api: str = "exit 0\n") -> ServerInstall:
    tools = home / "fake"
    tools.mkdir()
    return ServerInstall(
        venv=tools,
        api_bin=_script(tools / "hindsight-api", api),
        pg0_bin=_script(tools / "pg0", pg0),
    )


@pytest.fixture
def stopped_states(monkeypatch: pytest.MonkeyPatch) -> list[RunState]:
    """Records the state of every run that gets stopped, to check nothing is left running."""
    recorded: list[RunState] = []
    real_stop_run = server_module.stop_run

    def spy(state: RunState, **kwargs: object) -> None:
        recorded.append(RunState.from_dict(state.to_dict()))
        real_stop_run(state, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(server_module, "stop_run", spy)
    return recorded


def _assert_nothing_left(server: LocalHindsightServer, stopped: list[RunState]) -> None:
    assert server.state is None
    assert not (server.run_dir / "state.json").exists()
    assert len(stopped) == 1
    for pid in (stopped[0].api_pid, stopped[0].embeddings_pid):
        if pid is not None:
            assert not pid_alive(pid)


def test_provision_failure_names_the_step_and_log(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(installer_module, "_uv_on_path", lambda: None)
    monkeypatch.setattr(installer_module, "_uv_module_available", lambda: False)
    server = LocalHindsightServer(home=home)
    with pytest.raises(LocalServerError) as caught:
        server.start()
    error = caught.value
    assert error.step == "provision"
    assert error.log_path == server.run_dir / "provision.log"
    assert "step 'provision' failed" in str(error)
    assert str(error.log_path) in str(error)
    assert "pip install uv" in str(error)
    assert "pip install uv" in error.log_tail()
    assert not (home / "venv").exists()


def test_database_failure_names_the_step_and_log(home: Path, stopped_states: list[RunState]) -> None:
    server = LocalHindsightServer(home=home, install=_install(home, pg0=_PG0_FAILS))
    with pytest.raises(LocalServerError) as caught:
        server.start()
    error = caught.value
    assert error.step == "database"
    assert error.log_path == server.run_dir / "database.log"
    assert str(error.log_path) in str(error)
    assert "cannot be run as root" in error.reason
    details = error.details(40)
    assert str(error) in details
    assert "cannot be run as root" in details
    _assert_nothing_left(server, stopped_states)


def test_api_failure_names_the_step_and_log(home: Path, stopped_states: list[RunState]) -> None:
    api = 'echo "api exploded: $*" >&2\nexit 3\n'
    server = LocalHindsightServer(home=home, install=_install(home, api=api))
    with pytest.raises(LocalServerError) as caught:
        server.start()
    error = caught.value
    assert error.step == "api"
    assert error.log_path == server.run_dir / "api.log"
    assert "exited with code 3" in str(error)
    assert "api exploded: --host 127.0.0.1 --port" in error.log_tail()
    _assert_nothing_left(server, stopped_states)
    # The database password never reaches a log: the fake pg0 echoed its arguments.
    database_log = (server.run_dir / "database.log").read_text(encoding="utf-8")
    assert "-P *** " in database_log
    assert not re.search(r"[0-9a-f]{32}", database_log)


def test_health_timeout_names_the_step_and_stops_the_api(home: Path, stopped_states: list[RunState]) -> None:
    server = LocalHindsightServer(home=home, install=_install(home, api="sleep 60\n"), startup_timeout=1.0)
    with pytest.raises(LocalServerError) as caught:
        server.start()
    error = caught.value
    assert error.step == "health"
    assert error.log_path == server.run_dir / "api.log"
    assert "did not answer 200 within 1 s" in str(error)
    _assert_nothing_left(server, stopped_states)
    server.stop()  # idempotent


def test_invalid_settings_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="invalid run name"):
        LocalHindsightServer(name="../escape")
    with pytest.raises(ValueError, match="api_log_level"):
        LocalHindsightServer(api_log_level="loud")  # type: ignore[arg-type]


def test_stale_runs_of_dead_owners_are_stopped(home: Path) -> None:
    fake_api = _script(home / "hindsight-api", "sleep 60\n")
    api = subprocess.Popen([str(fake_api)], start_new_session=True)
    dead_owner = subprocess.Popen(["true"])
    dead_owner.wait()
    run_dir = home / "runs" / "stale"
    state = RunState(
        name="stale",
        home=str(home),
        run_dir=str(run_dir),
        owner_pid=dead_owner.pid,
        started_at=time.time(),
        api_pid=api.pid,
    )
    state.save()
    try:
        assert cleanup_stale_runs(home) == ["stale"]
        assert api.wait(timeout=15) is not None
        assert not state.state_path.exists()
        assert run_dir.is_dir()  # logs are kept
    finally:
        if api.poll() is None:
            api.kill()
            api.wait()


# --- the embeddings endpoint -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embeddings_url() -> Iterator[str]:
    server = serve(0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _post_embeddings(url: str, payload: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{url}/embeddings", json=payload, timeout=10.0, trust_env=False)


def test_embeddings_are_deterministic_unit_vectors(embeddings_url: str) -> None:
    texts = ["Alice likes green tea", "Alice likes green tea", "The deploy failed on Tuesday"]
    response = _post_embeddings(embeddings_url, {"input": texts, "model": "hashed-bow"})
    assert response.status_code == 200
    body = response.json()
    vectors = [item["embedding"] for item in body["data"]]
    assert [item["index"] for item in body["data"]] == [0, 1, 2]
    for vector in vectors:
        assert len(vector) == DIMENSIONS
        assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-9)
    assert vectors[0] == vectors[1] == embed(texts[0])
    assert vectors[0] != vectors[2]
    again = _post_embeddings(embeddings_url, {"input": texts[2]}).json()["data"][0]["embedding"]
    assert again == vectors[2]


def test_embeddings_base64_encoding_matches_floats(embeddings_url: str) -> None:
    text = "Bob moved to Lisbon in 2021"
    response = _post_embeddings(embeddings_url, {"input": [text], "encoding_format": "base64"})
    assert response.status_code == 200
    raw = base64.b64decode(response.json()["data"][0]["embedding"])
    assert len(raw) == 4 * DIMENSIONS
    decoded = struct.unpack(f"<{DIMENSIONS}f", raw)
    assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(decoded, embed(text), strict=True))
    assert math.isclose(math.sqrt(sum(v * v for v in decoded)), 1.0, rel_tol=1e-5)


def test_embeddings_reject_malformed_input(embeddings_url: str) -> None:
    assert _post_embeddings(embeddings_url, {"input": [1, 2]}).status_code == 400


# --- the command line (one extra real server start) ------------------------------------------------------


def _cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hindsight_core.local.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.server
def test_cli_start_status_stop_round_trip() -> None:
    name = f"cli-test-{os.getpid()}"
    try:
        started = _cli("start", "--name", name, timeout=280.0)
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip().splitlines()[-1]
        assert URL.fullmatch(url), started.stdout
        assert check_health(url)

        again = _cli("start", "--name", name)
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip().splitlines()[-1] == url
        assert "already running" in again.stderr

        status = _cli("status", "--name", name, "--json")
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["healthy"] is True
        assert report["url"] == url
        assert report["owner_pid"] is None  # detached: it outlived the `start` command
        assert report["llm"] == "mock"
        assert report["embeddings_model"] == "wordllama-l2-supercat-256"  # the model, not the fallback
        assert report["semantic_min_similarity"] == 0.05
        assert "embeddings: wordllama-l2-supercat-256 (256 dimensions)" in started.stderr
        pids = [report["api_pid"], report["embeddings_pid"], report["postgres_pid"]]
        assert all(isinstance(pid, int) and pid_alive(pid) for pid in pids)

        stopped = _cli("stop", "--name", name)
        assert stopped.returncode == 0, stopped.stderr
        assert not check_health(url)
        assert not any(pid_alive(pid) for pid in pids)

        after = _cli("status", "--name", name)
        assert after.returncode == 1
        assert "not running" in after.stdout
    finally:
        _cli("stop", "--name", name)
