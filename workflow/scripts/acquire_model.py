from pathlib import Path

from spikesink.acquisition.models import acquire_model
from spikesink.logs import snakemake_logger

log = snakemake_logger(snakemake)
manifest = acquire_model(
    snakemake.wildcards.model,
    dict(snakemake.params.spec),
    out_dir=Path(snakemake.output[0]),
    cache_dir=Path(snakemake.params.cache_dir),
)
log.info("acquired %s: %s", snakemake.wildcards.model, manifest)
