import pandas as pd

from spikesink.figures_sinks import plot_tsne
from spikesink.logs import snakemake_logger

snakemake_logger(snakemake)
name = snakemake.wildcards.model
plot_tsne(pd.read_parquet(snakemake.input.tsne), snakemake.output.pdf, title=f"{name}: queries and keys (t-SNE)")
