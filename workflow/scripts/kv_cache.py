from spikesink.analyses.kv_cache import check_setting, kv_cache_claims, kv_cache_study
from spikesink.instrumentation.loading import load_model, max_positions
from spikesink.io import output_stem, write_parquet
from spikesink.logs import snakemake_logger
from spikesink.results import read_prompts
from spikesink.scorecard import write_claims
from spikesink.tables import write_table

log = snakemake_logger(snakemake)
cfg, out = snakemake.params.cfg, snakemake.output
model, _, _ = load_model(snakemake.input.model, dtype=snakemake.params.dtype, device=snakemake.params.device)
texts = read_prompts(snakemake.input.texts[0]).matrix()
check_setting(texts.shape[1], cfg["window"], cfg["keep"], max_positions(model))
summary, curve = kv_cache_study(model, texts, cfg["window"], cfg["keep"], cfg["bin"])
write_table(
    summary,
    output_stem(out.table[0]),
    caption=f"{snakemake.wildcards.model}: perplexity of {len(texts)} x {texts.shape[1]} held-out tokens with every layer "
    f"attending through a window of {cfg['window']} keys, keeping the first tokens or not, beside full attention",
)
write_parquet(out.curve, curve)
write_claims(out.claims, kv_cache_claims(snakemake.wildcards.model, summary))
log.info("kv cache:\n%s", summary.to_string())
