import numpy as np

from spikesink.figures_sinks import plot_key0_heatmap, plot_sink_vs_spike
from spikesink.logs import snakemake_logger
from spikesink.results import read_lifecycle, read_sink_stats

snakemake_logger(snakemake)
sinks = read_sink_stats(snakemake.input.sinks)
lc = read_lifecycle(snakemake.input.lifecycle)
name = snakemake.wildcards.model
plot_key0_heatmap(sinks.key0_mass_layer_head, snakemake.output.heatmap, title=f"{name}: mean attention on key 0")
plot_sink_vs_spike(
    sinks.sink_ratio_layer,
    sinks.key0_mass_layer,
    np.asarray(lc.top1_by_block),
    snakemake.output.depth,
    title=f"{name}: spikes and sinks over depth",
    step_up=lc.step_up,
    step_down=lc.step_down,
)
