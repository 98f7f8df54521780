import pandas as pd

from spikesink.ablations.report import plot_training_curves
from spikesink.logs import snakemake_logger

snakemake_logger(snakemake)
curves = {}  # variant -> one curve per seed (same colour)
for name, path in zip(snakemake.params.variants, snakemake.input.curves):
    curves.setdefault(name, []).append(pd.read_csv(path))
plot_training_curves(curves, snakemake.output.pdf)
