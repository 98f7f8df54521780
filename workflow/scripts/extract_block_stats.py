from spikesink.extraction.block_stats import run_extraction
from spikesink.instrumentation.model import InstrumentedModel
from spikesink.io import outputs_together
from spikesink.logs import snakemake_logger
from spikesink.results import read_prompts, save_block_stats, write_sink_stats

log = snakemake_logger(snakemake)
config, p = snakemake.params.config, snakemake.params
# verify: re-hash the weights against the manifest, so a model edited behind Snakemake's back
# fails here instead of producing statistics of the wrong weights
model = InstrumentedModel.load(
    snakemake.input.model,
    dtype=p.dtype,
    device=config["extraction"]["device"],
    verify=config["extraction"]["verify_weights"],
    name=snakemake.wildcards.model,
)
prompts = read_prompts(snakemake.input.prompts[0])
stats, sinks = run_extraction(model, prompts, config, snakemake.wildcards.model, batch_size=p.batch_size)
with outputs_together():  # the three outputs land together or not at all
    write_sink_stats(snakemake.output.sinks, sinks)
    save_block_stats(stats, snakemake.output.stats, snakemake.output.meta)
log.info("extracted %d prompts x %d tokens over %d blocks", *stats.input_ids.shape, stats.n_blocks)
