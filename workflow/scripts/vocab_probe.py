from spikesink.analyses.vocab_probe import run_vocab_probe
from spikesink.analyses.vocab_probe_report import vocab_probe_claims
from spikesink.instrumentation.loading import load_model
from spikesink.io import write_json, write_parquet
from spikesink.logs import snakemake_logger
from spikesink.results import read_lifecycle
from spikesink.scorecard import write_claims

log = snakemake_logger(snakemake)
probe, spike = snakemake.params.probe, snakemake.params.spike
model, tokenizer, _ = load_model(snakemake.input.model, dtype=snakemake.params.dtype, device=snakemake.params.device)
frame, summary = run_vocab_probe(
    model,
    tokenizer,
    lifecycle=read_lifecycle(snakemake.input.lifecycle).to_dict(),
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
write_claims(
    snakemake.output.claims, vocab_probe_claims(snakemake.wildcards.model, summary, snakemake.params.paper_model)
)
log.info("spike tokens at position 0: %s of %s", summary["n_spike_pos0"], summary["n_probed"])
