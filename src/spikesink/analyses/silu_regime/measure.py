"""SiLU regime of the step-up / step-down FFN blocks (paper Fig 2).

The quadratic-amplifier argument needs SiLU(x) ~ x for the tokens that carry the spike, with
x = W_gate h and h the FFN's normed input (the FFN input norm's output, norm weight included).
The activation is the family's own (SiLU for SwiGLU; GELU-tanh for Gemma's GeGLU, labelled as
such); a non-gated MLP (GPT-2, NeoX) has no gate and the analysis does not apply. In an MoE
block each token is read through the gate of the expert its router ranks first.
Per token we measure cos(SiLU(x), x) and ||SiLU(x)|| / ||x|| (both 1 in the identity regime),
next to the FFN block's output peak max_k |FFN(h)_k| and whether the token's state is massive at
that block (before or after it: step-up blocks create the spike, step-down blocks consume it).

Everything is computed inside forward hooks in float32 and reduced to a few numbers per token
right away; no (tokens x d_ffn) tensor outlives its batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from spikesink.analyses.lifecycle.result import Lifecycle
from spikesink.analyses.silu_regime.result import COLUMNS, SiluRegime
from spikesink.analyses.unit import Job
from spikesink.instrumentation.blocks import block_kind
from spikesink.instrumentation.layout import NotApplicable, model_layout
from spikesink.instrumentation.spikes import SpikeRule, spike_tokens
from spikesink.instrumentation.taps import Taps, module_inputs, run_decoder


def measure(job: Job) -> SiluRegime:
    """Fig 2 on the detected step-up and step-down blocks, over the sentences prompt set."""
    frame, reason = run_silu_regime(
        job.model.model,
        job["prompts.sentences"].lists(),
        job["lifecycle"],
        job.rule,
        batch_size=job.settings.batch_size,
        pad_id=job.model.pad_id,
    )
    return SiluRegime(frame=frame, activation=job.model.layout.activation_name, not_applicable=reason)


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


def _top_k_index(args, kwargs) -> torch.Tensor:
    """The experts module's routing argument (hidden_states, top_k_index, top_k_weights)."""
    return args[1] if len(args) > 1 else kwargs["top_k_index"]


def _capture(model, requests, experts, input_ids, mask) -> tuple[dict, dict]:
    """One forward: the requested block states, and each MoE block's routing (top-k expert ids)."""
    states: dict[tuple[int, str], torch.Tensor] = {}
    routing: dict[int, torch.Tensor] = {}
    with (
        Taps(model, requests, lambda b, st, t: states.__setitem__((b, st), t), stop_after_last=True),
        module_inputs(experts, lambda name, args, kwargs: routing.__setitem__(int(name), _top_k_index(args, kwargs))),
    ):
        run_decoder(model, input_ids=input_ids, attention_mask=mask.long())
    return states, routing


def _gate_preactivation(
    layout, block: int, normed: torch.Tensor, routing: torch.Tensor | None, weights: dict
) -> torch.Tensor:
    """x = W_gate h per token (B, T, d_ffn) float32; MoE: each token's top-1 expert's gate."""
    h = normed.float()
    if routing is None:
        return F.linear(h, weights["dense"].gate)
    flat = h.reshape(-1, h.shape[-1])
    top1 = routing.reshape(flat.shape[0], -1)[:, 0]
    out = torch.zeros(flat.shape[0], weights[next(iter(weights))].gate.shape[0], device=h.device)
    for expert in top1.unique().tolist():
        rows = top1 == expert
        out[rows] = F.linear(flat[rows], weights[str(expert)].gate)
    return out.reshape(*h.shape[:-1], -1)


def silu_regime(
    model,
    batches: Iterable[Mapping[str, torch.Tensor]],
    blocks: Sequence[int],
    rule: SpikeRule,
    reference_median: Mapping[int, float] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per (non-padding token, FFN block).

    batches: dicts with input_ids (B, T) and optionally attention_mask (B, T), right padded.
    Columns: sample (running index over batches), position, token_id, block, cos, norm_ratio,
    gate_norm (||x||), out_peak (max |FFN block output|), resid_in_peak / resid_out_peak (max |h|
    of the block's input / post-residual), is_spike (a spike token before or after the block:
    against reference_median[block] when given, else the median of the same sequence's state).
    Raises NotApplicable for a family without a gated FFN.
    """
    from tqdm.auto import tqdm

    blocks = _check_blocks(blocks)
    layout = model_layout(model)
    if not layout.gated:
        raise NotApplicable(f"{layout.not_gated_reason}: nothing to put through SiLU as the paper's gate")
    weights = {
        block: {e: layout.gated_ffn_weights(block, e) for e in layout.experts(block) if e != "shared"}
        for block in blocks
    }
    acts = {block: layout.ffn_activation(block) for block in blocks}
    experts = {
        str(b): getattr(layout.layer_of(b).ffn, layout.adapter.ffn_parts.experts)
        for b in blocks
        if layout.layer_of(b).moe
    }
    device = next(model.parameters()).device
    requests = [(b, state) for b in blocks for state in ("input", "normed_input", "output", "post_residual")]
    rows: list[pd.DataFrame] = []
    sample_offset = 0
    was_training = model.training
    model.eval()
    try:
        for batch in tqdm(batches, desc="SiLU regime", disable=not progress, unit="batch"):
            input_ids = batch["input_ids"].to(device)
            mask = batch.get("attention_mask")
            mask = torch.ones_like(input_ids, dtype=torch.bool) if mask is None else mask.to(device).bool()
            states, routing = _capture(model, requests, experts, input_ids, mask)
            for block in blocks:
                gate = _gate_preactivation(
                    layout, block, states[(block, "normed_input")], routing.get(block), weights[block]
                )
                slot = {
                    "resid_in": states[(block, "input")].float(),
                    "resid_out": states[(block, "post_residual")].float(),
                    "out_peak": states[(block, "output")].float().abs().amax(dim=-1),
                    "gate_norm": gate.norm(dim=-1),
                }
                slot["cos"], slot["norm_ratio"] = silu_alignment(gate, acts[block])
                rows.append(_block_rows(block, slot, input_ids, mask, sample_offset, rule, reference_median))
            sample_offset += input_ids.shape[0]
    finally:
        model.train(was_training)
    frame = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    frame.attrs["activation"] = layout.activation_name
    return frame


def _block_rows(block, slot, input_ids, mask, sample_offset, rule: SpikeRule, reference_median) -> pd.DataFrame:
    ref = None if reference_median is None else float(reference_median[block])
    spike = spike_tokens(slot["resid_in"], rule, mask, ref).mask | spike_tokens(slot["resid_out"], rule, mask, ref).mask
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


def batches_from_sequences(sequences: Sequence[Sequence[int]], batch_size: int = 8, pad_id: int = 0):
    """Right-padded {input_ids, attention_mask} batches from token-id lists (prompts may differ in length)."""
    for start in range(0, len(sequences), batch_size):
        chunk = [list(s) for s in sequences[start : start + batch_size]]
        length = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), length), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), length), dtype=torch.long)
        for row, seq in enumerate(chunk):
            ids[row, : len(seq)] = torch.as_tensor(seq)
            mask[row, : len(seq)] = 1
        yield {"input_ids": ids, "attention_mask": mask}


# ------------------------------------------------------------------------------------------
# The whole analysis
# ------------------------------------------------------------------------------------------


def run_silu_regime(
    model,
    sequences: Sequence[Sequence[int]],
    lifecycle: Lifecycle,
    rule: SpikeRule,
    batch_size: int = 16,
    pad_id: int = 0,
    progress: bool = True,
) -> tuple[pd.DataFrame, str | None]:
    """Fig 2 on the detected step-up and step-down blocks (sentences, e.g. 1024 as in the paper).

    Sentences are batched by length (rows keep their sentence's index in `sequences` and come out
    ordered by block, sentence and position, whatever the batching). Returns (frame, reason): reason says why the analysis does not apply (no gated FFN, no step
    block detected), with an empty frame; None when it ran.
    """
    layout = model_layout(model)
    blocks = sorted(set(lifecycle.step_up) | set(lifecycle.step_down))
    reason = (
        f"{layout.not_gated_reason} to put through an activation"
        if not layout.gated
        else "no step-up or step-down block was detected"
        if not blocks
        else None
    )
    if reason:
        return pd.DataFrame(columns=COLUMNS), reason
    # batches of similar lengths: sentences vary 5-100 tokens, and padding a random batch to its
    # longest sentence more than doubled the tokens computed (SmolLM2, Austen sentences)
    order = np.argsort([len(s) for s in sequences], kind="stable")
    frame = silu_regime(
        model,
        batches_from_sequences([sequences[i] for i in order], batch_size, pad_id),
        blocks,
        rule,
        progress=progress,
    )
    frame["sample"] = order[frame["sample"].to_numpy()]  # back to the prompt set's sentence index
    frame = frame.sort_values(["block", "sample", "position"], kind="stable").reset_index(drop=True)
    return frame, None
