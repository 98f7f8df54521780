import numpy as np
import torch
from safetensors.torch import save_file

from spikesink.analyses.quantization import activation_scales, scale_table, spike_token_mask
from spikesink.instrumentation.loading import load_model
from spikesink.io import atomic_path, write_parquet
from spikesink.logs import snakemake_logger
from spikesink.results import RESIDUAL, load_block_stats, read_lifecycle, read_prompts

log = snakemake_logger(snakemake)
cfg, spike, out = snakemake.params.cfg, snakemake.params.spike, snakemake.output
stats = load_block_stats(snakemake.input.stats, snakemake.input.meta)
prompts = read_prompts(snakemake.input.prompts[0]).matrix(cfg["calibration_prompts"])
mask = spike_token_mask(stats.token_max[RESIDUAL], stats.median[RESIDUAL], spike["floor"], spike["median_ratio"])[
    : len(prompts)
]
model, _, _ = load_model(snakemake.input.model, dtype=snakemake.params.dtype, device=snakemake.params.device)
result = activation_scales(model, prompts, mask, batch_size=snakemake.params.batch_size)
for path, key in ((out.scales, "all"), (out.non_spike, "non_spike")):
    with atomic_path(path) as tmp:  # SmoothQuant's layout: module path -> (in_features,) max |x|
        save_file(
            {name: torch.from_numpy(np.ascontiguousarray(s[key])) for name, s in result["scales"].items()}, str(tmp)
        )
write_parquet(out.summary, scale_table(result, read_lifecycle(snakemake.input.lifecycle).spike_channels))
log.info("activation scales of %d Linear layers; %d spike tokens", len(result["scales"]), int(mask.sum()))
