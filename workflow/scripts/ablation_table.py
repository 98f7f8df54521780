from pathlib import Path

from spikesink.ablations.claims import claim_thresholds
from spikesink.ablations.report import (
    ablation_table,
    data_label,
    plot_table,
    table_claims,
    table_frame,
    write_ablation_table,
)
from spikesink.io import read_json
from spikesink.logs import snakemake_logger
from spikesink.reporting.scorecard import write_claims

snakemake_logger(snakemake)
table = snakemake.wildcards.table
metrics = [read_json(path) for path in snakemake.input.metrics]
frame = table_frame(metrics, table)
data = ", ".join(data_label(s) for s in frame["data"].dropna().unique())
seeds = int(frame["n_seeds"].max())
caption = (
    f"Sink remedies on {data}: ours (each cell the mean over {seeds} seed(s) with its 95 % bootstrap interval, each "
    f"seed's sink ratio) beside the literature's number where one is published, preset {snakemake.params.preset}."
    if table == "remedies"
    else f"Table {table} ({snakemake.wildcards.name}) on {data}: ours (ppl, sink ratio %, spike; mean +- sd over {seeds} "
    f"seed(s), each seed's sink ratio) beside the paper's, preset {snakemake.params.preset}."
)
write_ablation_table(
    frame, Path(snakemake.output.table[0]).with_suffix(""), caption=caption + " The CSV has every column."
)
# the claims' thresholds: ablations.claims of the config (every default and its reason in schema.yaml)
thresholds = claim_thresholds(snakemake.params.claims)
write_claims(snakemake.output.claims, table_claims(ablation_table(metrics), table, snakemake.params.preset, thresholds))
plot_table(frame, table, snakemake.output.pdf, data)
