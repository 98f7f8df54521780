import pandas as pd

from spikesink.ablations.report import plot_head_dim
from spikesink.logs import snakemake_logger

snakemake_logger(snakemake)
plot_head_dim(pd.read_csv(snakemake.input.table), snakemake.output.pdf)
