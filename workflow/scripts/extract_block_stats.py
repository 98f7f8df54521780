from spikesink.acquisition import corpus
from spikesink.extraction import prompts
from spikesink.config import extraction_settings
from spikesink.extraction.block_stats import extract_block_stats, save_block_stats
from spikesink.io import write_json, write_npz
from spikesink.instrumentation.loading import load_model, max_positions
from spikesink.logs import snakemake_logger

log = snakemake_logger(snakemake)
ext = snakemake.params.extraction
# verify: re-hash the weights against the manifest, so a model edited behind Snakemake's back
# fails here instead of producing statistics of the wrong weights
model, tokenizer, manifest = load_model(snakemake.input.model, dtype=snakemake.params.dtype, device=ext["device"],
                                        verify=ext["verify_weights"])
input_ids, prompt_meta = prompts.sample_prompts(
    corpus.read_passages(snakemake.input.passages),
    tokenizer,
    n_prompts=ext["n_prompts"],
    seq_len=ext["seq_len"],
    seed=ext["seed"],
    max_positions=max_positions(model),
)
settings = extraction_settings({"extraction": ext, "spike": snakemake.params.spike})
stats = extract_block_stats(
    model,
    input_ids,
    batch_size=snakemake.params.batch_size,
    settings=settings,
    meta={"model": snakemake.wildcards.model, "bos_added": bool(prompt_meta[0]["bos_added"]), "manifest": manifest},
    collect_sinks=True,
    sink_eps=snakemake.params.sink_eps,
)
write_npz(snakemake.output.sinks, **stats.sinks)
save_block_stats(stats, snakemake.output.stats, snakemake.output.meta)
write_json(snakemake.output.prompts, prompt_meta)
log.info("extracted %d prompts x %d tokens over %d blocks", *input_ids.shape, stats.n_blocks)
