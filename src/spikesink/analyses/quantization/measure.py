"""What the spike costs an INT8 activation quantiser (weights untouched).

Fake-quantised activations, symmetric INT8 at every Linear input, weights in full precision:
    fp                   the model as is
    per_tensor           one static scale per layer input: the calibration max / 127
    per_tensor_keep      the same, with the scale from the non-spike tokens, and every token whose
                         max |x| would clip kept in full precision (LLM.int8-style outlier split,
                         by token instead of by feature)
    per_token            a dynamic scale per token: its own max / 127
Perplexity on the held-out prompts; the share of tokens kept in full precision is reported. The
scales come from the act_scales analysis (spikesink.analyses.act_scales). The same forwards give
each held-out prompt's summed next-token loss and kept-token counts (`per_prompt`), what the
claims' bootstrap over prompts resamples.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from spikesink.analyses.quantization.result import Quantization
from spikesink.analyses.unit import Job
from spikesink.extraction.perplexity import batched, token_nll
from spikesink.instrumentation.layout import model_layout
from spikesink.instrumentation.taps import edit_module_inputs

CONDITIONS = ("fp", "per_tensor", "per_tensor_keep", "per_token")


def measure(job: Job) -> Quantization:
    act = job["act_scales"]
    scales = {name: {"all": act.scales[name], "non_spike": act.non_spike[name]} for name in act.scales}
    heldout = batched(job["prompts.heldout"].matrix(), job.shared.heldout_batch_size)
    table, per_prompt = quantization_tables(job.model.model, heldout, scales, bits=job.settings.bits)
    return Quantization(table=table, per_prompt=per_prompt)


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
        rows = counter.get("rows")  # per prompt of the current batch: (kept, tokens) counts
        if rows is not None and keep.numel() % len(rows[0]) == 0:  # (B, T, 1), or (B * T, 1) flattened
            per_row = keep.reshape(len(rows[0]), -1)
            rows[0] += per_row.sum(dim=1).cpu()
            rows[1] += per_row.shape[1]
        return torch.where(keep, x, fake_quantize(x, scale, bits))

    def per_token(name, x):
        return fake_quantize(x, x.detach().abs().amax(dim=-1, keepdim=True) / q, bits)

    return {"per_tensor": per_tensor, "per_tensor_keep": per_tensor_keep, "per_token": per_token}[condition]


def quantization_table(
    model: nn.Module, batches: Sequence[np.ndarray], scales: Mapping, conditions=CONDITIONS, bits: int = 8
) -> pd.DataFrame:
    return quantization_tables(model, batches, scales, conditions, bits)[0]


def quantization_tables(
    model: nn.Module, batches: Sequence[np.ndarray], scales: Mapping, conditions=CONDITIONS, bits: int = 8
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table, per_prompt): held-out perplexity per condition, and from the same forwards one row
    per (condition, prompt): its summed next-token loss `nll_sum` over `n_tokens`, and the tokens
    of its Linear inputs kept in full precision (`kept_tokens` of `seen_tokens`; per_tensor_keep)."""
    modules = {name: module for name, _, _, module in model_layout(model).linear_modules()}
    missing = sorted(set(modules) - set(scales))
    if missing:
        raise ValueError(f"no activation scales for {missing[:3]}...: the scales were computed on another model")
    rows, per_prompt = [], []
    for condition in conditions:
        counter: dict = {}
        context = (
            contextlib.nullcontext()
            if condition == "fp"
            else edit_module_inputs(modules, quantizer(condition, scales, bits, counter))
        )
        total, count, sums, counts, kept, seen = 0.0, 0, [], [], [], []
        with context:
            for batch in batches:
                counter["rows"] = [torch.zeros(len(batch), dtype=torch.long), 0]
                nll = token_nll(model, batch).double()
                total, count = total + float(nll.sum()), count + nll.numel()
                sums.append(nll.sum(dim=1).cpu().numpy())
                counts.append(np.full(nll.shape[0], nll.shape[1]))
                kept.append(counter["rows"][0].numpy())
                seen.append(np.full(len(batch), counter["rows"][1]))
        if not count:
            raise ValueError("no tokens to measure perplexity on")
        rows.append(
            {
                "condition": condition,
                "bits": bits if condition != "fp" else None,
                "perplexity": math.exp(total / count),
                "kept_fp_share": counter["kept"] / counter["tokens"] if counter.get("tokens") else 0.0,
            }
        )
        sums = np.concatenate(sums)
        per_prompt.append(
            pd.DataFrame(
                {
                    "condition": condition,
                    "prompt": np.arange(len(sums)),
                    "n_tokens": np.concatenate(counts),
                    "nll_sum": sums,
                    "kept_tokens": np.concatenate(kept),
                    "seen_tokens": np.concatenate(seen),
                }
            )
        )
    table = pd.DataFrame(rows)
    table["delta_perplexity"] = table["perplexity"] - float(table.loc[table["condition"] == "fp", "perplexity"].iloc[0])
    return table, pd.concat(per_prompt, ignore_index=True)
