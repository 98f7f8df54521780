from spikesink.analyses.rmsnorm_collapse import collapse_claims, run_collapse
from spikesink.instrumentation.loading import load_model
from spikesink.io import write_json, write_npz, write_text
from spikesink.logs import snakemake_logger
from spikesink.results import read_lifecycle, read_prompts
from spikesink.scorecard import write_claims

log = snakemake_logger(snakemake)
cfg, spike = snakemake.params.collapse, snakemake.params.spike
model, tokenizer, _ = load_model(snakemake.input.model, dtype=snakemake.params.dtype, device=snakemake.params.device)
prompts = read_prompts(snakemake.input.prompts[0])
result = run_collapse(
    model,
    tokenizer,
    prompts.matrix(cfg["n_prompts"], cfg["seq_len"]),
    read_lifecycle(snakemake.input.lifecycle).to_dict(),
    bos_added=prompts.bos_added,
    floor=spike["floor"],
    median_ratio=spike["median_ratio"],
    seed=cfg["seed"],
)
write_json(snakemake.output.summary, result["summary"])
write_npz(snakemake.output.cosines, **result["matrices"])
write_text(snakemake.output.delimiters, result["delimiters"].to_csv(index=False))
write_text(snakemake.output.self_attention, result["self_attention"].to_csv(index=False))
write_claims(
    snakemake.output.claims, collapse_claims(snakemake.wildcards.model, result["summary"], result["self_attention"])
)
