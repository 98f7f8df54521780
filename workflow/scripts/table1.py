from spikesink.analyses.lifecycle_report import table1, table1_row
from spikesink.io import output_stem
from spikesink.logs import snakemake_logger
from spikesink.results import read_lifecycle
from spikesink.tables import write_table

snakemake_logger(snakemake)
rows = [
    table1_row(name, read_lifecycle(path), paper_model)
    for name, path, paper_model in zip(
        snakemake.params.models, snakemake.input.lifecycle, snakemake.params.paper_models
    )
]
write_table(
    table1(rows),
    output_stem(snakemake.output[0]),
    caption="Table 1: blocks, step-up and step-down blocks (paper numbering: block 2l-1 = attention, 2l = FFN of layer l).",
)
