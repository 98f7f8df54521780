from spikesink.analyses.jobs import run_summary
from spikesink.logs import snakemake_logger

snakemake_logger(snakemake)
p = snakemake.params
run_summary(p.analysis, p.models, p.config, p.paper_models)
