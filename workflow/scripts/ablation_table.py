from pathlib import Path

from spikesink.ablations.report import data_label, plot_table, table_claims, table_frame
from spikesink.io import read_json
from spikesink.logs import snakemake_logger
from spikesink.scorecard import write_claims
from spikesink.tables import write_table

snakemake_logger(snakemake)
table = snakemake.wildcards.table
frame = table_frame([read_json(path) for path in snakemake.input.metrics], table)
data = ", ".join(data_label(s) for s in frame["data"].dropna().unique())
seeds = int(frame["n_seeds"].max())
write_table(
    frame,
    Path(snakemake.output.table[0]).with_suffix(""),
    caption=f"Table {table} ({snakemake.wildcards.name}) on {data}: ours (ppl, sink ratio %, spike; mean over {seeds} seed(s), "
    f"*_sd their standard deviation, *_seeds each seed's value) beside the paper's (*_paper), preset {snakemake.params.preset}.",
)
write_claims(snakemake.output.claims, table_claims(frame, table, snakemake.params.preset))
plot_table(frame, table, snakemake.output.pdf, data)
