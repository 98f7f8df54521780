"""What the spike costs an INT8 activation quantiser (weights untouched).

Fake-quantised activations, symmetric INT8 at every Linear input, weights in full precision:
    fp                   the model as is
    per_tensor           one static scale per layer input: the calibration max / 127
    per_tensor_keep      the same, with the scale from the non-spike tokens, and every token whose
                         max |x| would clip kept in full precision (LLM.int8-style outlier split,
                         by token instead of by feature)
    per_token            a dynamic scale per token: its own max / 127
Perplexity on the held-out prompts; the share of tokens kept in full precision is reported. The
scales come from the act_scales analysis (spikesink.analyses.act_scales).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from spikesink.analyses.quantization.result import Quantization
from spikesink.analyses.unit import Job
from spikesink.extraction.perplexity import batched, perplexity
from spikesink.instrumentation.layout import model_layout
from spikesink.instrumentation.taps import edit_module_inputs

CONDITIONS = ("fp", "per_tensor", "per_tensor_keep", "per_token")


def measure(job: Job) -> Quantization:
    act = job["act_scales"]
    scales = {name: {"all": act.scales[name], "non_spike": act.non_spike[name]} for name in act.scales}
    heldout = batched(job["prompts.heldout"].matrix(), job.shared.heldout_batch_size)
    return Quantization(table=quantization_table(job.model.model, heldout, scales, bits=job.settings.bits))


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
