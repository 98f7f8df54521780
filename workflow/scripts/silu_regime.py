from spikesink.analyses.silu_regime import run_silu_regime, silu_claims
from spikesink.instrumentation.loading import load_model
from spikesink.io import write_parquet
from spikesink.logs import snakemake_logger
from spikesink.results import read_lifecycle, read_prompts
from spikesink.scorecard import write_claims

log = snakemake_logger(snakemake)
spike = snakemake.params.spike
model, tokenizer, _ = load_model(snakemake.input.model, dtype=snakemake.params.dtype, device=snakemake.params.device)
sentences = read_prompts(snakemake.input.sentences[0])
frame, reason = run_silu_regime(
    model,
    sentences.lists(),
    read_lifecycle(snakemake.input.lifecycle).to_dict(),
    pad_id=tokenizer.pad_token_id or 0,
    floor=spike["floor"],
    median_ratio=spike["median_ratio"],
)
write_parquet(snakemake.output.frame, frame)
claims = silu_claims(snakemake.wildcards.model, frame, reason, activation=frame.attrs["activation"])
write_claims(snakemake.output.claims, claims)
log.info("SiLU regime: %s", reason or f"{len(frame)} token rows, activation {frame.attrs['activation']}")
