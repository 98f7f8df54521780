# Section 3.1, why spikes happen: vocabulary probe (Table 2), SiLU regime (Fig 2), quadratic
# amplifier (Fig 3/4/8), RMSNorm collapse (Fig 5). One rule per analysis, each reading the
# detected life cycle; changing one analysis's parameters reruns only that analysis.
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
    log:
        "logs/vocab_probe/{model}.log",
    benchmark:
        "logs/benchmarks/vocab_probe/{model}.tsv"
    conda:
        TORCH_ENV
    threads: config["extraction"]["threads"]
    resources:
        mem_mb=model_mem_mb,
        gpu=GPUS,
    params:
        probe=MECH["vocab_probe"],
        spike=config["spike"],
        dtype=model_param("dtype", "auto"),
        device=config["extraction"]["device"],
        paper_model=model_param("paper_model"),
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
    log:
        "logs/table2.log",
    conda:
        ANALYSIS_ENV
    params:
        models=MODELS,
        paper_models=[config["models"][m].get("paper_model") for m in MODELS],
    script:
        "../scripts/table2.py"


rule silu_regime:
    """Fig 2: cos(act(x), x) and the norm ratio of the gate pre-activation in step blocks, per token."""
    input:
        model="resources/models/{model}",
        lifecycle="results/{model}/lifecycle.json",
        sentences=prompts("sentences"),
    output:
        frame="results/{model}/silu.parquet",
        claims="results/{model}/claims/silu_regime.json",
    log:
        "logs/silu_regime/{model}.log",
    benchmark:
        "logs/benchmarks/silu_regime/{model}.tsv"
    conda:
        TORCH_ENV
    threads: config["extraction"]["threads"]
    resources:
        mem_mb=model_mem_mb,
        gpu=GPUS,
    params:
        spike=config["spike"],
        dtype=model_param("dtype", "auto"),
        device=config["extraction"]["device"],
    script:
        "../scripts/silu_regime.py"


rule plot_silu_regime:
    input:
        frame="results/{model}/silu.parquet",
    output:
        pdf=report("figures/silu/{model}.pdf", caption="../report/silu.rst", category="Mechanisms"),
        png="figures/silu/{model}.png",
    log:
        "logs/plot_silu_regime/{model}.log",
    conda:
        ANALYSIS_ENV
    script:
        "../scripts/plot_silu_regime.py"


rule amplifier:
    """Fig 3/4/8: ||U_k|| of every FFN output channel, spectra of S_k, the position-0 map."""
    input:
        model="resources/models/{model}",
        lifecycle="results/{model}/lifecycle.json",
        prompts=prompts("extraction"),
    output:
        uk_norms="results/{model}/uk_norms.parquet",
        spectra="results/{model}/spectra.parquet",
        summary="results/{model}/amplifier.json",
        claims="results/{model}/claims/amplifier.json",
    log:
        "logs/amplifier/{model}.log",
    benchmark:
        "logs/benchmarks/amplifier/{model}.tsv"
    conda:
        TORCH_ENV
    threads: config["extraction"]["threads"]
    resources:
        mem_mb=model_mem_mb,
        gpu=GPUS,
    params:
        amplifier=MECH["amplifier"] | prompt_subset(config, "mechanisms.amplifier"),
        dtype=model_param("dtype", "auto"),
        device=config["extraction"]["device"],
    script:
        "../scripts/amplifier.py"


rule plot_amplifier:
    input:
        uk_norms="results/{model}/uk_norms.parquet",
        spectra="results/{model}/spectra.parquet",
        lifecycle="results/{model}/lifecycle.json",
    output:
        uk=report("figures/amplifier/{model}_uk_norms.pdf", caption="../report/uk_norms.rst", category="Mechanisms"),
        uk_png="figures/amplifier/{model}_uk_norms.png",
        spectra=report("figures/amplifier/{model}_spectra.pdf", caption="../report/spectra.rst", category="Mechanisms"),
        spectra_png="figures/amplifier/{model}_spectra.png",
    log:
        "logs/plot_amplifier/{model}.log",
    conda:
        ANALYSIS_ENV
    script:
        "../scripts/plot_amplifier.py"


rule rmsnorm_collapse:
    """Fig 5: spike tokens collapse to one sparse vector; the norm bound; delimiter spike tokens."""
    input:
        model="resources/models/{model}",
        lifecycle="results/{model}/lifecycle.json",
        prompts=prompts("extraction"),
    output:
        summary="results/{model}/collapse.json",
        cosines="results/{model}/cosines.npz",
        delimiters="results/{model}/delimiters.csv",
        self_attention="results/{model}/self_attention.csv",
        claims="results/{model}/claims/rmsnorm_collapse.json",
    log:
        "logs/rmsnorm_collapse/{model}.log",
    benchmark:
        "logs/benchmarks/rmsnorm_collapse/{model}.tsv"
    conda:
        TORCH_ENV
    threads: config["extraction"]["threads"]
    resources:
        mem_mb=model_mem_mb,
        gpu=GPUS,
    params:
        collapse=MECH["collapse"] | prompt_subset(config, "mechanisms.collapse"),
        spike=config["spike"],
        dtype=model_param("dtype", "auto"),
        device=config["extraction"]["device"],
    script:
        "../scripts/rmsnorm_collapse.py"


rule plot_rmsnorm_collapse:
    input:
        cosines="results/{model}/cosines.npz",
    output:
        pdf=report("figures/collapse/{model}.pdf", caption="../report/collapse.rst", category="Mechanisms"),
        png="figures/collapse/{model}.png",
    log:
        "logs/plot_rmsnorm_collapse/{model}.log",
    conda:
        ANALYSIS_ENV
    script:
        "../scripts/plot_rmsnorm_collapse.py"
