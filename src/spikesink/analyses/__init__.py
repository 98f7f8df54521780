"""The analyses, one folder each, found by their registry entries (torch-free).

Every sub-package of this package that defines `ANALYSIS` (a `spikesink.analyses.unit.Analysis`)
is an analysis: adding one is adding a folder (spikesink/analyses/unit.py says what goes in it).
The workflow builds its rules from `registry()` while it builds its DAG, so nothing imported
here may import torch.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from spikesink.analyses.unit import MODEL, PROMPTS, Analysis


class UnknownAnalysisError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@cache
def registry() -> dict[str, Analysis]:
    """name -> entry, in dependency order (an analysis after everything it reads)."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if not info.ispkg:
            continue
        entry = getattr(importlib.import_module(f"{__name__}.{info.name}"), "ANALYSIS", None)
        if entry is None:
            continue
        if entry.name != info.name:
            raise ValueError(f"spikesink/analyses/{info.name}/ registers an analysis named {entry.name!r}")
        found[entry.name] = entry
    return {name: found[name] for name in _dependency_order(found)}


def _dependency_order(entries: dict[str, Analysis]) -> list[str]:
    order, visiting = [], set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise ValueError(f"analyses read each other in a cycle through {name!r}")
        visiting.add(name)
        for dep in upstream(entries[name]):
            if dep not in entries:
                raise ValueError(f"analysis {name!r} reads {dep!r}, which is no registered analysis")
            visit(dep)
        visiting.discard(name)
        order.append(name)

    for name in sorted(entries):
        visit(name)
    return order


def upstream(entry: Analysis) -> list[str]:
    """The other analyses an analysis reads (for measuring or reporting)."""
    stages = {MODEL, "block_stats", "sinks"}
    return [
        key
        for key in dict.fromkeys(entry.reads + entry.report_reads)
        if key not in stages and not key.startswith(PROMPTS)
    ]


def get(name: str) -> Analysis:
    """The entry of one analysis; an unknown name lists the registered ones."""
    entries = registry()
    if name not in entries:
        raise UnknownAnalysisError(f"no analysis named {name!r}; registered: {', '.join(entries)}")
    return entries[name]


def names() -> list[str]:
    return list(registry())
