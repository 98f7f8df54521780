import numpy as np
import pandas as pd

from spikesink.acquisition import corpus
from spikesink.extraction import prompts
from spikesink.analyses.intervention import intervention_table
from spikesink.io import load_npz, read_json, write_parquet, write_text
from spikesink.instrumentation.loading import load_model
from spikesink.logs import snakemake_logger
from spikesink.scorecard import write_claims
from spikesink.analyses.sink_geometry import sink_geometry
from spikesink.analyses.sink_report import sink_claims

log = snakemake_logger(snakemake)
cfg, spike, out = snakemake.params.sinks, snakemake.params.spike, snakemake.output
model, tokenizer, _ = load_model(snakemake.input.model, dtype=snakemake.params.dtype, device=snakemake.params.device)
sinks = load_npz(snakemake.input.sinks)
lifecycle = read_json(snakemake.input.lifecycle)
passages = corpus.read_passages(snakemake.input.passages)

geo = cfg["geometry"]
ids, meta = prompts.sample_prompts(passages, tokenizer, n_prompts=geo["n_prompts"], seq_len=geo["seq_len"], seed=geo["seed"])
tables = sink_geometry(model, np.array_split(ids, max(1, len(ids) // 8)), sinks["key0_mass_layer_head"],
                       max_prompts=geo["n_prompts"], tsne_points=geo["tsne_points"], seed=geo["seed"])
write_text(out.heads, tables["heads"].to_csv(index=False))
write_text(out.subspace, tables["subspace"].to_csv(index=False))
write_text(out.gaps, tables["gaps"].to_csv(index=False))
write_parquet(out.tsne, tables["tsne"])

intervention = None
itv = cfg["intervention"]
if lifecycle["step_up"] and lifecycle["spike_channels"]:
    # held-out prompts: a different seed than the extraction's
    ids, _ = prompts.sample_prompts(passages, tokenizer, n_prompts=itv["n_prompts"], seq_len=itv["seq_len"], seed=itv["seed"])
    blocks = {"first": lifecycle["step_up"][:1], "last": lifecycle["step_up"][-1:], "all": lifecycle["step_up"]}[itv["which_step_up"]]
    batches = np.array_split(ids, max(1, len(ids) // 8))
    intervention = pd.concat(
        [
            intervention_table(model, batches, block, lifecycle["spike_channels"], modes=tuple(itv["modes"]),
                               site=itv["site"], positions=itv["positions"], eps=cfg["eps"],
                               floor=spike["floor"], median_ratio=spike["median_ratio"])
            for block in blocks
        ],
        ignore_index=True,
    )
    write_text(out.intervention, intervention.to_csv(index=False))
else:
    write_text(out.intervention, "condition\n")  # nothing to intervene on: no detected spike
write_claims(out.claims, sink_claims(snakemake.wildcards.model, sinks, lifecycle, tables["subspace"], tables["gaps"],
                                     intervention, eps=cfg["eps"], bos_added=bool(meta[0]["bos_added"])))
