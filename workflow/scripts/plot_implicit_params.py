import pandas as pd

from spikesink.figures_function import plot_implicit_params
from spikesink.io import read_json
from spikesink.logs import snakemake_logger

snakemake_logger(snakemake)
plot_implicit_params(
    pd.read_csv(snakemake.input.table),
    snakemake.output.pdf,
    snakemake.wildcards.model,
    reason=read_json(snakemake.input.sites)["reason"],
    tolerance=snakemake.params.tolerance,
)
