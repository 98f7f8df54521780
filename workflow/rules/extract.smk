rule extract_block_stats:
    """One batched forward pass with hooks on every block and a registered attention function:
    streaming float32 block statistics and per-head attention on key 0 / spike tokens."""
    input:
        model="resources/models/{model}",
        passages="resources/corpus/passages.jsonl",
    output:
        stats="results/{model}/block_stats.npz",
        meta="results/{model}/block_stats.json",
        prompts="results/{model}/prompts.json",
        sinks="results/{model}/sinks.npz",
    params:
        extraction=config["extraction"],
        spike=config["spike"],
        sink_eps=config["sinks"]["eps"],
        dtype=lambda wc: config["models"][wc.model].get("dtype", "auto"),
        batch_size=lambda wc: config["models"][wc.model].get("batch_size") or config["extraction"]["batch_size"],
    log:
        "logs/extract_block_stats/{model}.log",
    benchmark:
        "logs/benchmarks/extract_block_stats/{model}.tsv"
    threads: config["extraction"]["threads"]
    resources:
        mem_mb=lambda wc, attempt: config["extraction"]["mem_mb"] * attempt,
        gpu=1 if uses_gpu() else 0,
    conda:
        TORCH_ENV
    script:
        "../scripts/extract_block_stats.py"
