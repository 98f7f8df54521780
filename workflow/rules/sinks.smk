# Section 3.2, attention sinks: per-head attention on key 0 comes from the extraction's forward
# pass (results/<model>/sinks.npz); the geometry and the spike intervention have their own rules.
SINKS = config["sinks"]


rule plot_sinks:
    """Heat map of attention on key 0 per (layer, head); sinks over depth beside the spike."""
    input:
        sinks="results/{model}/sinks.npz",
        lifecycle="results/{model}/lifecycle.json",
    output:
        heatmap=report(
            "figures/sinks/{model}_key0_heatmap.pdf", caption="../report/sinks_heatmap.rst", category="Sinks"
        ),
        heatmap_png="figures/sinks/{model}_key0_heatmap.png",
        depth=report("figures/sinks/{model}_sinks_vs_spike.pdf", caption="../report/sinks_depth.rst", category="Sinks"),
        depth_png="figures/sinks/{model}_sinks_vs_spike.png",
    log:
        "logs/plot_sinks/{model}.log",
    conda:
        ANALYSIS_ENV
    script:
        "../scripts/plot_sinks.py"


rule sink_geometry:
    """Fig 6: sink-key subspace, query-key distances and t-SNE of a sink and a non-sink head,
    with the sink claims (which also read the extraction's sink statistics)."""
    input:
        model="resources/models/{model}",
        sinks="results/{model}/sinks.npz",
        lifecycle="results/{model}/lifecycle.json",
        prompts=prompts("extraction"),
    output:
        heads="results/{model}/sink_heads.csv",
        subspace="results/{model}/sink_subspace.csv",
        gaps="results/{model}/sink_gaps.csv",
        tsne="results/{model}/sink_tsne.parquet",
        claims="results/{model}/claims/sink_geometry.json",
    log:
        "logs/sink_geometry/{model}.log",
    benchmark:
        "logs/benchmarks/sink_geometry/{model}.tsv"
    conda:
        TORCH_ENV
    threads: config["extraction"]["threads"]
    resources:
        mem_mb=model_mem_mb,
        gpu=GPUS,
    params:
        geometry=SINKS["geometry"] | prompt_subset(config, "sinks.geometry"),
        eps=SINKS["eps"],
        dtype=model_param("dtype", "auto"),
        device=config["extraction"]["device"],
    script:
        "../scripts/sink_geometry.py"


rule plot_sink_geometry:
    input:
        tsne="results/{model}/sink_tsne.parquet",
    output:
        pdf=report("figures/sinks/{model}_tsne.pdf", caption="../report/sinks_tsne.rst", category="Sinks"),
        png="figures/sinks/{model}_tsne.png",
    log:
        "logs/plot_sink_geometry/{model}.log",
    conda:
        ANALYSIS_ENV
    script:
        "../scripts/plot_sink_geometry.py"


rule intervention:
    """Edit the spike channels of the first token at the step-up block(s): sinks, spike and
    perplexity on held-out prompts, against the unedited model."""
    input:
        model="resources/models/{model}",
        lifecycle="results/{model}/lifecycle.json",
        prompts=prompts("heldout"),
    output:
        table="results/{model}/intervention.csv",
        claims="results/{model}/claims/intervention.json",
    log:
        "logs/intervention/{model}.log",
    benchmark:
        "logs/benchmarks/intervention/{model}.tsv"
    conda:
        TORCH_ENV
    threads: config["extraction"]["threads"]
    resources:
        mem_mb=model_mem_mb,
        gpu=GPUS,
    params:
        intervention=SINKS["intervention"],
        eps=SINKS["eps"],
        spike=config["spike"],
        dtype=model_param("dtype", "auto"),
        device=config["extraction"]["device"],
    script:
        "../scripts/intervention.py"


rule plot_intervention:
    input:
        table="results/{model}/intervention.csv",
    output:
        pdf=report("figures/sinks/{model}_intervention.pdf", caption="../report/intervention.rst", category="Sinks"),
        png="figures/sinks/{model}_intervention.png",
    log:
        "logs/plot_intervention/{model}.log",
    conda:
        ANALYSIS_ENV
    script:
        "../scripts/plot_intervention.py"
