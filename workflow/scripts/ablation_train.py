from pathlib import Path

from spikesink.ablations.train import run_variant
from spikesink.allocator import keep_freed_memory
from spikesink.logs import append_usage

keep_freed_memory()  # freed activations stay in the heap (~5 % per step, benchmarks/bench_allocator.py)
# run_variant logs to the rule's log file itself and sets torch's threads
run_variant(
    snakemake.params.cfg,
    snakemake.wildcards.variant,
    Path(snakemake.output.metrics).parent,
    corpus_path=snakemake.input.get("corpus"),
    log=snakemake.log[0],
    data_dir=Path(snakemake.input.data).parent,
    overrides={"train": {"progress": False, "threads": snakemake.threads, "seed": int(snakemake.wildcards.seed)}},
)
append_usage(snakemake.log[0])
