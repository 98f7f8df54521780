import pandas as pd

from spikesink.analyses.attention_path import attention_path_claims, attention_path_table, plateau_attention_blocks
from spikesink.analyses.perplexity import batched
from spikesink.instrumentation.loading import load_model
from spikesink.instrumentation.spikes import SpikeRule
from spikesink.io import output_stem
from spikesink.logs import snakemake_logger
from spikesink.results import read_lifecycle, read_prompts
from spikesink.scorecard import write_claims
from spikesink.tables import write_table

log = snakemake_logger(snakemake)
cfg, spike, out = snakemake.params.cfg, snakemake.params.spike, snakemake.output
lc = read_lifecycle(snakemake.input.lifecycle).to_dict()
blocks = plateau_attention_blocks(lc)
reason = None if blocks and lc["spike_channels"] else "no attention block after a step-up block inside the plateau"
table = pd.DataFrame(
    columns=[
        "condition",
        "blocks",
        "channels",
        "edited_tokens",
        "perplexity",
        "sink_ratio",
        "key0_mass",
        "sink_ratio_edited_layers",
        "key0_mass_edited_layers",
    ]
)
if reason is None:
    model, _, _ = load_model(snakemake.input.model, dtype=snakemake.params.dtype, device=snakemake.params.device)
    heldout = batched(read_prompts(snakemake.input.heldout[0]).matrix(), 8)
    table = attention_path_table(
        model,
        heldout,
        lc,
        eps=snakemake.params.eps,
        positions=cfg["positions"],
        seed=cfg["seed"],
        rule=SpikeRule(spike["floor"], spike["median_ratio"]),
    )
write_table(
    table,
    output_stem(out.table[0]),
    caption=f"{snakemake.wildcards.model}: token 0's normalised attention input with its spike channels replaced by the "
    "ordinary tokens' mean, in the plateau layers only (residual stream and FFN untouched), against a control "
    "edit of as many non-spike channels" + (f". n/a: {reason}" if reason else ""),
)
write_claims(
    out.claims,
    attention_path_claims(snakemake.wildcards.model, table, reason, cfg["min_drop"], cfg["max_control_change"]),
)
log.info("attention path: %s", reason or table.to_string())
