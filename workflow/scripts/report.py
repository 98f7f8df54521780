from spikesink.analyses.jobs import run_report
from spikesink.logs import snakemake_logger

snakemake_logger(snakemake)
p = snakemake.params
run_report(p.analysis, snakemake.wildcards.get("model"), p.models, p.config, p.paper_models)
