from pathlib import Path

from spikesink.ablations.data import prepare_from_config
from spikesink.logs import snakemake_logger

log = snakemake_logger(snakemake)
data = prepare_from_config(Path(snakemake.output.meta).parent, snakemake.params.cfg, snakemake.input.get("corpus"))
log.info(
    "%s: %d train and %d held-out tokens, vocabulary %d",
    data.meta["source"],
    data.meta["train_tokens"],
    data.meta["heldout_tokens"],
    data.vocab_size,
)
