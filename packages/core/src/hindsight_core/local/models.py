"""Which LLM and which embeddings the local server runs with.

Offline (the default) the server uses its mock LLM (no fact extraction; ``reflect`` answers
``"mock response"``) and the loopback embeddings endpoint, which serves a small real embedding model
(WordLlama, in the server's environment) or, when that cannot load, hashed bag-of-words vectors.

With a provider key, the server can use a real LLM for fact extraction, observations and ``reflect``, and
the provider's embeddings where it has them. That is opt-in, never automatic: a key in the environment
alone changes nothing, because it would send what users say to that provider.

    provider: ``mock`` (default) | ``openai`` | ``anthropic``   (``HINDSIGHT_LOCAL_PROVIDER``)
    embeddings: ``model`` (default offline) | ``hashed`` | ``provider`` (default with ``openai``)
                                                                (``HINDSIGHT_LOCAL_EMBEDDINGS``)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

__all__ = [
    "EMBEDDINGS_ENV",
    "EMBEDDINGS_MODEL_ENV",
    "LLM_MODEL_ENV",
    "PROVIDER_ENV",
    "Embeddings",
    "Provider",
    "ServerModels",
    "resolve_models",
]

PROVIDER_ENV = "HINDSIGHT_LOCAL_PROVIDER"
EMBEDDINGS_ENV = "HINDSIGHT_LOCAL_EMBEDDINGS"
LLM_MODEL_ENV = "HINDSIGHT_LOCAL_LLM_MODEL"
EMBEDDINGS_MODEL_ENV = "HINDSIGHT_LOCAL_EMBEDDINGS_MODEL"

Provider = Literal["mock", "openai", "anthropic"]
Embeddings = Literal["model", "hashed", "provider"]


@dataclass(frozen=True)
class _Spec:
    key_env: str
    base_url_env: str
    llm_model: str
    embeddings_model: str | None
    """None: no embeddings API the server can use, so embeddings stay local."""


_PROVIDERS: dict[str, _Spec] = {
    "openai": _Spec("OPENAI_API_KEY", "OPENAI_BASE_URL", "gpt-4o-mini", "text-embedding-3-small"),
    "anthropic": _Spec("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "claude-haiku-4-5", None),
}


@dataclass(frozen=True)
class ServerModels:
    """The local server's LLM and embeddings. Make one with :func:`resolve_models`.

    ``api_key`` is kept out of ``repr`` and of everything this package writes (state files, logs,
    progress messages); it reaches the server only through its environment.
    """

    provider: Provider = "mock"
    embeddings: Embeddings = "model"
    llm_model: str | None = None
    embeddings_model: str | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)

    @property
    def offline(self) -> bool:
        """Whether nothing leaves the machine (mock LLM and loopback embeddings)."""
        return self.provider == "mock"

    @property
    def llm(self) -> str:
        """``mock``, or ``<provider>/<model>``."""
        return "mock" if self.provider == "mock" else f"{self.provider}/{self.llm_model}"

    def describe(self) -> str:
        """One line for people, without the key."""
        where = f" at {self.base_url}" if self.base_url else ""
        if self.offline:
            llm = "mock LLM (offline: no fact extraction, reflect answers 'mock response')"
        else:
            llm = f"LLM {self.llm}{where}"
        if self.embeddings == "provider":
            embeddings = f"embeddings {self.provider}/{self.embeddings_model}{where}"
        elif self.embeddings == "hashed":
            embeddings = "hashed bag-of-words embeddings (loopback)"
        else:
            embeddings = "local embedding model (loopback)"
        return f"{llm}; {embeddings}"

    def api_env(self) -> dict[str, str]:
        """The ``HINDSIGHT_API_*`` variables for the LLM, and for the embeddings when the provider's."""
        if self.offline:
            return {"HINDSIGHT_API_LLM_PROVIDER": "mock"}
        assert self.api_key is not None
        assert self.llm_model is not None
        env = {
            "HINDSIGHT_API_LLM_PROVIDER": self.provider,
            "HINDSIGHT_API_LLM_API_KEY": self.api_key,
            "HINDSIGHT_API_LLM_MODEL": self.llm_model,
        }
        if self.base_url:
            env["HINDSIGHT_API_LLM_BASE_URL"] = self.base_url
        if self.embeddings == "provider":
            assert self.embeddings_model is not None
            env.update(
                {
                    "HINDSIGHT_API_EMBEDDINGS_PROVIDER": "openai",
                    "HINDSIGHT_API_EMBEDDINGS_OPENAI_API_KEY": self.api_key,
                    "HINDSIGHT_API_EMBEDDINGS_OPENAI_MODEL": self.embeddings_model,
                }
            )
            if self.base_url:
                env["HINDSIGHT_API_EMBEDDINGS_OPENAI_BASE_URL"] = self.base_url
        return env


def _choice(value: str, allowed: tuple[str, ...], what: str, variable: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r} (from the argument or ${variable}); use one of {allowed}")
    return value


def resolve_models(
    provider: str | None = None,
    embeddings: str | None = None,
    *,
    llm_model: str | None = None,
    embeddings_model: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServerModels:
    """The models for these choices; each omitted one comes from its environment variable, else its default.

    ``provider``: ``$HINDSIGHT_LOCAL_PROVIDER``, default ``mock``. A real provider needs its key
    (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``) and uses its base URL variable (``OPENAI_BASE_URL``,
    ``ANTHROPIC_BASE_URL``) when set. ``embeddings``: ``$HINDSIGHT_LOCAL_EMBEDDINGS``, default
    ``provider`` when the provider has embeddings, else ``model``. Models: ``llm_model`` /
    ``$HINDSIGHT_LOCAL_LLM_MODEL`` and ``embeddings_model`` / ``$HINDSIGHT_LOCAL_EMBEDDINGS_MODEL``, else the
    provider's defaults (``gpt-4o-mini``, ``text-embedding-3-small``; ``claude-haiku-4-5``).
    Raises ValueError naming the problem (unknown value, missing key, no embeddings at that provider).
    """
    env = os.environ if environ is None else environ
    name = _choice(
        (provider or env.get(PROVIDER_ENV) or "mock").strip().lower(),
        get_args(Provider),
        "provider",
        PROVIDER_ENV,
    )
    spec = _PROVIDERS.get(name)
    default_embeddings = "provider" if spec is not None and spec.embeddings_model else "model"
    kind = _choice(
        (embeddings or env.get(EMBEDDINGS_ENV) or default_embeddings).strip().lower(),
        get_args(Embeddings),
        "embeddings choice",
        EMBEDDINGS_ENV,
    )
    if spec is None:
        if kind == "provider":
            raise ValueError(
                "embeddings 'provider' needs a real provider: choose one with provider=... or "
                f"${PROVIDER_ENV} (openai)"
            )
        return ServerModels(embeddings=kind)  # type: ignore[arg-type]
    key = (env.get(spec.key_env) or "").strip()
    if not key:
        raise ValueError(f"provider {name!r} needs {spec.key_env} in the environment")
    if kind == "provider" and spec.embeddings_model is None:
        raise ValueError(
            f"provider {name!r} has no embeddings API the server can use: use embeddings 'model' or 'hashed'"
        )
    return ServerModels(
        provider=name,  # type: ignore[arg-type]
        embeddings=kind,  # type: ignore[arg-type]
        llm_model=llm_model or env.get(LLM_MODEL_ENV) or spec.llm_model,
        embeddings_model=(embeddings_model or env.get(EMBEDDINGS_MODEL_ENV) or spec.embeddings_model)
        if kind == "provider"
        else None,
        base_url=(env.get(spec.base_url_env) or "").strip() or None,
        api_key=key,
    )
