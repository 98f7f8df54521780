from spikesink.analyses.implicit_params import calibrate, implicit_claims, implicit_parameter_table, site_blocks
from spikesink.analyses.perplexity import batched
from spikesink.instrumentation.loading import load_model
from spikesink.instrumentation.spikes import SpikeRule
from spikesink.io import output_stem, write_json
from spikesink.logs import snakemake_logger
from spikesink.results import read_lifecycle, read_prompts
from spikesink.scorecard import write_claims
from spikesink.tables import write_table

log = snakemake_logger(snakemake)
cfg, spike, out = snakemake.params.cfg, snakemake.params.spike, snakemake.output
lc = read_lifecycle(snakemake.input.lifecycle)
rule = SpikeRule(spike["floor"], spike["median_ratio"])
sites, skipped = site_blocks(lc.to_dict())
reason = (
    None
    if sites and lc.spike_channels
    else "no FFN block carrying a spike was detected" + (f" ({'; '.join(skipped)})" if skipped else "")
)
table, calibrated = None, []
if reason is None:
    model, _, _ = load_model(snakemake.input.model, dtype=snakemake.params.dtype, device=snakemake.params.device)
    calibration = read_prompts(snakemake.input.calibration[0]).matrix(cfg["calibration_prompts"] or 32)
    calibrated = calibrate(model, calibration, sites, lc.spike_channels, rule)
    heldout = batched(read_prompts(snakemake.input.heldout[0]).matrix(), 8)
    table = implicit_parameter_table(model, heldout, calibrated, cfg["modes"], rule)
else:
    import pandas as pd

    table = pd.DataFrame(columns=["block", "roles", "mode", "perplexity", "ratio", "edited_tokens", "spread"])
write_table(
    table,
    output_stem(out.table[0]),
    caption=f"{snakemake.wildcards.model}: held-out perplexity with the massive activations set to their own mean, "
    "to zero or to the ordinary tokens' mean (Sun et al. 2024)" + (f". n/a: {reason}" if reason else ""),
)
write_json(out.sites, {"reason": reason, "skipped": skipped, "sites": [s.to_dict() for s in calibrated]})
write_claims(
    out.claims,
    implicit_claims(
        snakemake.wildcards.model, table, reason, cfg["mean_tolerance"], cfg["zero_factor"], cfg["max_spread"]
    ),
)
log.info("implicit parameters: %s", reason or table.to_string())
