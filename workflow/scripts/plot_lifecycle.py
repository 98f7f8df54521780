from spikesink.extraction.block_stats import load_block_stats
from spikesink.figures_lifecycle import plot_lifecycle
from spikesink.io import read_json
from spikesink.analyses.lifecycle import Lifecycle
from spikesink.logs import snakemake_logger

snakemake_logger(snakemake)
stats = load_block_stats(snakemake.input.stats, snakemake.input.meta)
lc = Lifecycle(**read_json(snakemake.input.lifecycle))
plot_lifecycle(stats, lc, snakemake.wildcards.model, snakemake.output.pdf, **snakemake.params.plot)
