import numpy as np

from spikesink.figures_sinks import plot_key0_heatmap, plot_sink_vs_spike
from spikesink.io import load_npz, read_json
from spikesink.logs import snakemake_logger

snakemake_logger(snakemake)
sinks = load_npz(snakemake.input.sinks)
lifecycle = read_json(snakemake.input.lifecycle)
name = snakemake.wildcards.model
plot_key0_heatmap(sinks["key0_mass_layer_head"], snakemake.output.heatmap, title=f"{name}: mean attention on key 0")
plot_sink_vs_spike(sinks["sink_ratio_layer"], sinks["key0_mass_layer"], np.asarray(lifecycle["top1_by_block"]),
                   snakemake.output.depth, title=f"{name}: spikes and sinks over depth",
                   step_up=lifecycle["step_up"], step_down=lifecycle["step_down"])
