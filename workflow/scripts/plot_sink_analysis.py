import pandas as pd

from spikesink.figures_sinks import plot_intervention, plot_tsne
from spikesink.logs import snakemake_logger

snakemake_logger(snakemake)
name = snakemake.wildcards.model
plot_tsne(pd.read_parquet(snakemake.input.tsne), snakemake.output.tsne, title=f"{name}: queries and keys (t-SNE)")
intervention = pd.read_csv(snakemake.input.intervention)
if intervention.empty:
    from spikesink.figures_mechanism import _placeholder

    _placeholder(snakemake.output.intervention, f"{name}: spike intervention", "no step-up block or spike channel detected")
else:
    plot_intervention(intervention, snakemake.output.intervention, title=f"{name}: removing the spike at the step-up block")
