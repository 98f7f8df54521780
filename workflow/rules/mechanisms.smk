# Section 3.1, why spikes happen: vocabulary probe (Table 2), SiLU regime (Fig 2), quadratic
# amplifier (Fig 3/4/8), RMSNorm collapse (Fig 5). Each reads the detected life cycle.
MECH = config["mechanisms"]


rule vocab_probe:
    """Every vocabulary id alone at position 0, and after a neutral prefix (Table 2)."""
    input:
        model="resources/models/{model}",
        lifecycle="results/{model}/lifecycle.json",
    output:
        frame="results/{model}/vocab_probe.parquet",
        summary="results/{model}/vocab_probe.json",
        claims="results/{model}/claims/vocab_probe.json",
    params:
        probe=MECH["vocab_probe"],
        spike=config["spike"],
        dtype=lambda wc: config["models"][wc.model].get("dtype", "auto"),
        device=config["extraction"]["device"],
        paper_model=lambda wc: config["models"][wc.model].get("paper_model"),
    log:
        "logs/vocab_probe/{model}.log",
    benchmark:
        "logs/benchmarks/vocab_probe/{model}.tsv"
    threads: config["extraction"]["threads"]
    resources:
        mem_mb=lambda wc, attempt: config["extraction"]["mem_mb"] * attempt,
        gpu=1 if uses_gpu() else 0,
    conda:
        TORCH_ENV
    script:
        "../scripts/vocab_probe.py"


rule plot_vocab_probe:
    input:
        frame="results/{model}/vocab_probe.parquet",
        summary="results/{model}/vocab_probe.json",
    output:
        pdf=report("figures/vocab_probe/{model}.pdf", caption="../report/vocab_probe.rst", category="Mechanisms"),
        png="figures/vocab_probe/{model}.png",
    log:
        "logs/plot_vocab_probe/{model}.log",
    conda:
        ANALYSIS_ENV
    script:
        "../scripts/plot_vocab_probe.py"


rule table2:
    """Table 2: spike tokens at position 0 out of the vocabulary, the paper's rows beside ours."""
    input:
        summary=expand("results/{model}/vocab_probe.json", model=MODELS),
    output:
        multiext("paper_tables/table2_vocab_probe", ".csv", ".md", ".tex"),
    params:
        models=MODELS,
        paper_models=[config["models"][m].get("paper_model") for m in MODELS],
    log:
        "logs/table2.log",
    conda:
        ANALYSIS_ENV
    script:
        "../scripts/table2.py"


rule mechanisms:
    """SiLU regime, quadratic amplifier and RMSNorm collapse for one model, with their claims."""
    input:
        model="resources/models/{model}",
        lifecycle="results/{model}/lifecycle.json",
        passages="resources/corpus/passages.jsonl",
    output:
        silu="results/{model}/silu.parquet",
        uk_norms="results/{model}/uk_norms.parquet",
        spectra="results/{model}/spectra.parquet",
        amplifier="results/{model}/amplifier.json",
        collapse="results/{model}/collapse.json",
        cosines="results/{model}/cosines.npz",
        delimiters="results/{model}/delimiters.csv",
        self_attention="results/{model}/self_attention.csv",
        claims="results/{model}/claims/mechanisms.json",
    params:
        mech=MECH,
        spike=config["spike"],
        dtype=lambda wc: config["models"][wc.model].get("dtype", "auto"),
        device=config["extraction"]["device"],
    log:
        "logs/mechanisms/{model}.log",
    benchmark:
        "logs/benchmarks/mechanisms/{model}.tsv"
    threads: config["extraction"]["threads"]
    resources:
        mem_mb=lambda wc, attempt: config["extraction"]["mem_mb"] * attempt,
        gpu=1 if uses_gpu() else 0,
    conda:
        TORCH_ENV
    script:
        "../scripts/mechanisms.py"


rule plot_mechanisms:
    """Figures 2, 3/8, 4 and 5 for one model."""
    input:
        silu="results/{model}/silu.parquet",
        uk_norms="results/{model}/uk_norms.parquet",
        spectra="results/{model}/spectra.parquet",
        cosines="results/{model}/cosines.npz",
        lifecycle="results/{model}/lifecycle.json",
    output:
        silu=report("figures/silu/{model}.pdf", caption="../report/silu.rst", category="Mechanisms"),
        uk=report("figures/amplifier/{model}_uk_norms.pdf", caption="../report/uk_norms.rst", category="Mechanisms"),
        spectra=report("figures/amplifier/{model}_spectra.pdf", caption="../report/spectra.rst", category="Mechanisms"),
        collapse=report("figures/collapse/{model}.pdf", caption="../report/collapse.rst", category="Mechanisms"),
        pngs=mechanism_figure("{model}", "png"),
    log:
        "logs/plot_mechanisms/{model}.log",
    conda:
        ANALYSIS_ENV
    script:
        "../scripts/plot_mechanisms.py"
