"""The environment hindsight-api runs with: what it inherits, and the settings of the local stack."""

from __future__ import annotations

from collections.abc import Mapping

from hindsight_core.local.models import ServerModels

__all__ = ["api_environment"]

# Inherited variables that could reconfigure the server or its SDKs: ours are set explicitly instead.
_STRIPPED_PREFIXES = (
    "HINDSIGHT_API_",
    "OPENAI_",
    "AZURE_OPENAI_",
    "ANTHROPIC_",
    "GEMINI_",
    "GOOGLE_API_KEY",
    "GROQ_",
    "COHERE_",
    "MISTRAL_",
    "TOGETHER_",
    "LITELLM_",
)
_STRIPPED_NAMES = frozenset({"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"})


def api_environment(
    inherited: Mapping[str, str],
    *,
    api_port: int,
    database_url: str,
    worker_id: str,
    log_level: str,
    embeddings_port: int | None,
    embeddings_model: str | None,
    semantic_min_similarity: float | None,
    models: ServerModels,
    extra: Mapping[str, str],
) -> dict[str, str]:
    """``inherited`` without provider and server settings, plus the stack's settings, then ``extra``.

    ``embeddings_port`` is the loopback embeddings endpoint's, None when the provider's embeddings are
    used (``models`` then sets them, with the LLM). ``semantic_min_similarity`` is the loopback model's
    threshold for a semantic match (None: the server's default).
    """
    env = {
        key: value
        for key, value in inherited.items()
        if key not in _STRIPPED_NAMES and not key.startswith(_STRIPPED_PREFIXES)
    }
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY") or env.get("no_proxy"), "127.0.0.1,localhost"]))
    env.update(
        {
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "PYTHONUNBUFFERED": "1",
            "HINDSIGHT_API_HOST": "127.0.0.1",
            "HINDSIGHT_API_PORT": str(api_port),
            "HINDSIGHT_API_DATABASE_URL": database_url,
            "HINDSIGHT_API_RERANKER_PROVIDER": "rrf",
            "HINDSIGHT_API_WORKER_ID": worker_id,
            "HINDSIGHT_API_LOG_LEVEL": log_level,
        }
    )
    if embeddings_port is not None:
        env.update(
            {
                "HINDSIGHT_API_EMBEDDINGS_PROVIDER": "openai",
                "HINDSIGHT_API_EMBEDDINGS_OPENAI_BASE_URL": f"http://127.0.0.1:{embeddings_port}/v1",
                "HINDSIGHT_API_EMBEDDINGS_OPENAI_API_KEY": "local",
                "HINDSIGHT_API_EMBEDDINGS_OPENAI_MODEL": embeddings_model or "local",
            }
        )
        if semantic_min_similarity is not None:
            threshold = str(semantic_min_similarity)
            env["HINDSIGHT_API_SEMANTIC_MIN_SIMILARITY"] = threshold
            env["HINDSIGHT_API_GRAPH_SEED_MIN_SIMILARITY"] = threshold
    env.update(models.api_env())
    env.update(extra)
    return env
