# Section 3.1, the spike's life cycle: rise, plateau, fall (Table 1, Figures 1 and 7).


rule lifecycle:
    """Massive blocks, spike channels, step-up and step-down blocks, with their claims."""
    input:
        stats="results/{model}/block_stats.npz",
        meta="results/{model}/block_stats.json",
    output:
        lifecycle="results/{model}/lifecycle.json",
        claims="results/{model}/claims/lifecycle.json",
    log:
        "logs/lifecycle/{model}.log",
    conda:
        ANALYSIS_ENV
    params:
        config=lambda wc: {k: config[k] for k in ("spike", "lifecycle", "claims")},
    script:
        "../scripts/lifecycle.py"


rule plot_lifecycle:
    """Figure 1: top-3 magnitudes per block, post-residual (top) and block output (bottom)."""
    input:
        stats="results/{model}/block_stats.npz",
        meta="results/{model}/block_stats.json",
        lifecycle="results/{model}/lifecycle.json",
    output:
        pdf=report("figures/lifecycle/{model}.pdf", caption="../report/lifecycle.rst", category="Life cycle"),
        png="figures/lifecycle/{model}.png",
    log:
        "logs/plot_lifecycle/{model}.log",
    conda:
        ANALYSIS_ENV
    params:
        plot=config["plots"]["lifecycle"],
    script:
        "../scripts/plot_lifecycle.py"


rule plot_lifecycle_grid:
    """Figure 7: the life cycles of all configured models side by side."""
    input:
        stats=expand("results/{model}/block_stats.npz", model=MODELS),
        meta=expand("results/{model}/block_stats.json", model=MODELS),
        lifecycle=expand("results/{model}/lifecycle.json", model=MODELS),
    output:
        pdf=report("figures/lifecycle/all_models.pdf", caption="../report/lifecycle_grid.rst", category="Life cycle"),
        png="figures/lifecycle/all_models.png",
    log:
        "logs/plot_lifecycle_grid.log",
    conda:
        ANALYSIS_ENV
    params:
        models=MODELS,
        plot=config["plots"]["lifecycle"],
    script:
        "../scripts/plot_lifecycle_grid.py"


rule table1:
    """Table 1: blocks, step-up and step-down blocks per model, the paper's rows beside ours."""
    input:
        lifecycle=expand("results/{model}/lifecycle.json", model=MODELS),
    output:
        multiext("paper_tables/table1_step_up_down", ".csv", ".md", ".tex"),
    log:
        "logs/table1.log",
    conda:
        ANALYSIS_ENV
    params:
        models=MODELS,
        paper_models=[config["models"][m].get("paper_model") for m in MODELS],
    script:
        "../scripts/table1.py"
