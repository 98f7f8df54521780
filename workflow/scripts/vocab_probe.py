from spikesink.io import read_json, write_json, write_parquet
from spikesink.instrumentation.loading import load_model
from spikesink.logs import snakemake_logger
from spikesink.scorecard import write_claims
from spikesink.analyses.vocab_probe import run_vocab_probe, vocab_probe_claims

log = snakemake_logger(snakemake)
probe, spike = snakemake.params.probe, snakemake.params.spike
model, tokenizer, _ = load_model(snakemake.input.model, dtype=snakemake.params.dtype, device=snakemake.params.device)
frame, summary = run_vocab_probe(
    model,
    tokenizer,
    lifecycle=read_json(snakemake.input.lifecycle),
    blocks=probe["blocks"],
    prefix=probe["prefix"],
    floor=spike["floor"],
    median_ratio=spike["median_ratio"],
    batch_size=probe["batch_size"],
    limit=probe["limit"],
)
write_parquet(snakemake.output.frame, frame)
# wall-clock seconds go to the log, not into a result that must be identical across runs
log.info("probe seconds: %s", summary.pop("seconds", None))
write_json(snakemake.output.summary, summary)
write_claims(snakemake.output.claims, vocab_probe_claims(snakemake.wildcards.model, summary, snakemake.params.paper_model))
log.info("spike tokens at position 0: %s of %s", summary["n_spike_pos0"], summary["n_probed"])
