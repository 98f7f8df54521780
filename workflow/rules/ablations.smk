# Section 4: small Llama-style models trained from scratch, one run per variant and seed.
from spikesink.ablations.variants import check_ablations, seeds as ablation_seeds

ABL = config.get("ablations", {})
ABL_DIR = f"results/ablations/{ABL.get('preset', 'tiny')}"
ABL_SEEDS = ablation_seeds(ABL)
check_ablations(ABL)  # unknown variants, loss positions outside the sequence, bad synthetic specs: before any job
# what a run depends on (its params): adding variants or seeds, or changing threads, reruns nothing
ABL_RUN = {k: v for k, v in ABL.items() if k in ("preset", "corpus", "data", "baseline", "eval")}
ABL_DATA = {k: v for k, v in ABL.items() if k in ("corpus", "data")}


wildcard_constraints:
    variant=r"[a-z0-9][a-z0-9-]*",
    table=r"[345678]|remedies",
    seed=r"\d+",


rule ablations:
    """Target: the configured preset's Section 4 tables, claims and figures (snakemake ablations --configfile ...)."""
    input:
        ablation_outputs(),


rule ablation_data:
    """Token files of the configured source (corpus split by document, or the synthetic language)."""
    input:
        unpack(ablation_corpus),
    output:
        meta=f"{ABL_DIR}/_data/meta.json",
    log:
        f"logs/ablations/{ABL.get('preset', 'tiny')}/data.log",
    conda:
        TORCH_ENV
    params:
        cfg=ABL_DATA,
    script:
        "../scripts/ablation_data.py"


rule ablation_train:
    """Train one variant with one seed (model init and batch order; resumes from its checkpoint after a crash) and evaluate it."""
    input:
        unpack(ablation_corpus),
        data=f"{ABL_DIR}/_data/meta.json",
    output:
        metrics=f"{ABL_DIR}/{{variant}}/seed{{seed}}/metrics.json",
        curve=f"{ABL_DIR}/{{variant}}/seed{{seed}}/curve.csv",
    log:
        f"logs/ablations/{ABL.get('preset', 'tiny')}/{{variant}}-seed{{seed}}.log",
    benchmark:
        f"logs/benchmarks/ablations/{ABL.get('preset', 'tiny')}/{{variant}}-seed{{seed}}.tsv"
    conda:
        TORCH_ENV
    threads: ABL.get("threads", 1)
    resources:
        mem_mb=lambda wc, attempt: ABL.get("mem_mb", 4000) * attempt,
        gpu=1 if ABL.get("gpu", False) else 0,
    params:
        cfg=ABL_RUN,
    script:
        "../scripts/ablation_train.py"


rule ablation_table:
    """Paper Tables 3-8: our ppl / sink ratio / spike (seed mean and sd) beside the paper's, a figure, and scorecard rows."""
    input:
        metrics=lambda wc: ablation_seed_metrics(wc.table),
    output:
        table=multiext(f"paper_tables/table{{table}}_{{name}}", ".csv", ".md", ".tex"),
        claims=f"{ABL_DIR}/claims/table{{table}}_{{name}}.json",
        pdf="figures/ablations/table{table}_{name}.pdf",
        png=report(
            "figures/ablations/table{table}_{name}.png", caption="../report/ablation_table.rst", category="Ablations"
        ),
    log:
        f"logs/ablations/{ABL.get('preset', 'tiny')}/table{{table}}_{{name}}.log",
    conda:
        ANALYSIS_ENV
    params:
        preset=ABL.get("preset", "tiny"),
        claims=ABL.get("claims"),  # the thresholds: changing one reruns the tables' claims
    script:
        "../scripts/ablation_table.py"


rule plot_head_dim:
    """Sink ratio and spike against head dimension, ours beside the paper's Table 6."""
    input:
        table="paper_tables/table6_heads.csv",
    output:
        pdf="figures/ablations/head_dim.pdf",
        png=report("figures/ablations/head_dim.png", caption="../report/head_dim.rst", category="Ablations"),
    log:
        f"logs/ablations/{ABL.get('preset', 'tiny')}/plot_head_dim.log",
    conda:
        ANALYSIS_ENV
    script:
        "../scripts/plot_head_dim.py"


rule plot_ablation_curves:
    """Held-out perplexity, sink ratio, key-0 attention and first-token spike over training, every variant."""
    input:
        curves=expand(f"{ABL_DIR}/{{variant}}/seed{{seed}}/curve.csv", variant=ABL.get("variants", []), seed=ABL_SEEDS),
    output:
        pdf="figures/ablations/training_curves.pdf",
        png=report(
            "figures/ablations/training_curves.png", caption="../report/training_curves.rst", category="Ablations"
        ),
    log:
        f"logs/ablations/{ABL.get('preset', 'tiny')}/plot_training_curves.log",
    conda:
        ANALYSIS_ENV
    params:
        variants=[v for v in ABL.get("variants", []) for _ in ABL_SEEDS],
    script:
        "../scripts/plot_ablation_curves.py"
