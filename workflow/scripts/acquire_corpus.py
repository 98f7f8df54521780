from pathlib import Path

from spikesink.acquisition import corpus
from spikesink.logs import snakemake_logger

log = snakemake_logger(snakemake)
spec = snakemake.params.corpus
out_dir = Path(snakemake.output.manifest).parent
if spec["source"] == "janeausten":
    manifest = corpus.acquire_janeausten(out_dir, min_chars=spec["min_chars"])
else:
    manifest = corpus.acquire_local_text(spec["path"], out_dir, pattern=spec["pattern"], min_chars=spec["min_chars"])
log.info("corpus: %s", manifest)
