from spikesink.config import lifecycle_settings
from spikesink.extraction.block_stats import load_block_stats
from spikesink.io import write_json
from spikesink.analyses.lifecycle import detect_lifecycle
from spikesink.analyses.lifecycle_report import lifecycle_claims
from spikesink.logs import snakemake_logger
from spikesink.scorecard import write_claims

log = snakemake_logger(snakemake)
cfg = snakemake.params.config
stats = load_block_stats(snakemake.input.stats, snakemake.input.meta)
lc = detect_lifecycle(stats, lifecycle_settings(cfg))
write_json(snakemake.output.lifecycle, lc.to_dict())
write_claims(snakemake.output.claims, lifecycle_claims(snakemake.wildcards.model, lc, **cfg["claims"]))
log.info("plateau %s, step-up %s, step-down %s, channels %s", lc.plateau, lc.step_up, lc.step_down, lc.spike_channels)
