"""The published hindsight-litellm 0.5.4 in a virtual environment of its own (made with uv on first use).

Used by the comparison (:mod:`tests.compat.compare`) and the benchmarks (``bench/overhead.py``). The venv
holds 0.5.4, the same LiteLLM as the workspace, and pytest (for ``tests.providers``); it is never on the
workspace's path.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["PEER_VERSION", "default_venv", "peer_python"]

PEER_VERSION = "0.5.4"


def default_venv() -> Path:
    return Path(os.environ.get("TMPDIR", "/tmp")) / f"hindsight-litellm-{PEER_VERSION}-venv"


def peer_python(venv: Path | None = None, litellm_version: str | None = None) -> Path:
    """The interpreter of a venv holding hindsight-litellm 0.5.4 and ``litellm_version`` (default: the
    workspace's LiteLLM), made if it is missing or holds other versions."""
    venv = venv or default_venv()
    litellm_version = litellm_version or importlib.metadata.version("litellm")
    python = venv / "bin" / "python"
    probe = (
        "import importlib.metadata as m; "
        "print(m.version('hindsight-litellm'), m.version('litellm'), m.version('pytest'))"
    )
    if python.exists():
        found = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
        if found.returncode == 0 and found.stdout.split()[:2] == [PEER_VERSION, litellm_version]:
            return python
    uv = [sys.executable, "-m", "uv"]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    print(
        f"creating {venv} with hindsight-litellm=={PEER_VERSION} litellm=={litellm_version}", file=sys.stderr
    )
    subprocess.run([*uv, "venv", "--quiet", "--clear", "--python", version, str(venv)], check=True)
    subprocess.run(
        [
            *uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(python),
            f"hindsight-litellm=={PEER_VERSION}",
            f"litellm=={litellm_version}",
            "pytest",
        ],
        check=True,
    )
    return python
