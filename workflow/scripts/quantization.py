import pandas as pd
from safetensors.numpy import load_file

from spikesink.analyses.perplexity import batched
from spikesink.analyses.quantization import quantization_claims, quantization_table
from spikesink.instrumentation.loading import load_model
from spikesink.io import output_stem
from spikesink.logs import snakemake_logger
from spikesink.results import read_lifecycle, read_prompts
from spikesink.scorecard import write_claims
from spikesink.tables import write_table

log = snakemake_logger(snakemake)
inp, out, cfg = snakemake.input, snakemake.output, snakemake.params.cfg
all_tokens, non_spike = load_file(inp.scales), load_file(inp.non_spike)
scales = {name: {"all": all_tokens[name], "non_spike": non_spike[name]} for name in all_tokens}
model, _, _ = load_model(inp.model, dtype=snakemake.params.dtype, device=snakemake.params.device)
table = quantization_table(model, batched(read_prompts(inp.heldout[0]).matrix(), 8), scales, bits=cfg["bits"])
write_table(
    table,
    output_stem(out.table[0]),
    caption=f"{snakemake.wildcards.model}: held-out perplexity with INT{cfg['bits']} activations at every Linear input "
    "(weights untouched): per tensor, per tensor with the tokens that would clip kept in full precision, per token",
)
write_claims(
    out.claims,
    quantization_claims(
        snakemake.wildcards.model,
        table,
        pd.read_parquet(inp.summary),
        read_lifecycle(inp.lifecycle).step_up,
        cfg["min_recovery"],
    ),
)
log.info("quantization:\n%s", table.to_string())
