from spikesink.analyses.architectures import architecture_claims, architecture_row, architecture_table
from spikesink.figures_architectures import plot_architectures
from spikesink.io import output_stem, read_json
from spikesink.logs import snakemake_logger
from spikesink.results import read_sink_stats
from spikesink.scorecard import write_claims
from spikesink.tables import write_table

snakemake_logger(snakemake)
inp = snakemake.input
rows = [
    architecture_row(name, read_json(meta), read_json(lifecycle), vars(read_sink_stats(sinks)))
    for name, meta, lifecycle, sinks in zip(snakemake.params.models, inp.meta, inp.lifecycle, inp.sinks)
]
frame = architecture_table(rows)
write_table(
    frame,
    output_stem(snakemake.output.table[0]),
    caption="Every configured model: norm placement, FFN, spike and sinks (beyond the paper; the real-weights view of Table 5).",
)
write_claims(snakemake.output.claims, architecture_claims(frame))
plot_architectures(frame, snakemake.output.pdf)
