from pathlib import Path

from spikesink.io import output_stem, read_json
from spikesink.logs import snakemake_logger
from spikesink.reporting.provenance import write_provenance

snakemake_logger(snakemake)
folders = dict(zip(snakemake.params.models, snakemake.input.models))
write_provenance(
    {m: read_json(Path(d) / "manifest.json") for m, d in folders.items()}, output_stem(snakemake.output.csv)
)
