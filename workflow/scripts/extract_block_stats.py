from spikesink.config import extraction_settings
from spikesink.extraction.block_stats import extract_block_stats
from spikesink.instrumentation.loading import load_model
from spikesink.logs import snakemake_logger
from spikesink.results import SinkStats, read_prompts, save_block_stats, write_sink_stats

log = snakemake_logger(snakemake)
ext = snakemake.params.extraction
# verify: re-hash the weights against the manifest, so a model edited behind Snakemake's back
# fails here instead of producing statistics of the wrong weights
model, _, manifest = load_model(
    snakemake.input.model, dtype=snakemake.params.dtype, device=ext["device"], verify=ext["verify_weights"]
)
prompts = read_prompts(snakemake.input.prompts[0])
stats = extract_block_stats(
    model,
    prompts.matrix(),
    batch_size=snakemake.params.batch_size,
    settings=extraction_settings({"extraction": ext, "spike": snakemake.params.spike}),
    meta={"model": snakemake.wildcards.model, "bos_added": prompts.bos_added, "manifest": manifest},
    collect_sinks=True,
    sink_eps=snakemake.params.sink_eps,
)
write_sink_stats(snakemake.output.sinks, SinkStats.from_arrays(stats.sinks))
save_block_stats(stats, snakemake.output.stats, snakemake.output.meta)
log.info("extracted %d prompts x %d tokens over %d blocks", *stats.input_ids.shape, stats.n_blocks)
