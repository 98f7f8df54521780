import pandas as pd

from spikesink.figures_sinks import plot_intervention
from spikesink.logs import snakemake_logger
from spikesink.plotting import placeholder_figure

snakemake_logger(snakemake)
name = snakemake.wildcards.model
table = pd.read_csv(snakemake.input.table)
if table.empty:
    placeholder_figure(
        snakemake.output.pdf, f"{name}: spike intervention", "n/a: no step-up block or spike channel detected"
    )
else:
    plot_intervention(table, snakemake.output.pdf, title=f"{name}: removing the spike at the step-up block")
