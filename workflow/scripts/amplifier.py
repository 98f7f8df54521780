import torch

from spikesink.analyses.amplifier import amplifier_claims, run_amplifier
from spikesink.instrumentation.loading import load_model
from spikesink.io import write_json, write_parquet
from spikesink.logs import snakemake_logger
from spikesink.results import read_lifecycle, read_prompts
from spikesink.scorecard import write_claims

log = snakemake_logger(snakemake)
cfg = snakemake.params.amplifier
model, _, _ = load_model(snakemake.input.model, dtype=snakemake.params.dtype, device=snakemake.params.device)
prompts = read_prompts(snakemake.input.prompts[0])
# the first tokens of many prompts; a BOS is dropped so that the first tokens differ
start = 1 if prompts.bos_added else 0
first_tokens = torch.as_tensor(prompts.matrix(cfg["n_prompts"], start + 4)[:, start:])
result = run_amplifier(
    model,
    read_lifecycle(snakemake.input.lifecycle).to_dict(),
    first_tokens,
    n_control=cfg["n_control"],
    seed=cfg["seed"],
)
write_json(snakemake.output.summary, result["summary"])
write_parquet(snakemake.output.uk_norms, result["norms"])
write_parquet(snakemake.output.spectra, result["spectra"])
claims = amplifier_claims(snakemake.wildcards.model, result["summary"])
write_claims(snakemake.output.claims, claims)
for claim in claims:
    log.info("%s: %s (%s)", {True: "holds", False: "FAILS", None: "n/a"}[claim.holds], claim.claim, claim.ours)
