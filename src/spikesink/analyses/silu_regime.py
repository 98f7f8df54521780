"""SiLU regime of the step-up / step-down FFN blocks (paper Fig 2).

The quadratic-amplifier argument needs SiLU(x) ~ x for the tokens that carry the spike, with
x = W_gate h and h the FFN input (the post_attention_layernorm output, norm weight included).
Per token we measure cos(SiLU(x), x) and ||SiLU(x)|| / ||x|| (both 1 in the identity regime),
next to the FFN block's output peak max_k |FFN(h)_k| and whether the token's state is massive at
that block (before or after it: step-up blocks create the spike, step-down blocks consume it).

Everything is computed inside forward hooks in float32 and reduced to a few numbers per token
right away; no (tokens x d_ffn) tensor outlives its batch.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from spikesink.architecture import block_kind, block_layer, decoder_layers
from spikesink.metrics import DEFAULT_FLOOR, DEFAULT_MEDIAN_RATIO, is_massive
from spikesink.analyses.vocab_probe import StopForward, run_until


def silu_alignment(x: torch.Tensor, act=F.silu) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of x (..., d_ffn): cos(act(x), x) and ||act(x)|| / ||x||, in float32."""
    x = x.float()
    y = act(x)
    x_norm = x.norm(dim=-1).clamp_min(1e-30)
    y_norm = y.norm(dim=-1)
    return (y * x).sum(-1) / (y_norm.clamp_min(1e-30) * x_norm), y_norm / x_norm


def _check_blocks(blocks: Sequence[int]) -> list[int]:
    blocks = sorted(set(int(b) for b in blocks))
    bad = [b for b in blocks if block_kind(b) != "ffn"]
    if not blocks or bad:
        raise ValueError(f"SiLU regime needs FFN (even) blocks, got {blocks}")
    return blocks


def silu_regime(model, batches: Iterable[Mapping[str, torch.Tensor]], blocks: Sequence[int],
                floor: float = DEFAULT_FLOOR, median_ratio: float = DEFAULT_MEDIAN_RATIO,
                reference_median: Mapping[int, float] | None = None, progress: bool = True) -> pd.DataFrame:
    """One row per (non-padding token, FFN block).

    batches: dicts with input_ids (B, T) and optionally attention_mask (B, T), right padded.
    Columns: sample (running index over batches), position, token_id, block, cos, norm_ratio,
    gate_norm (||x||), out_peak (max |FFN output|), resid_in_peak / resid_out_peak (max |h| of the
    residual before / after the block), is_spike (massive before or after the block: against
    reference_median[block] when given, else against the median of the same sequence's state,
    Sun et al.'s whole-hidden-state median).
    """
    from tqdm.auto import tqdm

    blocks = _check_blocks(blocks)
    layers = decoder_layers(model)
    device = next(model.parameters()).device
    rows: list[pd.DataFrame] = []
    sample_offset = 0
    was_training = model.training
    model.eval()
    try:
        for batch in tqdm(batches, desc="SiLU regime", disable=not progress, unit="batch"):
            input_ids = batch["input_ids"].to(device)
            mask = batch.get("attention_mask")
            mask = torch.ones_like(input_ids, dtype=torch.bool) if mask is None else mask.to(device).bool()
            captured: dict[int, dict[str, torch.Tensor]] = {}
            handles = []
            for block in blocks:
                lm = layers[block_layer(block)]
                slot = captured.setdefault(block, {})

                def norm_hook(module, args, output, slot=slot, mlp=lm.mlp):
                    h = output.detach()
                    gate = F.linear(h.float(), mlp.gate_proj.weight.float(),
                                    None if mlp.gate_proj.bias is None else mlp.gate_proj.bias.float())
                    act = getattr(mlp, "act_fn", F.silu)
                    slot["cos"], slot["norm_ratio"] = silu_alignment(gate, act)
                    slot["gate_norm"] = gate.norm(dim=-1)
                    slot["resid_in"] = args[0].detach().float()

                def mlp_hook(module, args, output, slot=slot):
                    slot["out_peak"] = output.detach().float().abs().amax(dim=-1)

                def layer_hook(module, args, output, slot=slot, last=(block == blocks[-1])):
                    out = output[0] if isinstance(output, (tuple, list)) else output
                    slot["resid_out"] = out.detach().float()
                    if last:
                        raise StopForward

                handles += [lm.post_attention_norm.register_forward_hook(norm_hook),
                            lm.mlp.register_forward_hook(mlp_hook),
                            lm.layer.register_forward_hook(layer_hook)]
            try:
                run_until(model, input_ids=input_ids, attention_mask=mask.long())
            finally:
                for handle in handles:
                    handle.remove()
            rows += [_block_rows(block, captured[block], input_ids, mask, sample_offset, floor, median_ratio,
                                 reference_median) for block in blocks]
            sample_offset += input_ids.shape[0]
    finally:
        model.train(was_training)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _spike_mask(state: torch.Tensor, mask: torch.Tensor, floor: float, median_ratio: float,
                reference: float | None) -> torch.Tensor:
    """(B, T) massive flags; the median is per sequence over its valid tokens and channels."""
    magnitude = state.abs()
    peak = magnitude.amax(dim=-1)
    if reference is not None:
        median = torch.full_like(peak, float(reference))
    else:
        medians = [magnitude[b][mask[b]].median() for b in range(state.shape[0])]
        median = torch.stack(medians)[:, None].expand_as(peak)
    return is_massive(peak, median, floor, median_ratio)


def _block_rows(block, slot, input_ids, mask, sample_offset, floor, median_ratio, reference_median) -> pd.DataFrame:
    ref = None if reference_median is None else reference_median[block]
    spike = (_spike_mask(slot["resid_in"], mask, floor, median_ratio, ref)
             | _spike_mask(slot["resid_out"], mask, floor, median_ratio, ref))
    batch, length = input_ids.shape
    sample = torch.arange(batch, device=input_ids.device)[:, None].expand(batch, length) + sample_offset
    position = torch.arange(length, device=input_ids.device)[None, :].expand(batch, length)
    keep = mask
    cols = {
        "sample": sample[keep],
        "position": position[keep],
        "token_id": input_ids[keep],
        "cos": slot["cos"][keep],
        "norm_ratio": slot["norm_ratio"][keep],
        "gate_norm": slot["gate_norm"][keep],
        "out_peak": slot["out_peak"][keep],
        "resid_in_peak": slot["resid_in"].abs().amax(-1)[keep],
        "resid_out_peak": slot["resid_out"].abs().amax(-1)[keep],
        "is_spike": spike[keep],
    }
    frame = pd.DataFrame({k: v.cpu().numpy() for k, v in cols.items()})
    frame.insert(3, "block", np.int64(block))
    return frame


def summarize_silu(frame: pd.DataFrame) -> pd.DataFrame:
    """Per block and spike flag: token count and the median / 5th percentile of cos and ratio."""
    grouped = frame.groupby(["block", "is_spike"])
    return grouped.agg(
        n=("cos", "size"),
        cos_median=("cos", "median"),
        cos_p05=("cos", lambda v: float(np.quantile(v, 0.05))),
        norm_ratio_median=("norm_ratio", "median"),
        out_peak_median=("out_peak", "median"),
    ).reset_index()


def batches_from_sequences(sequences: Sequence[Sequence[int]], batch_size: int = 8, pad_id: int = 0):
    """Right-padded {input_ids, attention_mask} batches from token-id lists (prompts may differ in length)."""
    for start in range(0, len(sequences), batch_size):
        chunk = [list(s) for s in sequences[start:start + batch_size]]
        length = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), length), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), length), dtype=torch.long)
        for row, seq in enumerate(chunk):
            ids[row, : len(seq)] = torch.as_tensor(seq)
            mask[row, : len(seq)] = 1
        yield {"input_ids": ids, "attention_mask": mask}


# ------------------------------------------------------------------------------------------
# Pipeline entry point and claims
# ------------------------------------------------------------------------------------------

SECTION = "3.3 quadratic amplifier"


def run_silu_regime(model, sequences: Sequence[Sequence[int]], lifecycle: Mapping, batch_size: int = 16,
                    pad_id: int = 0, floor: float = DEFAULT_FLOOR, median_ratio: float = DEFAULT_MEDIAN_RATIO,
                    progress: bool = True) -> pd.DataFrame:
    """Fig 2 on the detected step-up and step-down blocks (sentences, e.g. 1024 as in the paper)."""
    blocks = sorted(set(lifecycle.get("step_up", [])) | set(lifecycle.get("step_down", [])))
    if not blocks:
        return pd.DataFrame()
    return silu_regime(model, batches_from_sequences(sequences, batch_size, pad_id), blocks, floor=floor,
                       median_ratio=median_ratio, progress=progress)


def silu_claims(model: str, frame: pd.DataFrame, min_cos: float = 0.9, min_norm_ratio: float = 0.8) -> list:
    """Near-identity SiLU for spike tokens in every step block, and closer to identity than others."""
    from spikesink.scorecard import Claim

    if frame.empty:
        return []
    summary = summarize_silu(frame)
    spikes = summary[summary["is_spike"]].set_index("block")
    others = summary[~summary["is_spike"]].set_index("block")
    blocks = sorted(frame["block"].unique())
    if spikes.empty:
        return [Claim(SECTION, "SiLU acts as the identity on spike tokens in step-up/step-down blocks", model,
                      "cos(SiLU(x), x) ~ 1 for spike tokens (Fig 2)", "no spike token in the sample", False,
                      "needs spike tokens")]
    text = "; ".join(f"block {b}: cos {spikes.loc[b, 'cos_median']:.3f}, norm ratio {spikes.loc[b, 'norm_ratio_median']:.3f}"
                     f" (n={int(spikes.loc[b, 'n'])}; others {others.loc[b, 'cos_median']:.3f} / "
                     f"{others.loc[b, 'norm_ratio_median']:.3f})" if b in spikes.index and b in others.index else f"block {b}: -"
                     for b in blocks)
    near = all(b in spikes.index and spikes.loc[b, "cos_median"] >= min_cos and spikes.loc[b, "norm_ratio_median"] >= min_norm_ratio
               for b in blocks)
    closer = all(b in spikes.index and b in others.index
                 and spikes.loc[b, "norm_ratio_median"] > others.loc[b, "norm_ratio_median"]
                 and spikes.loc[b, "cos_median"] > others.loc[b, "cos_median"] for b in blocks)
    return [
        Claim(SECTION, "SiLU acts as the identity on spike tokens in step-up/step-down blocks", model,
              "cos(SiLU(x), x) ~ 1 and ||SiLU(x)|| ~ ||x|| (Fig 2)", text, near,
              f"median cos >= {min_cos} and median norm ratio >= {min_norm_ratio} in every step block"),
        Claim(SECTION, "spike tokens sit closer to the SiLU identity regime than ordinary tokens", model,
              "spike tokens in the linear regime, others not (Fig 2)", text, closer,
              "median cos and norm ratio of spike tokens above those of other tokens in every step block"),
    ]
