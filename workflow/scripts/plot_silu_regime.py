import pandas as pd

from spikesink.figures_mechanism import plot_silu_regime
from spikesink.logs import snakemake_logger

snakemake_logger(snakemake)
plot_silu_regime(pd.read_parquet(snakemake.input.frame), snakemake.output.pdf, snakemake.wildcards.model)
