from spikesink.figures_lifecycle import plot_lifecycle
from spikesink.logs import snakemake_logger
from spikesink.results import load_block_stats, read_lifecycle

snakemake_logger(snakemake)
stats = load_block_stats(snakemake.input.stats, snakemake.input.meta)
lc = read_lifecycle(snakemake.input.lifecycle)
plot_lifecycle(stats, lc, snakemake.wildcards.model, snakemake.output.pdf, **snakemake.params.plot)
