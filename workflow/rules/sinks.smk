# Section 3.2, attention sinks: per-head attention on key 0 comes from the extraction's forward
# pass (results/<model>/sinks.npz); geometry and the spike intervention need their own passes.
SINKS = config["sinks"]


rule plot_sinks:
    """Heat map of attention on key 0 per (layer, head); sinks over depth beside the spike."""
    input:
        sinks="results/{model}/sinks.npz",
        lifecycle="results/{model}/lifecycle.json",
    output:
        heatmap=report("figures/sinks/{model}_key0_heatmap.pdf", caption="../report/sinks_heatmap.rst", category="Sinks"),
        heatmap_png="figures/sinks/{model}_key0_heatmap.png",
        depth=report("figures/sinks/{model}_sinks_vs_spike.pdf", caption="../report/sinks_depth.rst", category="Sinks"),
        depth_png="figures/sinks/{model}_sinks_vs_spike.png",
    log:
        "logs/plot_sinks/{model}.log",
    conda:
        ANALYSIS_ENV
    script:
        "../scripts/plot_sinks.py"


rule sink_analysis:
    """Sink-key geometry of a sink and a non-sink head (Fig 6) and the spike-channel
    intervention at the step-up block, with the sink claims."""
    input:
        model="resources/models/{model}",
        sinks="results/{model}/sinks.npz",
        lifecycle="results/{model}/lifecycle.json",
        passages="resources/corpus/passages.jsonl",
    output:
        heads="results/{model}/sink_heads.csv",
        subspace="results/{model}/sink_subspace.csv",
        gaps="results/{model}/sink_gaps.csv",
        tsne="results/{model}/sink_tsne.parquet",
        intervention="results/{model}/intervention.csv",
        claims="results/{model}/claims/sinks.json",
    params:
        sinks=SINKS,
        spike=config["spike"],
        dtype=lambda wc: config["models"][wc.model].get("dtype", "auto"),
        device=config["extraction"]["device"],
    log:
        "logs/sink_analysis/{model}.log",
    benchmark:
        "logs/benchmarks/sink_analysis/{model}.tsv"
    threads: config["extraction"]["threads"]
    resources:
        mem_mb=lambda wc, attempt: config["extraction"]["mem_mb"] * attempt,
        gpu=1 if uses_gpu() else 0,
    conda:
        TORCH_ENV
    script:
        "../scripts/sink_analysis.py"


rule plot_sink_analysis:
    """Figure 6 (t-SNE of queries and keys, sink vs non-sink head) and the intervention bars."""
    input:
        tsne="results/{model}/sink_tsne.parquet",
        intervention="results/{model}/intervention.csv",
    output:
        tsne=report("figures/sinks/{model}_tsne.pdf", caption="../report/sinks_tsne.rst", category="Sinks"),
        tsne_png="figures/sinks/{model}_tsne.png",
        intervention=report("figures/sinks/{model}_intervention.pdf", caption="../report/intervention.rst", category="Sinks"),
        intervention_png="figures/sinks/{model}_intervention.png",
    log:
        "logs/plot_sink_analysis/{model}.log",
    conda:
        ANALYSIS_ENV
    script:
        "../scripts/plot_sink_analysis.py"
