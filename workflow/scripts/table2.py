from spikesink.analyses.vocab_probe_report import table2
from spikesink.io import output_stem, read_json
from spikesink.logs import snakemake_logger
from spikesink.tables import write_table

snakemake_logger(snakemake)
rows = [
    {"model": name, "paper_model": paper_model, "summary": read_json(path)}
    for name, path, paper_model in zip(snakemake.params.models, snakemake.input.summary, snakemake.params.paper_models)
]
write_table(
    table2(rows),
    output_stem(snakemake.output[0]),
    caption="Table 2: vocabulary ids that become spike tokens alone at position 0, and after a neutral prefix.",
)
