import pandas as pd

from spikesink.ablations.report import plot_training_curves
from spikesink.logs import snakemake_logger

snakemake_logger(snakemake)
curves = {name: pd.read_csv(path) for name, path in zip(snakemake.params.variants, snakemake.input.curves)}
plot_training_curves(curves, snakemake.output.pdf)
