from spikesink.extraction.block_stats import load_block_stats
from spikesink.figures_lifecycle import plot_lifecycle_grid
from spikesink.io import read_json
from spikesink.analyses.lifecycle import Lifecycle
from spikesink.logs import snakemake_logger

snakemake_logger(snakemake)
items = [
    (name, load_block_stats(stats, meta), Lifecycle(**read_json(lifecycle)))
    for name, stats, meta, lifecycle in zip(
        snakemake.params.models, snakemake.input.stats, snakemake.input.meta, snakemake.input.lifecycle
    )
]
plot_lifecycle_grid(items, snakemake.output.pdf, top_k=snakemake.params.plot["top_k"])
