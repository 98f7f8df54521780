# Prompts are sampled once per model and set; every later stage reads them from results/.


rule prompts:
    """One prompt set of one model: extraction prompts, held-out prompts or single sentences,
    tokenised with the model's own tokenizer (its BOS convention kept)."""
    input:
        model="resources/models/{model}",
        passages="resources/corpus/passages.jsonl",
    output:
        multiext("results/{model}/prompts/{prompt_set}", ".npz", ".json"),
    log:
        "logs/prompts/{model}/{prompt_set}.log",
    priority: CHAIN_PRIORITY
    conda:
        TORCH_ENV
    params:
        spec=prompt_set_params,
    script:
        "../scripts/prompts.py"


rule extract_block_stats:
    """One batched forward pass with taps on every block and the attention observer:
    streaming float32 block statistics and per-head attention on key 0 / spike tokens."""
    input:
        model="resources/models/{model}",
        prompts=prompts("extraction"),
    output:
        stats="results/{model}/block_stats.npz",
        meta="results/{model}/block_stats.json",
        sinks="results/{model}/sinks.npz",
    log:
        "logs/extract_block_stats/{model}.log",
    benchmark:
        "logs/benchmarks/extract_block_stats/{model}.tsv"
    priority: CHAIN_PRIORITY
    conda:
        TORCH_ENV
    threads: config["extraction"]["threads"]
    resources:
        mem_mb=model_mem_mb,
        gpu=GPUS,
    params:
        config={
            "extraction": {k: v for k, v in config["extraction"].items() if k not in analysis_jobs.SCHEDULING_KEYS},
            **{k: config[k] for k in ("spike", "sinks")},
        },
        dtype=model_param("dtype", "auto"),
        batch_size=lambda wc: config["models"][wc.model].get("batch_size") or config["extraction"]["batch_size"],
    script:
        "../scripts/extract_block_stats.py"
