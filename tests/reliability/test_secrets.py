"""The Hindsight API key never shows: not in logs (every logger, at DEBUG), not in the repr of anything a user
holds (clients, settings, configuration, wrappers, chains, memories, debug records), not in debug records'
``as_dict()``, not in errors, not in the outbox and dead-letter files; through every integration.

To give the key every chance to leak, the fault server answers with bodies that quote the request's
``Authorization`` header back (as some proxies and servers do in their error messages).

The client's own messages and reprs (``tests/core/test_client_faults.py``) and the storage worker's files
and errors with a fake server (``tests/core/test_storage.py``) are proven there as well.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import traceback
import uuid
from pathlib import Path

import anthropic
import openai
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.load import dumps
from langchain_core.messages import AIMessage

import hindsight_litellm as hl
from hindsight_core import APIStatusError
from hindsight_core.connection import sync_client
from hindsight_core.settings import MemorySettings
from hindsight_core.storage import StorageWorker
from hindsight_litellm import config as litellm_config
from hindsight_litellm.proxy import HindsightProxyHook
from langchain_hindsight import HindsightMiddleware, RunnableWithHindsight
from llama_index.memory.hindsight import HindsightMemory, HindsightMemoryBlock
from llama_index.memory.hindsight._core import resolve as llamaindex_settings
from tests.helpers import seed_bank
from tests.providers import FakeOpenAI
from tests.reliability.adapters import ADAPTERS, Answer, Target
from tests.reliability.conftest import forget_lookup_pauses, soon, storage_for_every_integration
from tests.reliability.hindsight_faults import Fault, HindsightFaults, Seen

pytestmark = pytest.mark.server


def _quoting(status: int) -> Fault:
    """An error answer that quotes the request's Authorization header."""

    def body(seen: Seen) -> bytes:
        return json.dumps({"detail": f"refused credentials {seen.headers.get('authorization')}"}).encode()

    return Fault(status, body, {"content-type": "application/json"})


def _unreadable(seen: Seen) -> bytes:
    return f'{{"results": [{{"text": "{seen.headers.get("authorization")}'.encode()  # cut short: not JSON


@pytest.mark.parametrize("adapter_name", list(ADAPTERS))
async def test_the_api_key_never_appears(
    adapter_name: str,
    hindsight_server: str,
    faults: HindsightFaults,
    fake_openai: FakeOpenAI,
    bank_id: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: every logger that propagates, httpx's included
    seed_bank(hindsight_server, bank_id)
    key = f"hs-secret-{uuid.uuid4().hex}"
    outbox = tmp_path / "outbox"
    worker = StorageWorker(outbox_dir=outbox, retry_initial=0.05, retry_max=0.2, warn_interval=0)
    target = Target(faults.url, bank_id, "secrets", fake_openai, worker, {"api_key": key, "max_retries": 1})
    texts: dict[str, str] = {}
    answers: list[Answer] = []
    with storage_for_every_integration(worker):
        try:
            adapter = ADAPTERS[adapter_name](target)

            # Recall answered with errors that quote the key; the turn rejected (400) the same way.
            faults.fail("recall", _quoting(500))
            faults.fail("retain", _quoting(400))
            answers.append(await adapter.ask("What is my favourite colour?"))
            faults.fail("recall", Fault(200, _unreadable, {"content-type": "application/json"}))
            answers.append(await adapter.ask("And my favourite tea?"))
            assert worker.flush(30)
            assert worker.stats().failed == 2  # rejected for good: dead-lettered

            # Healthy: a lookup and a stored turn.
            faults.clear()
            answers.append(await adapter.ask("Which city do I live in?"))
            assert worker.flush(30)

            # Down, then the process ends: the turn is deferred to the outbox.
            faults.refuse()
            answers.append(await adapter.ask("Are you there?"))
            soon(worker.pending_errors, timeout=30, what="a storage error while down")
            failures = worker.pending_errors()
            texts["pending storage errors"] = f"{failures!r} {[str(f.as_error()) for f in failures]}"
            assert worker.close(timeout=0) is False
            assert worker.stats().deferred == 1

            # Strict mode: the error quoting the key is raised to the caller. (The outage above paused
            # lookups to this server for a while: forget that, to get the server's answer.)
            faults.clear()
            forget_lookup_pauses()
            faults.fail("recall", _quoting(500))
            strict = ADAPTERS[adapter_name](
                dataclasses.replace(target, options={**target.options, "strict": True})
            )
            with pytest.raises(APIStatusError) as raised:
                await strict.ask("Strict?")
        finally:
            worker.close(timeout=0)

    # The key was sent to Hindsight, and came back in the answers: there was something to leak.
    assert f"Bearer {key}" in faults.authorizations()
    assert any(answer.record.error and "***" in answer.record.error for answer in answers)

    error = raised.value
    texts["raised error"] = "\n".join([str(error), repr(error), *traceback.format_exception(error)])
    texts["logs"] = caplog.text + "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records
    )
    captured = capsys.readouterr()
    texts["stdout/stderr"] = captured.out + captured.err
    for index, answer in enumerate(answers):
        texts[f"debug record {index}"] = f"{answer.record!r}\n{json.dumps(answer.record.as_dict())}"
        texts[f"framework metadata {index}"] = repr(answer.metadata)
    for obj in [*adapter.objects(), *strict.objects(), worker]:
        texts[f"repr of {type(obj).__name__}"] = f"{obj!r}\n{obj}"
    for obj in (adapter, strict):
        memory = getattr(obj, "memory", None)
        if memory is not None:  # LlamaIndex: what the memory serializes to (to_dict/from_dict, persistence);
            # the chat store is left out: llama-index-core 0.14.25 cannot serialize chat messages with the
            # installed pydantic (ChatMemoryBuffer fails the same way), and it holds no settings anyway.
            dumped = memory.model_dump(mode="json", exclude={"chat_store"})
            texts["LlamaIndex memory as a dict"] = json.dumps(dumped, default=str)
    settings = litellm_config.LAYERS.resolve({"api_key": key})
    texts["settings and connection"] = f"{settings!r} {settings.connection!r} {settings.model_dump_json()}"
    files = [path for path in outbox.rglob("*") if path.is_file()]
    assert {path.suffix for path in files} >= {".json", ".jsonl"}  # a deferred turn, the dead letters
    for path in files:
        texts[f"file {path.name}"] = path.read_text()

    leaked = [where for where, text in texts.items() if key in text]
    assert not leaked, f"the API key appears in: {leaked}"
    assert "***" in texts["raised error"]


def test_objects_built_with_the_key_never_show_it(hindsight_server: str) -> None:
    """Every user-facing object of every integration, built with an API key: repr, str, and what it
    serializes to."""
    key = f"hs-secret-{uuid.uuid4().hex}"
    sdk_openai = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="sk-test", max_retries=0)
    sdk_anthropic = anthropic.Anthropic(base_url="http://127.0.0.1:9", api_key="sk-test", max_retries=0)
    model = GenericFakeChatModel(messages=iter([AIMessage("ok")]))
    config = hl.configure(hindsight_api_url=hindsight_server, bank_id="b", api_key=key)
    memory = HindsightMemory.from_defaults(bank_id="b", hindsight_api_url=hindsight_server, api_key=key)
    block = HindsightMemoryBlock(bank_id="b", options={"hindsight_api_url": hindsight_server, "api_key": key})
    chain = RunnableWithHindsight(model, bank_id="b", hindsight_api_url=hindsight_server, api_key=key)
    objects: dict[str, object] = {
        "get_config()": config,
        "get_defaults()": hl.get_defaults(),
        "settings": litellm_config.LAYERS.resolve(),
        "connection": litellm_config.LAYERS.resolve().connection,
        "client": sync_client(litellm_config.LAYERS.resolve().connection),
        "wrap_openai": hl.wrap_openai(sdk_openai, api_key=key, bank_id="b"),
        "wrap_anthropic": hl.wrap_anthropic(sdk_anthropic, api_key=key, bank_id="b"),
        "HindsightProxyHook": HindsightProxyHook(api_key=key, bank_id="b"),
        "RunnableWithHindsight": chain,
        "HindsightMiddleware": HindsightMiddleware(bank_id="b", api_key=key),
        "HindsightMemory": memory,
        "HindsightMemoryBlock": block,
    }
    texts = {name: f"{obj!r}\n{obj}" for name, obj in objects.items()}
    texts["RunnableWithHindsight as JSON"] = dumps(chain)
    texts["HindsightMemory as a dict"] = json.dumps(memory.to_dict(), default=str)
    texts["HindsightMemoryBlock as a dict"] = json.dumps(block.model_dump(mode="json"), default=str)
    leaked = [name for name, text in texts.items() if key in text]
    assert not leaked, f"the API key appears in: {leaked}"
    # ... while the key is still what is sent.
    assert memory.settings.connection.api_key == key
    assert block_settings(block).connection.api_key == key


def block_settings(block: HindsightMemoryBlock) -> MemorySettings:
    return llamaindex_settings(block._core)
