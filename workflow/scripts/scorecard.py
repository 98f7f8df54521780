from spikesink.io import output_stem
from spikesink.logs import snakemake_logger
from spikesink.reporting.scorecard import plot_scorecard, read_claims, write_scorecard

snakemake_logger(snakemake)
claims = read_claims(snakemake.input.claims)
write_scorecard(claims, output_stem(snakemake.output.csv))
plot_scorecard(claims, snakemake.output.figure)
