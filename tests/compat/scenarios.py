"""Public-API scenarios of hindsight-litellm, run against whichever version this interpreter imports.

Run by :mod:`tests.compat.compare` twice, in two processes: with the published 0.5.4 (an isolated venv)
and with ours (the workspace). Each scenario uses only what an application can see: the public functions,
their return values and exceptions, warnings, the state getters, ``litellm.completion`` itself, and what a
loopback provider received. It returns a JSON-able observation; the comparison reports every difference.

Usage: ``python tests/compat/scenarios.py --server URL --seeded BANK --out FILE`` (the seeded bank holds the
facts of :data:`FACTS`, stored verbatim). Only the standard library, LiteLLM, hindsight-litellm and
``tests.providers`` (the loopback provider, which needs pytest) are imported.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import argparse
import asyncio
import dataclasses
import enum
import json
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import litellm

import hindsight_litellm as hl
from hindsight_litellm import config as hl_config
from tests.providers import FakeOpenAI

FACTS = (
    "The user's favourite colour is teal.",
    "The user is building a FastAPI application.",
)
DEFAULT_BANK_FACTS = ("The user's lucky number is 4711.",)
"""Stored in the bank named ``default``: what an SDK wrapper without a bank recalls (0.5.4's default)."""
DEFAULT_FACT_MARK = "4711"
QUESTION = "What colour does the user like, and what are they building?"
ENV = ("HINDSIGHT_API_URL", "HINDSIGHT_API_KEY", "HINDSIGHT_BANK_ID")
ERRORS = ("HindsightError", "ValueError", "RuntimeError", "TypeError")

Observation = dict[str, Any]
Scenario = Callable[["Context"], Observation]
SCENARIOS: dict[str, Scenario] = {}


def scenario(function: Scenario) -> Scenario:
    SCENARIOS[function.__name__] = function
    return function


@dataclasses.dataclass
class Context:
    server: str
    seeded: str
    provider: FakeOpenAI
    dead: str  # a URL where nothing listens

    def call(self, **kwargs: Any) -> dict[str, Any]:
        """Keyword arguments of a LiteLLM call to the loopback provider."""
        messages = kwargs.pop("messages", [{"role": "user", "content": QUESTION}])
        return {
            "model": kwargs.pop("model", "gpt-4o-mini"),
            "api_base": self.provider.base_url,
            "api_key": "sk-test",
            "messages": messages,
            **kwargs,
        }

    def sent(self) -> list[list[dict[str, Any]]]:
        """The message lists the provider received, oldest first (and forget them)."""
        bodies = [request.json or {} for request in self.provider.requests]
        self.provider.clear()
        return [body.get("messages", []) for body in bodies]

    def bank(self) -> str:
        return f"compat-{uuid.uuid4().hex[:10]}"


# ------------------------------------------------------------------------------------------- describing


def describe(value: Any) -> Any:
    """A JSON-able picture of ``value``: dataclasses as their fields, enums as their values."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return describe(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {item.name: describe(getattr(value, item.name)) for item in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(key): describe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [describe(item) for item in value]
    return f"<{type(value).__name__}>"


def names(items: Any) -> dict[str, bool]:
    """A set, as a dict, so that the comparison tells missing items from added ones."""
    return {str(item): True for item in items}


def error_kinds(error: BaseException) -> dict[str, bool]:
    bases = {"HindsightError": hl.HindsightError, "ValueError": ValueError, "RuntimeError": RuntimeError}
    kinds = {name: isinstance(error, cls) for name, cls in bases.items()}
    kinds["TypeError"] = isinstance(error, TypeError)
    return kinds


def attempt(function: Callable[[], Any], *mentions: str) -> Observation:
    """What calling ``function`` does: its result, or the kinds of error it raises and whether the
    message mentions each of ``mentions``."""
    try:
        return {"returns": describe(function())}
    except Exception as exc:
        text = str(exc)
        return {"raises": error_kinds(exc), "mentions": {word: word in text for word in mentions}}


def caught(function: Callable[[], Any]) -> tuple[Any, list[dict[str, Any]]]:
    """``function()``'s result and the warnings about memory it raised (category, and what they name)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = function()
    shown = []
    for w in seen:
        text = str(w.message)
        if any(word in text for word in ("document_id", "HindsightCallback", "Hindsight")):
            shown.append(
                {
                    "category": w.category.__name__,
                    "names_session_id": "session_id" in text,
                    "names_callback": "HindsightCallback" in text,
                }
            )
    return result, shown


def memory_blocks(messages: list[dict[str, Any]], fact: str = "teal") -> dict[str, Any]:
    """What memory reached the provider: how many memory blocks, whether the fact is in them, and in which
    roles."""
    roles = []
    blocks = 0
    for message in messages:
        content = message.get("content")
        text = content if isinstance(content, str) else json.dumps(content)
        found = text.count("Relevant Memories")
        blocks += found
        if found or fact in text:
            roles.append(message.get("role"))
    everything = json.dumps(messages)
    return {
        "blocks": blocks,
        "fact": fact in everything,
        "roles": sorted(set(roles)),
        "first_role": messages[0].get("role") if messages else None,
    }


def patched() -> bool:
    """Whether ``litellm.completion`` is something else than LiteLLM's own function."""
    return getattr(litellm.completion, "__module__", "").split(".")[0] != "litellm"


# ----------------------------------------------------------------------------------------------- scenarios


@scenario
def module_constants(ctx: Context) -> Observation:
    return {
        "DEFAULT_HINDSIGHT_API_URL": getattr(hl_config, "DEFAULT_HINDSIGHT_API_URL", None),
        "DEFAULT_BANK_ID": getattr(hl_config, "DEFAULT_BANK_ID", None),
        "HINDSIGHT_API_KEY_ENV": getattr(hl_config, "HINDSIGHT_API_KEY_ENV", None),
    }


@scenario
def module_names(ctx: Context) -> Observation:
    """Names applications import from the package's modules (0.5.4's module layout)."""
    import importlib

    wanted = {
        "config": """HindsightCallSettings HindsightConfig HindsightDefaults MemoryInjectionMode configure
            get_config get_defaults is_configured reset_config set_bank_mission set_defaults""".split(),
        "wrappers": """HindsightAnthropic HindsightOpenAI RecallDebugInfo RecallResponse RecallResult
            ReflectDebugInfo ReflectResult RetainDebugInfo RetainResult arecall areflect aretain
            get_pending_retain_errors recall reflect retain wrap_anthropic wrap_openai""".split(),
        "callbacks": "HindsightCallback HindsightError cleanup_callback get_callback".split(),
    }
    found = {}
    for module, names_wanted in wanted.items():
        loaded = importlib.import_module(f"hindsight_litellm.{module}")
        found[module] = {name: hasattr(loaded, name) for name in names_wanted}
    return found


@scenario
def public_names(ctx: Context) -> Observation:
    return {"__all__": names(hl.__all__), "resolvable": all(hasattr(hl, name) for name in hl.__all__)}


@scenario
def injection_mode_enum(ctx: Context) -> Observation:
    mode = hl.MemoryInjectionMode
    return {
        "members": {member.name: member.value for member in mode},
        "is_str": issubclass(mode, str),
        "from_value": describe(mode("prepend_user")),
        "equals_string": str(mode.SYSTEM_MESSAGE.value) == "system_message"
        and mode.SYSTEM_MESSAGE in ("system_message",),
    }


@scenario
def result_types(ctx: Context) -> Observation:
    fields = {
        name: names(item.name for item in dataclasses.fields(getattr(hl, name)))
        for name in (
            "HindsightConfig",
            "HindsightDefaults",
            "InjectionDebugInfo",
            "RecallResult",
            "RecallResponse",
            "RecallDebugInfo",
            "ReflectResult",
            "ReflectDebugInfo",
            "RetainResult",
            "RetainDebugInfo",
        )
    }
    return {
        "fields": fields,
        "HindsightConfig()": attempt(hl.HindsightConfig),
        "HindsightCallSettings_in_config": hasattr(hl_config, "HindsightCallSettings"),
        "HindsightCallSettings()": attempt(hl_config.HindsightCallSettings),
        "defaults_alias": hl.HindsightDefaults is hl_config.HindsightCallSettings,
        "error_is_exception": issubclass(hl.HindsightError, Exception),
    }


@scenario
def fresh_state(ctx: Context) -> Observation:
    return {
        "get_config": describe(hl.get_config()),
        "get_defaults": describe(hl.get_defaults()),
        "is_configured": hl.is_configured(),
        "is_enabled": hl.is_enabled(),
        "last_debug": describe(hl.get_last_injection_debug()),
        "storage_errors": describe(hl.get_pending_storage_errors()),
        "retain_errors": describe(hl.get_pending_retain_errors()),
        "litellm_patched": patched(),
    }


@scenario
def configure_url_only(ctx: Context) -> Observation:
    returned = hl.configure(hindsight_api_url=ctx.server)
    return {
        "returned": describe(returned),
        "returned_is_config": isinstance(returned, hl.HindsightConfig),
        "get_config": describe(hl.get_config()),
        "get_defaults": describe(hl.get_defaults()),
        "is_configured": hl.is_configured(),
    }


@scenario
def configure_defaults(ctx: Context) -> Observation:
    config = hl.configure()
    return {"hindsight_api_url": config.hindsight_api_url, "api_key": config.api_key}


@scenario
def configure_api_key_from_environment(ctx: Context) -> Observation:
    os.environ["HINDSIGHT_API_KEY"] = "hs-env-key"
    config = hl.configure(hindsight_api_url=ctx.server)
    return {"api_key": config.api_key, "get_config_key": hl.get_config().api_key}  # type: ignore[union-attr]


@scenario
def configure_url_from_environment(ctx: Context) -> Observation:
    os.environ["HINDSIGHT_API_URL"] = ctx.server
    return {"hindsight_api_url": hl.configure().hindsight_api_url}


@scenario
def configure_with_bank(ctx: Context) -> Observation:
    config = hl.configure(hindsight_api_url=ctx.server, bank_id="bank-a")
    return {"bank_id": config.bank_id, "is_configured": hl.is_configured(), "config": describe(config)}


@scenario
def configure_every_option(ctx: Context) -> Observation:
    config = hl.configure(
        hindsight_api_url=ctx.server,
        api_key="hs-key",
        excluded_models=["gpt-3.5*"],
        sync_storage=True,
        bank_id="bank-b",
        session_id="session-1",
        store_conversations=False,
        inject_memories=False,
        injection_mode=hl.MemoryInjectionMode.PREPEND_USER,
        budget="high",
        fact_types=["world", "experience"],
        max_memories=5,
        max_memory_tokens=1000,
        include_entities=False,
        trace=True,
        tags=["t1"],
        recall_tags=["r1"],
        recall_tags_match="all",
        use_reflect=True,
        reflect_context="ctx",
        reflect_response_schema={"type": "object"},
        reflect_include_facts=True,
        verbose=False,
    )
    return {
        "config": describe(config),
        "get_config": describe(hl.get_config()),
        "properties": {
            "bank_id": config.bank_id,
            "store_conversations": config.store_conversations,
            "inject_memories": config.inject_memories,
            "injection_mode": describe(config.injection_mode),
            "verbose": config.verbose,
        },
    }


@scenario
def configure_twice(ctx: Context) -> Observation:
    hl.configure(hindsight_api_url=ctx.server, bank_id="bank-a", budget="high", tags=["t"])
    hl.configure(hindsight_api_url=ctx.server, verbose=False)
    defaults = hl.get_defaults()
    assert defaults is not None
    return {"bank_id": defaults.bank_id, "budget": defaults.budget, "tags": defaults.tags}


@scenario
def set_defaults_without_configure(ctx: Context) -> Observation:
    returned = hl.set_defaults(bank_id="bank-c", budget="low")
    config = hl.get_config()
    return {
        "returned": describe(returned),
        "returned_is_settings": isinstance(returned, hl_config.HindsightCallSettings),
        "get_config_is_none": config is None,
        "hindsight_api_url": config.hindsight_api_url if config else None,
        "is_configured": hl.is_configured(),
    }


@scenario
def set_defaults_changes_only_what_is_given(ctx: Context) -> Observation:
    hl.configure(hindsight_api_url=ctx.server, bank_id="bank-a", budget="high", max_memories=3)
    returned = hl.set_defaults(tags=["x"], use_reflect=True)
    return {"returned": describe(returned), "get_defaults": describe(hl.get_defaults())}


@scenario
def fact_types_read_back(ctx: Context) -> Observation:
    hl.configure(hindsight_api_url=ctx.server, bank_id="b", fact_types=["world", "opinion", "agent"])
    first = list(hl.get_defaults().fact_types or [])  # type: ignore[union-attr]
    hl.set_defaults(fact_types=["experience", "observation"])
    second = list(hl.get_defaults().fact_types or [])  # type: ignore[union-attr]
    return {"configured": first, "set_defaults": second}


@scenario
def document_id_deprecated(ctx: Context) -> Observation:
    _, on_configure = caught(lambda: hl.configure(hindsight_api_url=ctx.server, document_id="doc-1"))
    _, on_set_defaults = caught(lambda: hl.set_defaults(document_id="doc-2"))
    _, with_session = caught(lambda: hl.configure(hindsight_api_url=ctx.server, session_id="s-1"))
    both = hl_config.HindsightCallSettings(session_id="s", document_id="d")
    return {
        "configure_warns": on_configure,
        "set_defaults_warns": on_set_defaults,
        "session_id_warns": with_session,
        "effective_document_id_both": both.effective_document_id,
        "effective_document_id_document_only": hl_config.HindsightCallSettings(
            document_id="d"
        ).effective_document_id,
    }


def _accepted(**options: Any) -> bool:
    return "returns" in attempt(lambda: hl.configure(**options))


def _outcome(**options: Any) -> Observation:
    """Whether ``configure(**options)`` is accepted, or the kinds of error it raises."""
    outcome = attempt(lambda: hl.configure(**options))
    return {"accepted": True} if "returns" in outcome else {"raises": outcome["raises"]}


@scenario
def validation_errors(ctx: Context) -> Observation:
    return {
        "configure_budget": attempt(lambda: hl.configure(budget="huge"), "budget", "huge"),
        "set_defaults_budget": attempt(lambda: hl.set_defaults(budget="huge"), "budget"),
        "configure_tags_match": attempt(lambda: hl.configure(recall_tags_match="some"), "recall_tags_match"),
        "set_defaults_tags_match": attempt(lambda: hl.set_defaults(recall_tags_match="some")),
        "injection_mode_string": attempt(
            lambda: hl.configure(hindsight_api_url=ctx.server, injection_mode="prepend_user").injection_mode
        ),
        "injection_mode_invalid": _outcome(injection_mode="bogus"),
        "fact_type_invalid": _outcome(fact_types=["feelings"]),
        "max_memories_negative": _outcome(max_memories=-1),
        "budget_values": {budget: _accepted(budget=budget) for budget in ("low", "mid", "high")},
        "tags_match_values": {
            match: _accepted(recall_tags_match=match) for match in ("any", "all", "any_strict", "all_strict")
        },
    }


@scenario
def enable_without_configure(ctx: Context) -> Observation:
    return {"enable": attempt(hl.enable, "configure()"), "is_enabled": hl.is_enabled(), "patched": patched()}


@scenario
def enable_without_bank(ctx: Context) -> Observation:
    hl.configure(hindsight_api_url=ctx.server)
    return {
        "enable": attempt(hl.enable, "bank_id", "set_defaults(bank_id=...)"),
        "is_enabled": hl.is_enabled(),
    }


@scenario
def enable_disable_cycle(ctx: Context) -> Observation:
    hl.configure(hindsight_api_url=ctx.server, bank_id="bank-a")
    original = litellm.completion
    hl.enable()
    enabled = {"is_enabled": hl.is_enabled(), "patched": patched()}
    again = attempt(hl.enable)
    hl.disable()
    disabled = {
        "is_enabled": hl.is_enabled(),
        "patched": patched(),
        "original_back": litellm.completion is original,
    }
    return {
        "enabled": enabled,
        "enable_again": again,
        "disabled": disabled,
        "disable_again": attempt(hl.disable),
    }


@scenario
def enable_with_callback_registered(ctx: Context) -> Observation:
    hl.configure(hindsight_api_url=ctx.server, bank_id=ctx.seeded, store_conversations=False)
    callback = hl.get_callback()
    litellm.callbacks = [callback]
    _, shown = caught(hl.enable)
    hl.completion(**ctx.call())
    time.sleep(0.5)
    sent = ctx.sent()
    return {
        "warnings": shown,
        "is_callback": isinstance(callback, hl.HindsightCallback),
        "blocks": memory_blocks(sent[-1]) if sent else None,
    }


@scenario
def enable_then_completion_injects_once(ctx: Context) -> Observation:
    hl.configure(hindsight_api_url=ctx.server, bank_id=ctx.seeded, store_conversations=False)
    hl.enable()
    hl.completion(**ctx.call())
    litellm.completion(**ctx.call())
    sent = ctx.sent()
    return {
        "calls": len(sent),
        "hindsight_completion": memory_blocks(sent[0]),
        "litellm": memory_blocks(sent[1]),
    }


@scenario
def cleanup_resets_everything(ctx: Context) -> Observation:
    hl.configure(hindsight_api_url=ctx.server, bank_id="bank-a")
    hl.enable()
    hl.cleanup()
    return {
        "get_config": describe(hl.get_config()),
        "is_configured": hl.is_configured(),
        "is_enabled": hl.is_enabled(),
        "patched": patched(),
    }


@scenario
def reset_config_forgets(ctx: Context) -> Observation:
    hl.configure(hindsight_api_url=ctx.server, bank_id="bank-a")
    hl.reset_config()
    return {
        "get_config": describe(hl.get_config()),
        "get_defaults": describe(hl.get_defaults()),
        "is_configured": hl.is_configured(),
    }


@scenario
def context_manager_fresh(ctx: Context) -> Observation:
    original = litellm.completion
    with hl.hindsight_memory(hindsight_api_url=ctx.server, bank_id=ctx.seeded, store_conversations=False):
        inside = {
            "get_config": describe(hl.get_config()),
            "get_defaults": describe(hl.get_defaults()),
            "is_enabled": hl.is_enabled(),
            "is_configured": hl.is_configured(),
            "patched": patched(),
        }
        litellm.completion(**ctx.call())
    after = {
        "get_config": describe(hl.get_config()),
        "get_defaults": describe(hl.get_defaults()),
        "is_enabled": hl.is_enabled(),
        "is_configured": hl.is_configured(),
        "patched": patched(),
        "original_back": litellm.completion is original,
    }
    sent = ctx.sent()
    return {"inside": inside, "after": after, "blocks": memory_blocks(sent[0]) if sent else None}


@scenario
def context_manager_over_a_configuration(ctx: Context) -> Observation:
    hl.configure(
        hindsight_api_url=ctx.server,
        api_key="hs-configured",
        bank_id="bank-outer",
        budget="high",
        tags=["outer"],
        recall_tags=["outer"],
        use_reflect=True,
        reflect_context="outer context",
        sync_storage=True,
        max_memories=2,
        excluded_models=["gpt-3.5*"],
    )
    hl.enable()
    before = (describe(hl.get_config()), describe(hl.get_defaults()))
    with hl.hindsight_memory(bank_id="bank-inner"):
        config = hl.get_config()
        defaults = hl.get_defaults()
        inside = {
            "hindsight_api_url_is_configured_one": config.hindsight_api_url == ctx.server if config else None,
            "api_key": config.api_key if config else None,
            "sync_storage": config.sync_storage if config else None,
            "excluded_models": config.excluded_models if config else None,
            "defaults": describe(defaults),
            "is_enabled": hl.is_enabled(),
        }
    after = (describe(hl.get_config()), describe(hl.get_defaults()))
    return {"inside": inside, "restored": after == before, "is_enabled_after": hl.is_enabled()}


@scenario
def context_manager_needs_a_bank(ctx: Context) -> Observation:
    def enter() -> None:
        with hl.hindsight_memory(hindsight_api_url=ctx.server):
            pass

    return {
        "enter": attempt(enter, "bank_id"),
        "get_config": describe(hl.get_config()),
        "is_enabled": hl.is_enabled(),
    }


@scenario
def context_manager_restores_after_an_exception(ctx: Context) -> Observation:
    hl.configure(hindsight_api_url=ctx.server, bank_id="bank-a", budget="low")
    hl.enable()
    before = describe(hl.get_config())

    def fail() -> None:
        with hl.hindsight_memory(hindsight_api_url=ctx.server, bank_id="bank-b", budget="high"):
            raise KeyError("inside")

    try:
        fail()
        raised = False
    except KeyError:
        raised = True
    return {"raised": raised, "restored": describe(hl.get_config()) == before, "is_enabled": hl.is_enabled()}


@scenario
def context_manager_nested(ctx: Context) -> Observation:
    with hl.hindsight_memory(hindsight_api_url=ctx.server, bank_id="outer", budget="high"):
        with hl.hindsight_memory(hindsight_api_url=ctx.server, bank_id="inner"):
            inner = describe(hl.get_defaults())
        outer = describe(hl.get_defaults())
    return {"inner": inner, "outer": outer, "after": describe(hl.get_defaults())}


@scenario
def context_manager_document_id(ctx: Context) -> Observation:
    def run() -> Any:
        with hl.hindsight_memory(hindsight_api_url=ctx.server, bank_id="b", document_id="d"):
            return hl.get_defaults()

    defaults, shown = caught(run)
    return {"warnings": shown, "document_id": defaults.document_id if defaults else None}


@scenario
def direct_apis_unconfigured(ctx: Context) -> Observation:
    return {
        "recall": attempt(lambda: hl.recall("anything"), "configure()"),
        "reflect": attempt(lambda: hl.reflect("anything"), "configure()"),
        "retain": attempt(lambda: hl.retain("anything"), "configure()"),
        "set_bank_mission": attempt(lambda: hl.set_bank_mission("m"), "bank_id"),
    }


def _recall_view(response: Any) -> Observation:
    first = response[0] if len(response) else None
    return {
        "iterable": [type(item).__name__ for item in response][:1],
        "len_positive": len(response) > 0,
        "bool": bool(response),
        "has_teal": any("teal" in item.text for item in response),
        "first": {
            "text_is_str": isinstance(first.text, str),
            "fact_type_is_str": isinstance(first.fact_type, str),
            "weight_is_float": isinstance(first.weight, float),
            "str_is_text": str(first) == first.text,
        }
        if first is not None
        else None,
        "debug": describe(response.debug) if response.debug is None else names(vars(response.debug)),
    }


@scenario
def recall_result_shape(ctx: Context) -> Observation:
    hl.configure(hindsight_api_url=ctx.server, bank_id=ctx.seeded)
    quiet = _recall_view(hl.recall(QUESTION, budget="mid"))
    hl.configure(hindsight_api_url=ctx.server, bank_id=ctx.seeded, verbose=True)
    loud = hl.recall(QUESTION)
    debug = loud.debug
    return {
        "quiet": quiet,
        "verbose": _recall_view(loud),
        "debug_values": {
            "bank_id": debug.bank_id,
            "budget": debug.budget,
            "max_tokens": debug.max_tokens,
            "api_url_is_server": debug.api_url == ctx.server,
        }
        if debug is not None
        else None,
        "unknown_bank": attempt(lambda: len(hl.recall(QUESTION, bank_id=ctx.bank()))),
    }


@scenario
def async_recall(ctx: Context) -> Observation:
    hl.configure(hindsight_api_url=ctx.server, bank_id=ctx.seeded)
    response = asyncio.run(hl.arecall(QUESTION))
    return {"has_teal": any("teal" in item.text for item in response), "type": type(response).__name__}


@scenario
def reflect_result_shape(ctx: Context) -> Observation:
    hl.configure(hindsight_api_url=ctx.server, bank_id=ctx.seeded)
    result = hl.reflect(QUESTION, context="a test")
    loud = None
    hl.configure(hindsight_api_url=ctx.server, bank_id=ctx.seeded, verbose=True)
    loud = hl.reflect(QUESTION)
    return {
        "type": type(result).__name__,
        "text_is_str": isinstance(result.text, str),
        "str_is_text": str(result) == result.text,
        "debug": describe(result.debug),
        "verbose_debug_fields": names(vars(loud.debug)) if loud.debug is not None else None,
    }


@scenario
def retain_result_shape(ctx: Context) -> Observation:
    bank = ctx.bank()
    hl.configure(hindsight_api_url=ctx.server, bank_id=bank)
    background = hl.retain("The user's cat is called Miso.", context="pets")
    synchronous = hl.retain("The user's dog is called Pico.", sync=True)
    hl.configure(hindsight_api_url=ctx.server, bank_id=bank, verbose=True)
    loud = hl.retain("The user's fish is called Bubbles.", sync=True)
    return {
        "background": {
            "success": background.success,
            "bool": bool(background),
            "debug": describe(background.debug),
        },
        "sync": {
            "success": synchronous.success,
            "bool": bool(synchronous),
            "debug": describe(synchronous.debug),
        },
        "verbose_debug": names(vars(loud.debug)) if loud.debug is not None else None,
        "async": describe(asyncio.run(hl.aretain("The user's bird is called Kiwi.", sync=True)).success),
    }


@scenario
def completion_unconfigured(ctx: Context) -> Observation:
    result = attempt(lambda: type(hl.completion(**ctx.call())).__name__)
    sent = ctx.sent()
    return {"result": result, "sent_unchanged": bool(sent) and len(sent[0]) == 1}


@scenario
def completion_configured_without_bank(ctx: Context) -> Observation:
    hl.configure(hindsight_api_url=ctx.server)
    result = attempt(lambda: type(hl.completion(**ctx.call())).__name__, "bank_id")
    return {"result": result, "provider_called": bool(ctx.sent())}


@scenario
def completion_injects_into_the_system_message(ctx: Context) -> Observation:
    hl.configure(hindsight_api_url=ctx.server, bank_id=ctx.seeded, verbose=True, store_conversations=False)
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": QUESTION}]
    response = hl.completion(**ctx.call(messages=messages))
    sent = ctx.sent()
    debug = hl.get_last_injection_debug()
    first = sent[0][0]
    return {
        "response_type": type(response).__name__,
        "blocks": memory_blocks(sent[0]),
        "system_first_and_kept": first.get("role") == "system"
        and str(first.get("content")).startswith("You are terse."),
        "message_count": len(sent[0]),
        "caller_list_unchanged": len(messages) == 2 and messages[0]["content"] == "You are terse.",
        "debug": {
            "mode": debug.mode,
            "query": debug.query,
            "bank_id_is_seeded": debug.bank_id == ctx.seeded,
            "injected": debug.injected,
            "results_count_positive": debug.results_count > 0,
            "context_has_fact": "teal" in debug.memory_context,
            "recall_results_are_dicts": all(isinstance(r, dict) for r in debug.recall_results or []),
            "recall_result_keys": names(sorted({k for r in debug.recall_results or [] for k in r})),
            "error": debug.error,
        }
        if debug is not None
        else None,
    }


@scenario
def completion_prepend_user(ctx: Context) -> Observation:
    hl.configure(
        hindsight_api_url=ctx.server,
        bank_id=ctx.seeded,
        injection_mode=hl.MemoryInjectionMode.PREPEND_USER,
        store_conversations=False,
    )
    hl.completion(**ctx.call())
    sent = ctx.sent()
    last = sent[0][-1]
    return {
        "blocks": memory_blocks(sent[0]),
        "question_kept": QUESTION in str(last.get("content")),
        "message_count": len(sent[0]),
    }


@scenario
def completion_debug_without_verbose(ctx: Context) -> Observation:
    hl.configure(hindsight_api_url=ctx.server, bank_id=ctx.seeded, store_conversations=False)
    hl.completion(**ctx.call())
    ctx.sent()
    debug = hl.get_last_injection_debug()
    hl.clear_injection_debug()
    return {"debug_made": debug is not None, "after_clear": describe(hl.get_last_injection_debug())}


@scenario
def completion_reflect_mode(ctx: Context) -> Observation:
    hl.configure(
        hindsight_api_url=ctx.server,
        bank_id=ctx.seeded,
        use_reflect=True,
        verbose=True,
        store_conversations=False,
    )
    hl.completion(**ctx.call())
    sent = ctx.sent()
    debug = hl.get_last_injection_debug()
    return {
        "first_role": sent[0][0].get("role") if sent else None,
        "debug_mode": debug.mode if debug else None,
        "injected": debug.injected if debug else None,
        "results_count": debug.results_count if debug else None,
    }


@scenario
def completion_per_call_options_stay_out_of_the_request(ctx: Context) -> Observation:
    hl.configure(hindsight_api_url=ctx.server, bank_id="someone-else", store_conversations=False)
    hl.completion(
        **ctx.call(),
        hindsight_bank_id=ctx.seeded,
        hindsight_query="favourite colour",
        hindsight_budget="high",
        hindsight_max_memories=1,
    )
    body = ctx.provider.requests[-1].json or {}
    ctx.sent()
    return {"leaked": sorted(key for key in body if key.startswith("hindsight_"))}


@scenario
def completion_server_down(ctx: Context) -> Observation:
    hl.configure(hindsight_api_url=ctx.dead, bank_id="bank-a", store_conversations=False, verbose=True)
    result = attempt(lambda: type(hl.completion(**ctx.call())).__name__)
    debug = hl.get_last_injection_debug()
    ctx.sent()
    return {
        "result": result,
        "injected": debug.injected if debug else None,
        "error_recorded": bool(debug and debug.error),
    }


@scenario
def completion_sees_a_mock_of_litellm(ctx: Context) -> Observation:
    hl.configure(hindsight_api_url=ctx.server, bank_id=ctx.seeded, store_conversations=False)
    with mock.patch("litellm.completion") as spy:
        spy.return_value = "mocked"
        returned = hl.completion(**ctx.call())
    seen = spy.call_args.kwargs.get("messages") if spy.call_args else None
    hl.enable()
    with mock.patch("litellm.completion") as spy_enabled:
        spy_enabled.return_value = "mocked"
        hl.completion(**ctx.call())
    seen_enabled = spy_enabled.call_args.kwargs.get("messages") if spy_enabled.call_args else None
    return {
        "returned": returned,
        "mock_called": spy.called,
        "mock_got_memory": memory_blocks(seen) if seen else None,
        "enabled_mock_got_memory": memory_blocks(seen_enabled) if seen_enabled else None,
        "provider_called": bool(ctx.sent()),
    }


@scenario
def acompletion_injects(ctx: Context) -> Observation:
    hl.configure(hindsight_api_url=ctx.server, bank_id=ctx.seeded, store_conversations=False)
    asyncio.run(hl.acompletion(**ctx.call()))
    sent = ctx.sent()
    return {"blocks": memory_blocks(sent[0]) if sent else None}


@scenario
def excluded_models_skip_memory(ctx: Context) -> Observation:
    hl.configure(
        hindsight_api_url=ctx.server,
        bank_id=ctx.seeded,
        excluded_models=["gpt-4o*"],
        store_conversations=False,
    )
    hl.enable()
    litellm.completion(**ctx.call())
    patched_path = ctx.sent()
    hl.completion(**ctx.call())
    direct = ctx.sent()
    litellm.completion(**ctx.call(model="gpt-4.1-mini"))
    not_excluded = ctx.sent()
    return {
        "litellm_completion": memory_blocks(patched_path[0]) if patched_path else None,
        "hindsight_completion": memory_blocks(direct[0]) if direct else None,
        "other_model": memory_blocks(not_excluded[0]) if not_excluded else None,
    }


@scenario
def wrap_openai_client(ctx: Context) -> Observation:
    import openai

    client = openai.OpenAI(base_url=ctx.provider.base_url, api_key="sk-test")
    wrapped = hl.wrap_openai(
        client, bank_id=ctx.seeded, hindsight_api_url=ctx.server, store_conversations=False
    )
    response = wrapped.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": QUESTION}]
    )
    sent = ctx.sent()
    default_bank = hl.wrap_openai(client, hindsight_api_url=ctx.server, store_conversations=False)
    default_bank.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "What is the user's lucky number?"}]
    )
    from_default = ctx.sent()
    return {
        "type_is_public": isinstance(wrapped, hl.HindsightOpenAI),
        "response_type": type(response).__name__,
        "blocks": memory_blocks(sent[0]) if sent else None,
        "passthrough_models": hasattr(wrapped, "models"),
        "has_close": callable(getattr(wrapped, "close", None)),
        "default_bank_used": bool(from_default)
        and memory_blocks(from_default[0], DEFAULT_FACT_MARK)["count"] > 0,
    }


@scenario
def callback_registered_without_enable(ctx: Context) -> Observation:
    hl.configure(hindsight_api_url=ctx.server, bank_id=ctx.seeded, store_conversations=False)
    litellm.callbacks = [hl.get_callback()]
    litellm.completion(**ctx.call())
    sync_sent = ctx.sent()
    asyncio.run(litellm.acompletion(**ctx.call()))
    async_sent = ctx.sent()
    return {
        "sync": memory_blocks(sync_sent[0]) if sync_sent else None,
        "async": memory_blocks(async_sent[0]) if async_sent else None,
    }


@scenario
def callback_helpers(ctx: Context) -> Observation:
    callback = hl.get_callback()
    same = hl.get_callback() is callback
    hl.cleanup_callback()
    return {"is_callback": isinstance(callback, hl.HindsightCallback), "shared": same}


@scenario  # last: ours keeps retrying the turn, and every cleanup() after it waits for storage
def retain_when_the_server_is_down(ctx: Context) -> Observation:
    hl.configure(hindsight_api_url=ctx.dead, bank_id="bank-a")
    background = attempt(lambda: hl.retain("lost?").success)
    synchronous = attempt(lambda: hl.retain("lost?", sync=True).success)
    errors: list[Any] = []
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and not errors:
        time.sleep(0.2)
        errors = hl.get_pending_retain_errors()
    return {
        "background": background,
        "sync_raises": "raises" in synchronous,
        "errors_reported": bool(errors),
        "errors_are_exceptions": all(isinstance(e, Exception) for e in errors),
        "cleared_once_returned": errors != [] and hl.get_pending_retain_errors() == [],
    }


# -------------------------------------------------------------------------------------------------- running


@contextmanager
def clean_environment() -> Iterator[None]:
    saved = {name: os.environ.pop(name, None) for name in ENV}
    try:
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


_CALLBACK_LISTS = (
    "callbacks",
    "input_callback",
    "success_callback",
    "_async_success_callback",
    "failure_callback",
    "_async_failure_callback",
)


def reset() -> None:
    """Leave nothing of a scenario to the next one (LiteLLM copies a registered callback into its lists)."""
    for name in _CALLBACK_LISTS:
        registered = getattr(litellm, name, None)
        if isinstance(registered, list):
            registered[:] = [c for c in registered if not isinstance(c, hl.HindsightCallback)]
    hl.disable()
    hl.cleanup()
    hl.reset_config()
    hl.clear_injection_debug()
    hl.get_pending_storage_errors()
    hl.get_pending_retain_errors()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--seeded", required=True)
    parser.add_argument("--dead", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    observations: dict[str, Any] = {}
    with FakeOpenAI() as provider:
        ctx = Context(server=args.server, seeded=args.seeded, provider=provider, dead=args.dead)
        for name, function in SCENARIOS.items():
            if args.only and name not in args.only:
                continue
            with clean_environment():
                began = time.monotonic()
                try:
                    observations[name] = function(ctx)
                except Exception as exc:
                    observations[name] = {"scenario_failed": f"{type(exc).__name__}: {exc}"}
                    traceback.print_exc()
                finally:
                    provider.clear()
                    reset()
                    took = time.monotonic() - began
                    if took > 2:
                        print(f"scenario {name} took {took:.1f} s", file=sys.stderr)
    text = json.dumps(observations, indent=1, sort_keys=True)
    for name, value in (
        ("<seeded bank>", args.seeded),
        ("<server>", args.server),
        ("<dead server>", args.dead),
    ):
        text = text.replace(json.dumps(value)[1:-1], name)
    with open(args.out, "w", encoding="utf-8") as handle:
        handle.write(text)


if __name__ == "__main__":
    main()
