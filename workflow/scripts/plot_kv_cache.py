import pandas as pd

from spikesink.figures_function import plot_kv_cache
from spikesink.logs import snakemake_logger

snakemake_logger(snakemake)
plot_kv_cache(
    pd.read_parquet(snakemake.input.curve),
    pd.read_csv(snakemake.input.table),
    snakemake.output.pdf,
    snakemake.wildcards.model,
)
