"""What one analysis is: its registry entry, its typed result, and the job it runs in (torch-free).

An analysis lives in one folder, `spikesink/analyses/<name>/`:

    __init__.py    ANALYSIS = Analysis(...): the registry entry (this module's types, no torch)
    schema.yaml    its config section `analyses.<name>` (defaults written once, here)
    result.py      its typed Result (torch-free: the report jobs load it without torch)
    measure.py     measure(job) -> Result; not_applicable(job) -> reason or None
    claims.py      claims(result, job) -> list[Claim]  (thresholds from the `claims:` subsection)
    figure.py      draw(result, job, paths) -> {figure: data drawn}; tables(result, job) -> {table: frame}
    caption*.rst   the report's caption of each figure

The workflow generates its rules from the entries (workflow/rules/analyses.smk) and the public
API (spikesink.api) runs the same functions on a model already in memory.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# what an analysis reads, by key: "model" (the instrumented model), "block_stats" and "sinks"
# (the extraction's forward), "prompts.<set>" (a prompt set) or the name of another analysis
MODEL, BLOCK_STATS, SINKS = "model", "block_stats", "sinks"
PROMPTS = "prompts."
# Snakemake priority of the jobs on the way to the default run's longest job (model, corpus,
# prompts, extraction, life cycle, vocabulary probe): they start before the other ready jobs, so
# that the probe is not left to run alone at the end
CHAIN_PRIORITY = 3


@dataclass(frozen=True)
class Figure:
    """One figure of an analysis: figures/<analysis>/<model>[_<name>].{pdf,png}."""

    name: str = ""  # "" for an analysis's main figure
    caption: str = "caption.rst"  # file in the analysis folder
    title: str = ""  # the report's label


@dataclass(frozen=True)
class Table:
    """One table: paper_tables/<analysis>/<model>[_<name>].{csv,md,tex}, or a cross-model one
    (`per_model=False`): paper_tables/<name>.{csv,md,tex}."""

    name: str = ""
    per_model: bool = True
    formats: tuple[str, ...] = ("csv", "md", "tex")


@dataclass(frozen=True)
class PromptSet:
    """A prompt set an analysis owns, sampled from the corpus with parameters from its section."""

    name: str  # results/<model>/prompts/<name>
    kind: str  # "prompts" (n x seq_len tokens) or "sentences" (single sentences)
    n: str  # key of the section holding the count
    seed: str = "seed"
    seq_len: str | None = None  # key holding the length (kind "prompts")


@dataclass(frozen=True)
class Analysis:
    """The registry entry of one analysis (see the module docstring)."""

    name: str
    title: str
    paper: str  # the paper's figure / table, or "beyond the paper"
    section: str  # scorecard section label, e.g. "3.4 normalization"
    reads: tuple[str, ...] = ()  # what measure() reads (keys above)
    report_reads: tuple[str, ...] = ()  # what claims / figures read besides the result
    figures: tuple[Figure, ...] = ()
    tables: tuple[Table, ...] = ()
    summary_figures: tuple[Figure, ...] = ()  # across models: figures/<analysis>/<name>.{pdf,png}
    summary_tables: tuple[Table, ...] = ()  # across models: paper_tables/<name>.{csv,md,tex}
    prompt_sets: tuple[PromptSet, ...] = ()
    per_model: bool = True  # False: one result across all models (the architectures table)
    gpu: bool = False  # runs on the GPU when the extraction does
    # scheduling: of the jobs ready at once, higher priorities start first; 0 reads as 1 for a model
    # job (before the report and Section 4 jobs), CHAIN_PRIORITY marks the way to the longest job
    priority: int = 0
    # keys of its section that count extraction prompts / tokens (n_prompts, seq_len, calibration_prompts):
    # a value the user sets above what the extraction samples fails at start-up
    subset_keys: tuple[str, ...] = ()
    check: Callable[[Mapping, Mapping], list[str]] | None = None  # other config problems (section, config)

    @property
    def needs_model(self) -> bool:
        return MODEL in self.reads

    @property
    def package(self) -> str:
        return f"spikesink.analyses.{self.name}"

    @property
    def folder(self) -> Path:
        return Path(__file__).parent / self.name

    def module(self, part: str):
        """One of the analysis's modules: 'result', 'measure' (torch), 'claims', 'figure'."""
        import importlib

        return importlib.import_module(f"{self.package}.{part}")

    @property
    def result_class(self) -> type[Result]:
        """The one Result subclass its result.py defines."""
        module = self.module("result")
        found = [
            value
            for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, Result) and value.__module__ == module.__name__
        ]
        if len(found) != 1:
            raise TypeError(f"{module.__name__} must define exactly one Result subclass, found {len(found)}")
        return found[0]

    def caption_path(self, figure: Figure) -> Path:
        return self.folder / figure.caption

    def source_files(self, *parts: str) -> list[Path]:
        """The analysis's own source files of these parts (for the workflow's code params)."""
        return [self.folder / f"{part}.py" for part in parts if (self.folder / f"{part}.py").is_file()]


# ------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------

STORES = {"parquet": ".parquet", "json": ".json", "npz": ".npz", "safetensors": ".safetensors"}
RESULT_FILE = "result.json"


def stored(kind: str, **kwargs):
    """A Result field written to its own file `<field><ext>` (kind: parquet, json, npz, safetensors)."""
    if kind not in STORES:
        raise ValueError(f"unknown store {kind!r}; one of {sorted(STORES)}")
    return field(default=None, metadata={"store": kind}, **kwargs)


@dataclass(kw_only=True)
class Result:
    """Base of every analysis result.

    `not_applicable` is the reason the analysis does not apply to this model ("n/a because ..."):
    set, the other fields are empty and claims read n/a with that reason. Fields made with
    `stored()` go to their own files; every other field is a JSON value kept in result.json.
    """

    not_applicable: str | None = None

    @classmethod
    def files(cls) -> list[str]:
        """File names the result is written to (result.json last: it marks a finished result)."""
        return [f"{f.name}{STORES[f.metadata['store']]}" for f in dataclasses.fields(cls) if "store" in f.metadata] + [
            RESULT_FILE
        ]

    @classmethod
    def na(cls, reason: str) -> Result:
        return cls(not_applicable=reason)

    def save(self, directory: str | os.PathLike) -> list[Path]:
        from spikesink.analyses import store

        return store.save(self, Path(directory))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Result:
        from spikesink.analyses import store

        return store.load(cls, Path(directory))


# ------------------------------------------------------------------------------------------
# The job one analysis runs in
# ------------------------------------------------------------------------------------------


@dataclass
class Job:
    """Everything one run of an analysis sees: the same in a workflow job and in a notebook.

    model: the InstrumentedModel (None for analyses that read results only); inputs: what the
    analysis reads, by key (typed: BlockStats, SinkStats, PromptSet, other analyses' Results);
    settings: its validated config section; shared: the settings every analysis shares.
    """

    analysis: Analysis
    model_name: str
    settings: Any  # spikesink.config.Section
    shared: Any  # spikesink.config.Shared
    inputs: dict[str, Any] = field(default_factory=dict)
    model: Any = None  # spikesink.instrumentation.model.InstrumentedModel
    paper_model: str | None = None

    def __getitem__(self, key: str) -> Any:
        try:
            return self.inputs[key]
        except KeyError:
            raise KeyError(
                f"analysis {self.analysis.name!r} reads {key!r} but it was not given (reads: {self.analysis.reads})"
            ) from None

    @property
    def rule(self):
        """The spike rule shared by every analysis (the model's, when a model is loaded)."""
        return self.model.rule if self.model is not None else self.shared.rule
