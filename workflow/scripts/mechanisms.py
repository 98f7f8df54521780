import torch

from spikesink.acquisition import corpus
from spikesink.extraction import prompts
from spikesink.analyses.amplifier import amplifier_claims, run_amplifier
from spikesink.io import read_json, write_json, write_npz, write_parquet, write_text
from spikesink.instrumentation.loading import load_model
from spikesink.logs import snakemake_logger
from spikesink.analyses.rmsnorm_collapse import collapse_claims, run_collapse
from spikesink.scorecard import write_claims
from spikesink.analyses.silu_regime import run_silu_regime, silu_claims

log = snakemake_logger(snakemake)
mech, spike, out = snakemake.params.mech, snakemake.params.spike, snakemake.output
name = snakemake.wildcards.model
model, tokenizer, _ = load_model(snakemake.input.model, dtype=snakemake.params.dtype, device=snakemake.params.device)
lifecycle = read_json(snakemake.input.lifecycle)
passages = corpus.read_passages(snakemake.input.passages)
claims = []

# Fig 3/4/8: first tokens of many prompts (BOS dropped so that they differ)
amp_cfg = mech["amplifier"]
ids, meta = prompts.sample_prompts(passages, tokenizer, n_prompts=amp_cfg["n_prompts"], seq_len=4, seed=amp_cfg["seed"])
if meta[0]["bos_added"]:
    ids = ids[:, 1:]
amp = run_amplifier(model, lifecycle, torch.as_tensor(ids), n_control=amp_cfg["n_control"], seed=amp_cfg["seed"])
write_json(out.amplifier, amp["summary"])
write_parquet(out.uk_norms, amp["norms"])
write_parquet(out.spectra, amp["spectra"])
claims += amplifier_claims(name, amp["summary"])
log.info("amplifier done")

# Fig 5 and delimiters
col_cfg = mech["collapse"]
ids, meta = prompts.sample_prompts(passages, tokenizer, n_prompts=col_cfg["n_prompts"], seq_len=col_cfg["seq_len"], seed=col_cfg["seed"])
col = run_collapse(model, tokenizer, ids, lifecycle, bos_added=bool(meta[0]["bos_added"]),
                   floor=spike["floor"], median_ratio=spike["median_ratio"], seed=col_cfg["seed"])
write_json(out.collapse, col["summary"])
write_npz(out.cosines, **col["matrices"])
write_text(out.delimiters, col["delimiters"].to_csv(index=False))
write_text(out.self_attention, col["self_attention"].to_csv(index=False))
claims += collapse_claims(name, col["summary"], col["self_attention"])
log.info("collapse done")

# Fig 2 on sentences, as the paper does
silu_cfg = mech["silu"]
sentences = prompts.sample_sentences(passages, silu_cfg["n_sentences"], seed=silu_cfg["seed"])
sequences = [tokenizer(s)["input_ids"] for s in sentences]
silu, reason = run_silu_regime(model, sequences, lifecycle, pad_id=tokenizer.pad_token_id or 0,
                               floor=spike["floor"], median_ratio=spike["median_ratio"])
write_parquet(out.silu, silu)
claims += silu_claims(name, silu, reason, activation=silu.attrs["activation"])
write_claims(out.claims, claims)
for claim in claims:
    log.info("%s: %s (%s)", "holds" if claim.holds else "FAILS", claim.claim, claim.ours)
