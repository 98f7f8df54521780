import pandas as pd

from spikesink.figures_function import plot_act_scales, plot_quantization
from spikesink.logs import snakemake_logger
from spikesink.results import read_lifecycle

snakemake_logger(snakemake)
name = snakemake.wildcards.model
plot_act_scales(
    pd.read_parquet(snakemake.input.summary),
    snakemake.output.scales,
    read_lifecycle(snakemake.input.lifecycle).step_up,
    name,
)
plot_quantization(pd.read_csv(snakemake.input.table), snakemake.output.int8, name)
