import pandas as pd

from spikesink.figures_function import plot_attention_path
from spikesink.logs import snakemake_logger

snakemake_logger(snakemake)
table = pd.read_csv(snakemake.input.table)
plot_attention_path(
    table,
    snakemake.output.pdf,
    snakemake.wildcards.model,
    reason=None if len(table) else "no attention block after a step-up block inside the plateau",
)
