from spikesink.io import output_stem
from spikesink.logs import snakemake_logger
from spikesink.reporting.scorecard import read_claims, write_scorecard

snakemake_logger(snakemake)
write_scorecard(read_claims(snakemake.input.claims), output_stem(snakemake.output[0]))
