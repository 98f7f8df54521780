import pandas as pd

from spikesink.analyses.intervention import intervention_table
from spikesink.analyses.sink_report import intervention_claims
from spikesink.instrumentation.loading import load_model
from spikesink.io import write_text
from spikesink.logs import snakemake_logger
from spikesink.results import read_lifecycle, read_prompts
from spikesink.scorecard import write_claims

log = snakemake_logger(snakemake)
cfg, spike = snakemake.params.intervention, snakemake.params.spike
lc = read_lifecycle(snakemake.input.lifecycle)
reason = None if lc.step_up and lc.spike_channels else "no step-up block or spike channel was detected"
table = pd.DataFrame(columns=["condition", "block"])
if reason is None:
    model, _, _ = load_model(snakemake.input.model, dtype=snakemake.params.dtype, device=snakemake.params.device)
    ids = read_prompts(snakemake.input.prompts[0]).matrix()
    blocks = {"first": lc.step_up[:1], "last": lc.step_up[-1:], "all": lc.step_up}[cfg["which_step_up"]]
    batches = [ids[i : i + 8] for i in range(0, len(ids), 8)]
    table = pd.concat(
        [
            intervention_table(
                model,
                batches,
                block,
                lc.spike_channels,
                modes=tuple(cfg["modes"]),
                site=cfg["site"],
                positions=cfg["positions"],
                eps=snakemake.params.eps,
                floor=spike["floor"],
                median_ratio=spike["median_ratio"],
            )
            for block in blocks
        ],
        ignore_index=True,
    )
write_text(snakemake.output.table, table.to_csv(index=False))
write_claims(snakemake.output.claims, intervention_claims(snakemake.wildcards.model, table, reason))
log.info("intervention: %s", reason or f"{len(table)} conditions")
