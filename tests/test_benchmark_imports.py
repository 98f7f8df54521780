"""Every name a benchmark imports from spikesink exists: a refactor that moves a function breaks
the benchmark here, not the day someone runs it (bench_function and bench_vocab_probe once
imported from the analysis packages' old flat modules)."""

import ast
import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def spikesink_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every `from spikesink... import name`, function-level imports included."""
    tree = ast.parse(path.read_text())
    return [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "spikesink"
        for alias in node.names
    ]


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_imports_resolve(path):
    missing = []
    for module_name, name in spikesink_imports(path):
        module = importlib.import_module(module_name)
        if not hasattr(module, name):
            try:
                importlib.import_module(f"{module_name}.{name}")
            except ModuleNotFoundError:
                missing.append(f"{module_name}.{name}")
    assert not missing, f"{path.name} imports names spikesink no longer has: {missing}"


def test_the_check_sees_imports():
    assert ("spikesink.analyses.kv_cache.measure", "windowed_nll") in spikesink_imports(
        next(p for p in BENCHMARKS if p.name == "bench_function.py")
    )
