"""What the spike costs an INT8 activation quantiser (weights untouched).

* Activation scales (SmoothQuant's act-scales): for every Linear layer of the decoder, the
  per-input-channel max |x| over the calibration prompts, and the same without the spike tokens
  (the extraction's spike tokens of those prompts: massive at some block). The down-projection
  input of a step-up block is where the spike is made, and should stand out.
* Fake-quantised activations, symmetric INT8 at every Linear input, weights in full precision:
    fp                   the model as is
    per_tensor           one static scale per layer input: the calibration max / 127
    per_tensor_keep      the same, with the scale from the non-spike tokens, and every token whose
                         max |x| would clip kept in full precision (LLM.int8-style outlier split,
                         by token instead of by feature)
    per_token            a dynamic scale per token: its own max / 127
  Perplexity on the held-out prompts; the share of tokens kept in full precision is reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from spikesink.extraction.perplexity import perplexity
from spikesink.instrumentation.layout import model_layout
from spikesink.instrumentation.taps import edit_module_inputs, module_inputs, run_decoder

CONDITIONS = ("fp", "per_tensor", "per_tensor_keep", "per_token")
SECTION = "beyond the paper: quantization"


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


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Symmetric uniform quantise-dequantise: clamp(round(x / s), -q, q) * s, q = 2^(bits-1) - 1."""
    q = 2 ** (bits - 1) - 1
    s = scale.clamp_min(1e-12)
    return (torch.clamp(torch.round(x / s), -q, q) * s).to(x.dtype)


def quantizer(
    condition: str, scales: Mapping[str, Mapping[str, np.ndarray]], bits: int = 8, counter: dict | None = None
):
    """fn(module path, x) -> fake-quantised x for one condition (see the module docstring)."""
    q = 2 ** (bits - 1) - 1
    static = {name: {k: float(v.max()) / q for k, v in s.items()} for name, s in scales.items()}
    counter = counter if counter is not None else {}

    def per_tensor(name, x):
        return fake_quantize(x, torch.tensor(static[name]["all"], device=x.device), bits)

    def per_tensor_keep(name, x):
        scale = torch.tensor(static[name]["non_spike"], device=x.device)
        keep = x.abs().amax(dim=-1, keepdim=True) > q * scale  # tokens that would clip: full precision
        counter["kept"] = counter.get("kept", 0) + int(keep.sum())
        counter["tokens"] = counter.get("tokens", 0) + keep.numel()
        return torch.where(keep, x, fake_quantize(x, scale, bits))

    def per_token(name, x):
        return fake_quantize(x, x.detach().abs().amax(dim=-1, keepdim=True) / q, bits)

    return {"per_tensor": per_tensor, "per_tensor_keep": per_tensor_keep, "per_token": per_token}[condition]


def quantization_table(
    model: nn.Module, batches: Sequence[np.ndarray], scales: Mapping, conditions=CONDITIONS, bits: int = 8
) -> pd.DataFrame:
    modules = {name: module for name, _, _, module in model_layout(model).linear_modules()}
    missing = sorted(set(modules) - set(scales))
    if missing:
        raise ValueError(f"no activation scales for {missing[:3]}...: the scales were computed on another model")
    rows = []
    for condition in conditions:
        counter: dict = {}
        if condition == "fp":
            ppl = perplexity(model, batches)
        else:
            with edit_module_inputs(modules, quantizer(condition, scales, bits, counter)):
                ppl = perplexity(model, batches)
        rows.append(
            {
                "condition": condition,
                "bits": bits if condition != "fp" else None,
                "perplexity": ppl,
                "kept_fp_share": counter["kept"] / counter["tokens"] if counter.get("tokens") else 0.0,
            }
        )
    table = pd.DataFrame(rows)
    table["delta_perplexity"] = table["perplexity"] - float(table.loc[table["condition"] == "fp", "perplexity"].iloc[0])
    return table


def quantization_claims(
    model: str,
    table: pd.DataFrame,
    scales: pd.DataFrame,
    step_up: Sequence[int],
    min_recovery: float = 0.5,
    min_cost: float = 0.01,
    max_kept_share: float = 0.05,
) -> list:
    """Rows beyond the paper: what per-tensor A8 costs, how much keeping the spike tokens in full
    precision recovers, and whether the step-up block's down-projection input has the largest scale."""
    from spikesink.reporting.scorecard import Claim, not_applicable

    rows = table.set_index("condition")
    fp, tensor, keep = (float(rows.loc[c, "perplexity"]) for c in ("fp", "per_tensor", "per_tensor_keep"))
    cost = tensor - fp
    recovered = (tensor - keep) / cost if cost > 0 else float("nan")
    claim, paper = (
        "keeping the spike tokens in full precision recovers per-tensor INT8 activations",
        "spikes break low-bit activation quantization (paper's motivation)",
    )
    if cost < min_cost * fp:  # a recovery share of a negligible cost is noise
        claims = [
            not_applicable(
                SECTION,
                claim,
                model,
                paper,
                f"per-tensor INT8 costs less than {100 * min_cost:g}% here ({fp:.4g} -> {tensor:.4g})",
            )
        ]
    else:
        kept = float(rows.loc["per_tensor_keep", "kept_fp_share"])
        # an outlier split keeps a few tokens: when most tokens would clip (a model whose every token
        # carries a massive channel, e.g. Gemma 3) keeping them is no split at all, however much it recovers
        split = "" if kept <= max_kept_share else f"; not an outlier split: {100 * kept:.0f}% of tokens would clip"
        claims = [
            Claim(
                SECTION,
                claim,
                model,
                paper,
                f"perplexity {fp:.4g} (fp) -> {tensor:.4g} (per-tensor A8, +{cost:.4g}) -> {keep:.4g} with "
                f"{100 * kept:.2f}% of tokens in full precision "
                f"(recovers {100 * recovered:.0f}% of the cost); per-token A8 {float(rows.loc['per_token', 'perplexity']):.4g}"
                + split,
                bool(recovered >= min_recovery and kept <= max_kept_share),
                f">= {100 * min_recovery:.0f}% of the per-tensor cost recovered, keeping <= {100 * max_kept_share:g}% of tokens",
            )
        ]
    down = scales[scales["role"].isin(["down", "fc_out", "shared_down"])]
    if not step_up:
        claims.append(
            not_applicable(
                SECTION,
                "the step-up block's down-projection input has the largest activation scale",
                model,
                "the step-up FFN writes the spike",
                "no step-up block was detected",
            )
        )
    else:
        best = scales.loc[scales["max_scale"].idxmax()]
        claims.append(
            Claim(
                SECTION,
                "the step-up block's down-projection input has the largest activation scale",
                model,
                "the step-up FFN writes the spike",
                f"largest scale {best['max_scale']:.4g} at {best['module']} (block {best['block']}); "
                f"down-projection inputs of step-up blocks {list(step_up)}: "
                + ", ".join(f"{r.max_scale:.4g}" for r in down[down["block"].isin(step_up)].itertuples()),
                bool(best["role"] in ("down", "fc_out", "shared_down") and int(best["block"]) in set(step_up)),
                "argmax over every Linear input is a step-up block's down projection",
            )
        )
    return claims
