"""The workflow's three generic jobs, one set per registered analysis (rules: workflow/rules/analyses.smk).

    measure   results/<model>/<analysis>/            reads the model (loaded once) and inputs
    report    results/<model>/claims/<analysis>.json, figures/<analysis>/<model>*, paper_tables/<analysis>/<model>*
    summary   figures/<analysis>/<name>*, paper_tables/<name>*          across the configured models

Where every stage output lives is written here once (`paths`); the rules and these jobs read it.
Report and summary jobs never load a model, so editing a figure, a caption or a claim's threshold
never reruns a model job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spikesink.analyses import get
from spikesink.analyses.unit import BLOCK_STATS, MODEL, PROMPTS, SINKS, Analysis, Figure, Job, Table
from spikesink.io import outputs_together

log = logging.getLogger(__name__)
REPORT_KEYS = ("claims", "figure")  # config subsections read by the report job only
SCHEDULING_KEYS = ("threads", "mem_mb")  # the scheduler's config keys: read by no job, rerun nothing


# ------------------------------------------------------------------------------------------
# Paths (relative to the workflow's working directory)
# ------------------------------------------------------------------------------------------


def input_files(key: str, model: str = "{model}") -> list[str]:
    """The files behind one read key of one model."""
    if key == MODEL:
        return [f"resources/models/{model}"]
    if key == BLOCK_STATS:
        return [f"results/{model}/block_stats.npz", f"results/{model}/block_stats.json"]
    if key == SINKS:
        return [f"results/{model}/sinks.npz"]
    if key.startswith(PROMPTS):
        stem = f"results/{model}/prompts/{key[len(PROMPTS) :]}"
        return [f"{stem}.npz", f"{stem}.json"]
    return result_files(get(key), model)


def result_dir(entry: Analysis, model: str | None = "{model}") -> str:
    return f"results/{model}/{entry.name}" if entry.per_model else f"results/{entry.name}"


def result_files(entry: Analysis, model: str = "{model}") -> list[str]:
    return [f"{result_dir(entry, model)}/{name}" for name in entry.result_class.files()]


def claims_file(entry: Analysis, model: str = "{model}") -> str:
    return f"results/{model}/claims/{entry.name}.json" if entry.per_model else f"results/claims/{entry.name}.json"


def figure_stem(entry: Analysis, figure: Figure, model: str | None = "{model}") -> str:
    """figures/<analysis>/<model>[_<figure>], or figures/<analysis>/<figure> across models."""
    if model is None:
        return f"figures/{entry.name}/{figure.name}"
    return f"figures/{entry.name}/{model}{'_' + figure.name if figure.name else ''}"


def table_stem(entry: Analysis, table: Table, model: str | None = "{model}") -> str:
    if model is None or not table.per_model:
        return f"paper_tables/{table.name}"
    return f"paper_tables/{entry.name}/{model}{'_' + table.name if table.name else ''}"


def has_claims(entry: Analysis) -> bool:
    return (entry.folder / "claims.py").is_file()


def source_hash(entry: Analysis, side: str) -> str:
    """sha256 of the analysis's own code on one side (measure / report): a workflow param, so
    editing a figure reruns the report job only and editing the measurement reruns its model job."""
    report_parts = {"claims.py", "figure.py", "result.py"}
    files = sorted(entry.folder.glob("*.py")) + sorted(entry.folder.glob("*.rst"))
    if side == "measure":
        chosen = [p for p in files if p.suffix == ".py" and p.name not in report_parts | {"__init__.py"}]
    else:
        chosen = [p for p in files if p.name in report_parts or p.suffix == ".rst"]
    digest = hashlib.sha256()
    for path in chosen:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------------
# Reading inputs
# ------------------------------------------------------------------------------------------


def read_input(key: str, model: str, root: Path = Path(".")) -> Any:
    """The typed value behind one read key of one model (the model itself is loaded by the job)."""
    from spikesink import results

    files = [root / f for f in input_files(key, model)]
    if key == BLOCK_STATS:
        return results.load_block_stats(*files)
    if key == SINKS:
        return results.read_sink_stats(files[0])
    if key.startswith(PROMPTS):
        return results.read_prompts(files[0])
    entry = get(key)
    return entry.result_class.load(root / result_dir(entry, model))


def make_job(
    entry: Analysis,
    model: str | None,
    models: list[str],
    config: Mapping,
    keys,
    paper_models: Mapping | None = None,
) -> Job:
    """The job of one analysis on `model`, or across `models` (then each input is {model: value})."""
    from spikesink.config import Shared, settings

    keys = [key for key in keys if key != MODEL]
    if model is not None:
        inputs = {key: read_input(key, model) for key in keys}
    else:
        inputs = {key: {m: read_input(key, m) for m in models} for key in keys}
    paper_model = (paper_models or {}).get(model) if model is not None else None
    job = Job(
        entry, model or "all", settings(config, entry.name), Shared.from_config(config), inputs, None, paper_model
    )
    job.paper_models = dict(paper_models or {})
    return job


# ------------------------------------------------------------------------------------------
# The three jobs
# ------------------------------------------------------------------------------------------


def run_measure(name: str, model: str | None, models: list[str], config: Mapping, options: Mapping) -> None:
    """Measure one analysis on one model (or across models) and write its result."""
    from spikesink.analyses import runner

    entry = get(name)
    job = make_job(entry, model, models, config, entry.reads)
    if options.get("batch_size"):  # a model's own batch size overrides the extraction's
        job.shared = dataclasses.replace(job.shared, extraction_batch_size=int(options["batch_size"]))

    def load():
        from spikesink.instrumentation.model import InstrumentedModel

        return InstrumentedModel.load(
            input_files(MODEL, model)[0],
            dtype=options.get("dtype", "auto"),
            device=config["extraction"]["device"],
            rule=job.shared.rule,
            name=model,
        )

    result = runner.measure(job, load)
    with outputs_together():
        result.save(result_dir(entry, model or "-"))
    log.info("%s on %s: %s", name, job.model_name, result.not_applicable or "measured")


def run_report(name: str, model: str | None, models: list[str], config: Mapping, paper_models: Mapping) -> None:
    """Claims, figures and tables of one analysis on one model (or across models), from its result."""
    from spikesink.analyses import runner
    from spikesink.reporting.scorecard import write_claims
    from spikesink.reporting.tables import write_table

    entry = get(name)
    job = make_job(entry, model, models, config, entry.report_reads, paper_models)
    result = entry.result_class.load(result_dir(entry, model or "-"))
    target = model if entry.per_model else None
    with outputs_together():
        if has_claims(entry):
            claims = runner.claims(result, job)
            write_claims(claims_file(entry, target), claims)
            for claim in claims:
                log.info("%s: %s (%s)", claim.verdict, claim.claim, claim.ours)
        for table_name, (frame, caption) in runner.tables(result, job).items():
            table = _table(entry.tables, table_name, name)
            per_model = table.per_model and target is not None
            label = f"{target}_{entry.name}{'_' + table.name if table.name else ''}" if per_model else table.name
            write_table(frame, table_stem(entry, table, target), caption=caption, label=label)
        runner.figures(result, job, {f.name: figure_stem(entry, f, target) for f in entry.figures})


def run_summary(name: str, models: list[str], config: Mapping, paper_models: Mapping) -> None:
    """The analysis's figures and tables across every configured model."""
    entry = get(name)
    jobs = {m: make_job(entry, m, models, config, entry.report_reads, paper_models) for m in models}
    results = {m: entry.result_class.load(result_dir(entry, m)) for m in models}
    module = entry.module("figure")
    with outputs_together():
        _write_summary(entry, name, module, results, jobs)


def _write_summary(entry: Analysis, name: str, module, results: dict, jobs: dict) -> None:
    from spikesink.reporting.tables import write_table

    for table_name, (frame, caption) in module.summary_tables(results, jobs).items():
        write_table(frame, table_stem(entry, _table(entry.summary_tables, table_name, name), None), caption=caption)
    if entry.summary_figures:
        module.draw_summary(results, jobs, {f.name: figure_stem(entry, f, None) for f in entry.summary_figures})


def _table(tables: tuple[Table, ...], name: str, analysis: str) -> Table:
    for table in tables:
        if table.name == name:
            return table
    raise ValueError(f"analysis {analysis!r} writes a table {name!r} its entry does not declare")
