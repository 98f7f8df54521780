import numpy as np

from spikesink.analyses.sink_geometry import sink_geometry
from spikesink.analyses.sink_report import sink_claims
from spikesink.instrumentation.loading import load_model
from spikesink.io import write_parquet, write_text
from spikesink.logs import snakemake_logger
from spikesink.results import read_lifecycle, read_prompts, read_sink_stats
from spikesink.scorecard import write_claims

log = snakemake_logger(snakemake)
cfg, out = snakemake.params.geometry, snakemake.output
model, _, _ = load_model(snakemake.input.model, dtype=snakemake.params.dtype, device=snakemake.params.device)
sinks = read_sink_stats(snakemake.input.sinks)
prompts = read_prompts(snakemake.input.prompts[0])
ids = prompts.matrix(cfg["n_prompts"], cfg["seq_len"])
tables = sink_geometry(
    model,
    np.array_split(ids, max(1, len(ids) // 8)),
    sinks.key0_mass_layer_head,
    max_prompts=cfg["n_prompts"],
    tsne_points=cfg["tsne_points"],
    seed=cfg["seed"],
)
write_text(out.heads, tables["heads"].to_csv(index=False))
write_text(out.subspace, tables["subspace"].to_csv(index=False))
write_text(out.gaps, tables["gaps"].to_csv(index=False))
write_parquet(out.tsne, tables["tsne"])
claims = sink_claims(
    snakemake.wildcards.model,
    sinks,
    read_lifecycle(snakemake.input.lifecycle).to_dict(),
    tables["subspace"],
    tables["gaps"],
    eps=snakemake.params.eps,
    bos_added=prompts.bos_added,
)
write_claims(out.claims, claims)
