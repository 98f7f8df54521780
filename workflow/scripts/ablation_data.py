from pathlib import Path

from spikesink.ablations.data import prepare_data
from spikesink.logs import snakemake_logger

log = snakemake_logger(snakemake)
data = snakemake.params.cfg.get("data", {})
prepare_data(
    Path(snakemake.output.meta).parent,
    vocab_size=int(data.get("vocab_size", 4096)),
    heldout_frac=float(data.get("heldout_frac", 0.1)),
    seed=int(data.get("seed", 0)),
    corpus_path=snakemake.input.corpus,
)
