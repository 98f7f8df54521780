from spikesink.figures_lifecycle import plot_lifecycle_grid
from spikesink.logs import snakemake_logger
from spikesink.results import load_block_stats, read_lifecycle

snakemake_logger(snakemake)
items = [
    (name, load_block_stats(stats, meta), read_lifecycle(lifecycle))
    for name, stats, meta, lifecycle in zip(
        snakemake.params.models, snakemake.input.stats, snakemake.input.meta, snakemake.input.lifecycle
    )
]
plot_lifecycle_grid(items, snakemake.output.pdf, top_k=snakemake.params.plot["top_k"])
