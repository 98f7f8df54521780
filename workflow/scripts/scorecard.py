from pathlib import Path

from spikesink.logs import snakemake_logger
from spikesink.scorecard import read_claims, write_scorecard

snakemake_logger(snakemake)
write_scorecard(read_claims(snakemake.input.claims), Path(snakemake.output[0]).with_suffix(""))
