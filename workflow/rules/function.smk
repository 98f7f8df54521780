# What spikes and sinks do: massive activations as implicit parameters, the sink through the
# attention path only, the cost of the spike for INT8 activations and of the sink for a
# sliding-window KV cache. Each has its rule, table (paper_tables/function/), figure and claims.


rule implicit_params:
    """Massive activations set to their own mean (calibrated on the extraction prompts), to zero,
    or to the ordinary tokens' mean, at the first massive block and every step-up block."""
    input:
        model="resources/models/{model}",
        lifecycle="results/{model}/lifecycle.json",
        calibration=prompts("extraction"),
        heldout=prompts("heldout"),
    output:
        table=multiext("paper_tables/function/{model}_implicit_params", ".csv", ".md", ".tex"),
        sites="results/{model}/implicit_params.json",
        claims="results/{model}/claims/implicit_params.json",
    log:
        "logs/implicit_params/{model}.log",
    benchmark:
        "logs/benchmarks/implicit_params/{model}.tsv"
    conda:
        TORCH_ENV
    threads: config["extraction"]["threads"]
    resources:
        mem_mb=model_mem_mb,
        gpu=GPUS,
    params:
        cfg=config["implicit_params"],
        spike=config["spike"],
        dtype=model_param("dtype", "auto"),
        device=config["extraction"]["device"],
    script:
        "../scripts/implicit_params.py"


rule plot_implicit_params:
    input:
        table="paper_tables/function/{model}_implicit_params.csv",
        sites="results/{model}/implicit_params.json",
    output:
        pdf=report(
            "figures/function/{model}_implicit_params.pdf",
            caption="../report/implicit_params.rst",
            category="Function",
        ),
        png="figures/function/{model}_implicit_params.png",
    log:
        "logs/plot_implicit_params/{model}.log",
    conda:
        ANALYSIS_ENV
    params:
        tolerance=config["implicit_params"]["mean_tolerance"],
    script:
        "../scripts/plot_implicit_params.py"


rule attention_path:
    """Token 0's normalised attention input without the spike (plateau layers only), against a
    control edit of as many non-spike channels: sinks and perplexity on held-out prompts."""
    input:
        model="resources/models/{model}",
        lifecycle="results/{model}/lifecycle.json",
        heldout=prompts("heldout"),
    output:
        table=multiext("paper_tables/function/{model}_attention_path", ".csv", ".md", ".tex"),
        claims="results/{model}/claims/attention_path.json",
    log:
        "logs/attention_path/{model}.log",
    benchmark:
        "logs/benchmarks/attention_path/{model}.tsv"
    conda:
        TORCH_ENV
    threads: config["extraction"]["threads"]
    resources:
        mem_mb=model_mem_mb,
        gpu=GPUS,
    params:
        cfg=config["attention_path"],
        eps=config["sinks"]["eps"],
        spike=config["spike"],
        dtype=model_param("dtype", "auto"),
        device=config["extraction"]["device"],
    script:
        "../scripts/attention_path.py"


rule plot_attention_path:
    input:
        table="paper_tables/function/{model}_attention_path.csv",
    output:
        pdf=report(
            "figures/function/{model}_attention_path.pdf", caption="../report/attention_path.rst", category="Function"
        ),
        png="figures/function/{model}_attention_path.png",
    log:
        "logs/plot_attention_path/{model}.log",
    conda:
        ANALYSIS_ENV
    script:
        "../scripts/plot_attention_path.py"


rule act_scales:
    """Per-input-channel max |x| of every Linear layer over the extraction prompts (SmoothQuant's
    act-scales), with and without the extraction's spike tokens."""
    input:
        model="resources/models/{model}",
        prompts=prompts("extraction"),
        stats="results/{model}/block_stats.npz",
        meta="results/{model}/block_stats.json",
        lifecycle="results/{model}/lifecycle.json",
    output:
        scales="results/{model}/act_scales.safetensors",
        non_spike="results/{model}/act_scales_non_spike.safetensors",
        summary="results/{model}/act_scales.parquet",
    log:
        "logs/act_scales/{model}.log",
    benchmark:
        "logs/benchmarks/act_scales/{model}.tsv"
    conda:
        TORCH_ENV
    threads: config["extraction"]["threads"]
    resources:
        mem_mb=model_mem_mb,
        gpu=GPUS,
    params:
        cfg=config["quantization"],
        spike=config["spike"],
        batch_size=lambda wc: config["models"][wc.model].get("batch_size") or config["extraction"]["batch_size"],
        dtype=model_param("dtype", "auto"),
        device=config["extraction"]["device"],
    script:
        "../scripts/act_scales.py"


rule quantization:
    """Held-out perplexity with fake-quantised INT8 activations at every Linear input: per tensor,
    per tensor with the spike tokens in full precision, per token."""
    input:
        model="resources/models/{model}",
        scales="results/{model}/act_scales.safetensors",
        non_spike="results/{model}/act_scales_non_spike.safetensors",
        summary="results/{model}/act_scales.parquet",
        lifecycle="results/{model}/lifecycle.json",
        heldout=prompts("heldout"),
    output:
        table=multiext("paper_tables/function/{model}_quantization", ".csv", ".md", ".tex"),
        claims="results/{model}/claims/quantization.json",
    log:
        "logs/quantization/{model}.log",
    benchmark:
        "logs/benchmarks/quantization/{model}.tsv"
    conda:
        TORCH_ENV
    threads: config["extraction"]["threads"]
    resources:
        mem_mb=model_mem_mb,
        gpu=GPUS,
    params:
        cfg=config["quantization"],
        dtype=model_param("dtype", "auto"),
        device=config["extraction"]["device"],
    script:
        "../scripts/quantization.py"


rule plot_quantization:
    input:
        summary="results/{model}/act_scales.parquet",
        table="paper_tables/function/{model}_quantization.csv",
        lifecycle="results/{model}/lifecycle.json",
    output:
        scales=report(
            "figures/quantization/{model}_act_scales.pdf", caption="../report/act_scales.rst", category="Function"
        ),
        scales_png="figures/quantization/{model}_act_scales.png",
        int8=report("figures/quantization/{model}_int8.pdf", caption="../report/int8.rst", category="Function"),
        int8_png="figures/quantization/{model}_int8.png",
    log:
        "logs/plot_quantization/{model}.log",
    conda:
        ANALYSIS_ENV
    script:
        "../scripts/plot_quantization.py"


rule kv_cache:
    """Perplexity of long held-out text under sliding-window attention keeping 0, 1, 4 first tokens."""
    input:
        model="resources/models/{model}",
        texts=prompts("long"),
    output:
        table=multiext("paper_tables/function/{model}_kv_cache", ".csv", ".md", ".tex"),
        curve="results/{model}/kv_cache_positions.parquet",
        claims="results/{model}/claims/kv_cache.json",
    log:
        "logs/kv_cache/{model}.log",
    benchmark:
        "logs/benchmarks/kv_cache/{model}.tsv"
    conda:
        TORCH_ENV
    threads: config["extraction"]["threads"]
    resources:
        mem_mb=model_mem_mb,
        gpu=GPUS,
    params:
        cfg=config["kv_cache"],
        dtype=model_param("dtype", "auto"),
        device=config["extraction"]["device"],
    script:
        "../scripts/kv_cache.py"


rule plot_kv_cache:
    input:
        curve="results/{model}/kv_cache_positions.parquet",
        table="paper_tables/function/{model}_kv_cache.csv",
    output:
        pdf=report("figures/kv_cache/{model}.pdf", caption="../report/kv_cache.rst", category="Function"),
        png="figures/kv_cache/{model}.png",
    log:
        "logs/plot_kv_cache/{model}.log",
    conda:
        ANALYSIS_ENV
    script:
        "../scripts/plot_kv_cache.py"
