"""What importing the core costs, and that its lazily loaded public names are all there.

``hindsight_core`` loads its public names on first use (PEP 562): ``import hindsight_core`` must not import
httpx, pydantic, asyncio or tiktoken; the tokenizer is loaded by ``warm_up()`` or the first count, never at
import. Timing is in ``bench/core_install.py``; these tests check what is imported, which does not depend on
the machine.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import hindsight_core

ROOT = Path(__file__).resolve().parents[2]
INIT = ROOT / "packages" / "core" / "src" / "hindsight_core" / "__init__.py"
HEAVY = ["httpx", "pydantic", "asyncio", "tiktoken", "regex"]


def imported_after(statement: str) -> list[str]:
    """The HEAVY modules a fresh interpreter has loaded after ``statement`` (none of them at start-up)."""
    probe = (
        "import json, sys\n"
        f"heavy = {HEAVY!r}\n"
        "assert not [m for m in heavy if m in sys.modules], 'loaded at start-up'\n"
        f"{statement}\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_core_loads_no_dependency() -> None:
    assert imported_after("import hindsight_core") == []


def test_the_pipeline_loads_its_dependencies_but_not_the_tokenizer() -> None:
    statement = (
        "from hindsight_core import MemoryPipeline, MemorySettings, StorageWorker\n"
        "from hindsight_core.connection import sync_client, async_client\n"
        "import hindsight_core.pipeline, hindsight_core.storage"
    )
    assert imported_after(statement) == ["httpx", "pydantic", "asyncio"]


def test_every_public_name_resolves_to_the_object_its_module_defines() -> None:
    lazy = hindsight_core._LAZY
    assert set(lazy) == set(hindsight_core.__all__) - {"__version__"}
    for name, module in lazy.items():
        defined = getattr(importlib.import_module(f"hindsight_core.{module}"), name)
        assert getattr(hindsight_core, name) is defined, name
    assert set(hindsight_core.__all__) <= set(dir(hindsight_core))


def test_the_type_checking_imports_match_the_lazy_table() -> None:
    tree = ast.parse(INIT.read_text())
    guarded = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
    )
    seen: dict[str, str] = {}
    for node in guarded.body:
        assert isinstance(node, ast.ImportFrom)
        assert node.level == 1
        assert node.module is not None
        for alias in node.names:
            seen[alias.asname or alias.name] = node.module
    assert seen == hindsight_core._LAZY


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchThing'"):
        _ = hindsight_core.NoSuchThing  # type: ignore[attr-defined]
    with pytest.raises(ImportError):
        exec("from hindsight_core import NoSuchThing")


def _classes(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    return [
        (
            (node.end_lineno or node.lineno) - node.lineno + 1,
            f"{path.relative_to(ROOT)}:{node.lineno} {node.name}",
        )
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    ]


def test_no_class_in_the_packages_is_over_450_lines() -> None:
    sizes = sorted(
        (size for path in (ROOT / "packages").glob("*/src/**/*.py") for size in _classes(path)), reverse=True
    )
    assert sizes, "no source found"
    assert sizes[0][0] <= 450, f"split it before it grows further: {sizes[:3]}"
