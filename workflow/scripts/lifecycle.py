from spikesink.analyses.lifecycle import detect_lifecycle
from spikesink.analyses.lifecycle_report import lifecycle_claims
from spikesink.config import lifecycle_settings
from spikesink.logs import snakemake_logger
from spikesink.results import load_block_stats, write_lifecycle
from spikesink.scorecard import write_claims

log = snakemake_logger(snakemake)
cfg = snakemake.params.config
lc = detect_lifecycle(load_block_stats(snakemake.input.stats, snakemake.input.meta), lifecycle_settings(cfg))
write_lifecycle(snakemake.output.lifecycle, lc)
write_claims(snakemake.output.claims, lifecycle_claims(snakemake.wildcards.model, lc, **cfg["claims"]))
log.info("plateau %s, step-up %s, step-down %s, channels %s", lc.plateau, lc.step_up, lc.step_down, lc.spike_channels)
