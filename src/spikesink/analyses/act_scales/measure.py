"""Activation scales (SmoothQuant's act-scales): for every Linear layer of the decoder, the
per-input-channel max |x| over the calibration prompts, and the same without the spike tokens
(the extraction's spike tokens of those prompts: massive at some block). The down-projection
input of a step-up block is where the spike is made, and should stand out. The quantization
analysis reads them (spikesink.analyses.quantization).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from spikesink.analyses.act_scales.result import ActScales
from spikesink.analyses.unit import Job
from spikesink.instrumentation.layout import model_layout
from spikesink.instrumentation.taps import module_inputs, run_decoder
from spikesink.results import RESIDUAL


def measure(job: Job) -> ActScales:
    stats, rule = job["block_stats"], job.rule
    prompts = job["prompts.extraction"].matrix(job.settings.calibration_prompts)
    mask = spike_token_mask(stats.token_max[RESIDUAL], stats.median[RESIDUAL], rule.floor, rule.median_ratio)
    result = activation_scales(job.model.model, prompts, mask[: len(prompts)], job.shared.extraction_batch_size)
    return ActScales(
        scales={name: s["all"] for name, s in result["scales"].items()},
        non_spike={name: s["non_spike"] for name, s in result["scales"].items()},
        summary=scale_table(result, job["lifecycle"].spike_channels),
    )


def spike_token_mask(token_max: np.ndarray, median: np.ndarray, floor: float, median_ratio: float) -> np.ndarray:
    """(N, T) spike tokens of the extraction prompts: massive at some block (block_stats arrays
    token_max (B, N, T) and median (B, N) of the residual kind)."""
    from spikesink.metrics import is_massive

    return is_massive(token_max, median[..., None], floor, median_ratio).any(axis=0)


def activation_scales(model: nn.Module, prompts: np.ndarray, spike_mask: np.ndarray, batch_size: int = 8) -> dict:
    """{module path: {"all": (in,), "non_spike": (in,)}} float32 max |x| per input channel, plus
    {module path: {"role", "block", "spike_token_max", "other_token_max"}}."""
    layout = model_layout(model)
    modules = {name: module for name, _, _, module in layout.linear_modules()}
    info = {name: {"role": role, "block": block} for name, role, block, _ in layout.linear_modules()}
    scales = {name: {"all": None, "non_spike": None} for name in modules}
    peaks = {name: {"spike_token_max": 0.0, "other_token_max": 0.0} for name in modules}
    device = next(model.parameters()).device
    current = {}

    def reduce(x: torch.Tensor, mask: torch.Tensor) -> tuple:
        """(per-channel max over all tokens, over non-spike tokens, max over spike / other tokens)."""
        mask = _token_mask(mask, x)
        absx = x.detach().abs()
        per_token = absx.amax(dim=-1)
        channels_all = absx.amax(dim=tuple(range(absx.dim() - 1)))
        channels_other = torch.where(mask[..., None], 0, absx).amax(dim=tuple(range(absx.dim() - 1)))
        spike_max = float(per_token[mask].max()) if mask.any() else 0.0
        other_max = float(per_token[~mask].max()) if (~mask).any() else 0.0
        return channels_all.float(), channels_other.float(), spike_max, other_max

    def record(name, args, kwargs):
        x = args[0] if args else kwargs["input"]
        # q/k/v (and gate/up) are called one after the other on the very same tensor: reduce it
        # once (identity, not address: a freed tensor's memory may be reused by the next one)
        if current.get("last") is None or current["last"][0] is not x:
            current["last"] = (x, reduce(x, current["mask"]))
        channels_all, channels_other, spike_max, other_max = current["last"][1]
        peaks[name]["spike_token_max"] = max(peaks[name]["spike_token_max"], spike_max)
        peaks[name]["other_token_max"] = max(peaks[name]["other_token_max"], other_max)
        for field, value in (("all", channels_all), ("non_spike", channels_other)):
            scales[name][field] = value if scales[name][field] is None else torch.maximum(scales[name][field], value)

    with module_inputs(modules, record):
        for start in range(0, len(prompts), batch_size):
            ids = torch.as_tensor(prompts[start : start + batch_size], device=device)
            current["mask"] = torch.as_tensor(spike_mask[start : start + batch_size], device=device)
            current["last"] = None
            run_decoder(model, input_ids=ids, use_cache=False)
    current["last"] = None
    out = {name: {k: v.cpu().numpy().astype(np.float32) for k, v in value.items()} for name, value in scales.items()}
    return {"scales": out, "info": {name: info[name] | peaks[name] for name in modules}}


def _token_mask(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The batch's (B, T) spike mask in the layout of a Linear input: (B, T, in) as most layers
    see it, or (B * T, in) where the family flattens the tokens first (Qwen2-MoE's shared expert)."""
    tokens = x.shape[:-1]
    if mask.shape == tokens:
        return mask
    if mask.numel() == tokens.numel():
        return mask.reshape(tokens)
    raise ValueError(f"a Linear input holds {tuple(tokens)} tokens, the batch {tuple(mask.shape)}: not one per token")


def scale_table(result: Mapping, spike_channels: Sequence[int]) -> pd.DataFrame:
    """One row per Linear: its role and block, the largest scale and its channel, with and without spike tokens."""
    spike_channels = set(int(c) for c in spike_channels)
    rows = []
    for name, scales in result["scales"].items():
        info = result["info"][name]
        reads_residual = info["role"] in (
            "q",
            "k",
            "v",
            "qkv",
            "gate",
            "up",
            "gate_up",
            "fc_in",
            "shared_gate",
            "shared_up",
            "linear_in",
        )
        channel = int(np.argmax(scales["all"]))
        rows.append(
            {
                "module": name,
                "role": info["role"],
                "block": info["block"],
                "in_features": scales["all"].size,
                "max_scale": float(scales["all"].max()),
                "max_channel": channel,
                "max_scale_non_spike": float(scales["non_spike"].max()),
                "spike_token_max": info["spike_token_max"],
                "other_token_max": info["other_token_max"],
                "max_from_spike_tokens": info["spike_token_max"] > info["other_token_max"],
                "max_channel_is_spike_channel": bool(reads_residual and channel in spike_channels),
            }
        )
    return pd.DataFrame(rows)
