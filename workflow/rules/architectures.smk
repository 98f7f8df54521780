# Beyond the paper: every configured model side by side (the real-weights view of Table 5).


rule architectures:
    """Family, norm placement, FFN kind, spike and sinks of every model; a figure; claims."""
    input:
        meta=expand("results/{model}/block_stats.json", model=MODELS),
        lifecycle=expand("results/{model}/lifecycle.json", model=MODELS),
        sinks=expand("results/{model}/sinks.npz", model=MODELS),
    output:
        table=multiext("paper_tables/architectures", ".csv", ".md", ".tex"),
        claims="results/claims/architectures.json",
        pdf=report(
            "figures/architectures/overview.pdf", caption="../report/architectures.rst", category="Architectures"
        ),
        png="figures/architectures/overview.png",
    log:
        "logs/architectures.log",
    conda:
        ANALYSIS_ENV
    params:
        models=MODELS,
    script:
        "../scripts/architectures.py"
