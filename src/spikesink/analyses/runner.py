"""Running an analysis and reporting on its result: the same two calls in a workflow job and in
a notebook (spikesink.api). Torch is imported only by an analysis's measure module."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spikesink.analyses.unit import Job, Result

log = logging.getLogger(__name__)


def measure(job: Job, load_model: Callable[[], Any] | None = None) -> Result:
    """The analysis's Result: n/a with the reason when it does not apply, else measured.

    `load_model` is called only when the analysis applies and needs a model that `job` lacks,
    so an analysis that does not apply never loads one.
    """
    entry = job.analysis
    module = entry.module("measure")
    check = getattr(module, "not_applicable", None)
    reason = check(job) if check else None
    if reason:
        log.info("%s: n/a for %s: %s", entry.name, job.model_name, reason)
        return entry.result_class.na(reason)
    if entry.needs_model and job.model is None:
        if load_model is None:
            raise ValueError(f"analysis {entry.name!r} needs a model")
        job.model = load_model()
    return module.measure(job)


@dataclass
class Report:
    """What the report step makes of a result: claims, the data each figure drew, tables."""

    claims: list = field(default_factory=list)  # spikesink.reporting.scorecard.Claim
    figures: dict[str, Any] = field(default_factory=dict)  # figure name -> the data it drew
    tables: dict[str, Any] = field(default_factory=dict)  # table name -> DataFrame


def claims(result: Result, job: Job) -> list:
    entry = job.analysis
    if not (entry.folder / "claims.py").is_file():
        return []
    return list(entry.module("claims").claims(result, job))


def tables(result: Result, job: Job) -> dict:
    module = _figure_module(job)
    return dict(module.tables(result, job)) if module and hasattr(module, "tables") else {}


def figures(result: Result, job: Job, paths: dict[str, str | os.PathLike]) -> dict:
    """Draw every figure of the analysis to `paths` (figure name -> path stem or file)."""
    module = _figure_module(job)
    if module is None or not paths:
        return {}
    return dict(module.draw(result, job, {name: Path(path) for name, path in paths.items()}))


def _figure_module(job: Job):
    entry = job.analysis
    return entry.module("figure") if (entry.folder / "figure.py").is_file() else None
