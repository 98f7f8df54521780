from spikesink.analyses.jobs import run_measure
from spikesink.logs import snakemake_logger

snakemake_logger(snakemake)
p = snakemake.params
run_measure(p.analysis, snakemake.wildcards.get("model"), p.models, p.config, p.options)
