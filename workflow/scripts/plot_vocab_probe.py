import pandas as pd

from spikesink.figures_mechanism import plot_vocab_probe
from spikesink.io import read_json
from spikesink.logs import snakemake_logger

snakemake_logger(snakemake)
plot_vocab_probe(
    pd.read_parquet(snakemake.input.frame),
    read_json(snakemake.input.summary),
    snakemake.output.pdf,
    model=snakemake.wildcards.model,
)
