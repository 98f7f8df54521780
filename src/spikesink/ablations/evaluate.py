"""Held-out evaluation of an ablation model: perplexity, sink ratio and the spike.

- Perplexity: exp of the mean next-token loss on fixed held-out windows, over the loss positions
  the model was trained on (`ppl`) and over all positions (`ppl_all_positions`).
- Sinks: every attention module reports, per head and window, the mean attention its queries give
  to key 0 (model.key0_attention_mass, no T x T map). The sink ratio is
  spikesink.metrics.sink_ratio over the (samples, attention modules, heads) array, eps 0.3.
  For the sink remedies the key-0 statistic is the one model.attention_explicit defines: the
  weight on key 0 among the returned weights when the softmax has a slot besides the tokens
  (softmax1, a sink logit, a key/value bias), the share of each query's total weight for sigmoid
  and ReLU attention. `sink_slot_share` is the mass the slots took, 1 - the returned weights' sum
  (mean over queries, samples and heads; per head in `sink_slot_share_per_head`); None for models
  without a slot. `attention_weight_sum` is the mean summed weight a query gives the tokens (1 for
  softmax; for sigmoid / ReLU how much a query attends at all).
- Spike: forward hooks on the 2L blocks record, per block, the largest |activation| of the
  post-residual state and of the block output (with its position and channel), the median |h| of
  the post-residual state, and the largest |h| at position 0 versus elsewhere. The spike is the
  largest post-residual magnitude over all blocks; spike_to_median divides it by the median of the
  same block. The first-token spike is the largest ratio, over blocks, of the top |h| at
  position 0 to that block's median (the ">= 100x the median at the first token" test).
  Per-block series use the paper's numbering (block 2l-1 attention, 2l FFN) so the
  lead's step-up / step-down detector applies unchanged.

All statistics are accumulated in float32, whatever the model's dtype.
"""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from spikesink.metrics import sink_ratio

from .model import Decoder, lm_loss

MEDIAN_MAX_ELEMENTS = 1 << 24  # median over a strided subsample beyond this many elements


@dataclass
class BlockStats:
    """Running per-block maxima and medians over evaluation batches (float64 on the host)."""

    n_blocks: int
    post_top1: np.ndarray = field(init=False)
    post_top1_pos: np.ndarray = field(init=False)
    post_top1_channel: np.ndarray = field(init=False)
    out_top1: np.ndarray = field(init=False)
    out_top1_pos: np.ndarray = field(init=False)
    out_top1_channel: np.ndarray = field(init=False)
    post_median_sum: np.ndarray = field(init=False)
    first_token_top1: np.ndarray = field(init=False)
    other_tokens_top1: np.ndarray = field(init=False)
    batches: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = self.n_blocks
        for name in ("post_top1", "out_top1", "post_median_sum", "first_token_top1", "other_tokens_top1"):
            setattr(self, name, np.zeros(n))
        for name in ("post_top1_pos", "post_top1_channel", "out_top1_pos", "out_top1_channel"):
            setattr(self, name, np.full(n, -1, dtype=np.int64))
        self.batches = np.zeros(n, dtype=np.int64)

    def update_post(self, block: int, h: torch.Tensor) -> None:
        mag = h.detach().float().abs()  # (B, T, C)
        value, pos, channel = _argmax_3d(mag)
        if value > self.post_top1[block]:
            self.post_top1[block], self.post_top1_pos[block], self.post_top1_channel[block] = value, pos, channel
        self.post_median_sum[block] += robust_median(mag)
        self.first_token_top1[block] = max(self.first_token_top1[block], float(mag[:, 0].max()))
        if mag.shape[1] > 1:
            self.other_tokens_top1[block] = max(self.other_tokens_top1[block], float(mag[:, 1:].max()))
        self.batches[block] += 1

    def update_out(self, block: int, h: torch.Tensor) -> None:
        value, pos, channel = _argmax_3d(h.detach().float().abs())
        if value > self.out_top1[block]:
            self.out_top1[block], self.out_top1_pos[block], self.out_top1_channel[block] = value, pos, channel

    def post_median(self) -> np.ndarray:
        return self.post_median_sum / np.maximum(self.batches, 1)


def _argmax_3d(mag: torch.Tensor) -> tuple[float, int, int]:
    """Largest entry of a (B, T, C) tensor and its (position, channel)."""
    flat = int(mag.argmax())
    _, seq_len, width = mag.shape
    return float(mag.reshape(-1)[flat]), (flat // width) % seq_len, flat % width


def robust_median(mag: torch.Tensor) -> float:
    """Median of all entries; on a strided subsample when the tensor is huge (GPU preset)."""
    flat = mag.reshape(-1)
    if flat.numel() > MEDIAN_MAX_ELEMENTS:
        flat = flat[:: math.ceil(flat.numel() / MEDIAN_MAX_ELEMENTS)]
    return float(flat.median())


@contextmanager
def recording(model: Decoder, stats: BlockStats):
    """Hooks on the blocks (post-residual) and their branches (block output), and key-0 recording."""
    handles = []
    for i, block in enumerate(model.blocks()):
        handles.append(block.register_forward_hook(lambda m, a, out, i=i: stats.update_post(i, out)))
        handles.append(block.branch.register_forward_hook(lambda m, a, out, i=i: stats.update_out(i, out)))
    attns = model.attention_modules()
    for attn in attns:
        attn.record_key0 = True
    try:
        yield attns
    finally:
        for handle in handles:
            handle.remove()
        for attn in attns:
            attn.record_key0 = False
            attn.key0_mass = attn.weight_sum = None


@torch.no_grad()
def evaluate(
    model: Decoder,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    loss_min_pos: int = 0,
    loss_max_pos: int | None = None,
    sink_eps: float | None = None,
    autocast_dtype=None,
) -> dict:
    """All held-out metrics of `model` on fixed `batches` of (inputs, targets); returns a JSON-able dict.
    sink_eps None: the config's sinks.eps default."""
    if sink_eps is None:
        from spikesink.config import default

        sink_eps = float(default("sinks", "eps"))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    stats = BlockStats(2 * model.cfg.n_layers)
    loss_sum = loss_all_sum = 0.0
    n_batches = 0
    key0, weight_sum = [], []  # per batch: (B, n_attention_modules, nh)
    amp = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    with recording(model, stats) as attns:
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            with amp:
                logits = model(x)
            loss_sum += float(lm_loss(logits, y, loss_min_pos, loss_max_pos))
            loss_all_sum += float(lm_loss(logits, y))
            key0.append(torch.stack([a.key0_mass for a in attns], dim=1).float().cpu())
            weight_sum.append(torch.stack([a.weight_sum for a in attns], dim=1).float().cpu())
            n_batches += 1
    model.train(was_training)
    key0_mass = torch.cat(key0).numpy()  # (samples, attention modules, heads)
    sums = torch.cat(weight_sum).numpy()
    metrics = summarize(stats, key0_mass, loss_sum / n_batches, loss_all_sum / n_batches, sink_eps)
    return {**metrics, **weight_summary(sums, has_slot=any(a.has_sink_slot for a in attns))}


def weight_summary(weight_sum: np.ndarray, has_slot: bool) -> dict:
    """The attention weight sums (samples, attention modules, heads) and, with a slot, the slots' share."""
    slot = 1.0 - weight_sum
    return {
        "attention_weight_sum": float(weight_sum.mean()),
        "sink_slot_share": float(slot.mean()) if has_slot else None,
        "sink_slot_share_per_head": slot.mean(axis=0).tolist() if has_slot else None,
    }


def summarize(stats: BlockStats, key0_mass: np.ndarray, loss: float, loss_all: float, sink_eps: float) -> dict:
    """The metrics dict: scalar summaries first, then per-block and per-head series."""
    median = stats.post_median()
    spike_block = int(np.argmax(stats.post_top1))
    spike = float(stats.post_top1[spike_block])
    # the first-token spike: the block where position 0 stands out most against that block's median
    first_ratio = stats.first_token_top1 / np.maximum(median, 1e-30)
    first_block = int(np.argmax(first_ratio))
    return {
        "loss": loss,
        "ppl": float(math.exp(min(loss, 50.0))),
        "ppl_all_positions": float(math.exp(min(loss_all, 50.0))),
        "sink_eps": sink_eps,
        "sink_ratio": sink_ratio(key0_mass, sink_eps),
        "key0_mass_mean": float(key0_mass.mean()),
        "spike": spike,
        "spike_median": float(median[spike_block]),
        "spike_to_median": float(spike / max(median[spike_block], 1e-30)),
        "spike_block": spike_block + 1,  # paper numbering
        "spike_position": int(stats.post_top1_pos[spike_block]),
        "spike_channel": int(stats.post_top1_channel[spike_block]),
        "first_token_spike": float(stats.first_token_top1[first_block]),
        "first_token_spike_to_median": float(first_ratio[first_block]),
        "first_token_spike_block": first_block + 1,
        "n_samples": int(key0_mass.shape[0]),
        "blocks": {
            "block": list(range(1, stats.n_blocks + 1)),
            "kind": ["attention" if b % 2 == 0 else "ffn" for b in range(stats.n_blocks)],
            "post_residual_top1": stats.post_top1.tolist(),
            "post_residual_top1_position": stats.post_top1_pos.tolist(),
            "post_residual_top1_channel": stats.post_top1_channel.tolist(),
            "post_residual_median": median.tolist(),
            "block_output_top1": stats.out_top1.tolist(),
            "block_output_top1_position": stats.out_top1_pos.tolist(),
            "block_output_top1_channel": stats.out_top1_channel.tolist(),
            "first_token_top1": stats.first_token_top1.tolist(),
            "other_tokens_top1": stats.other_tokens_top1.tolist(),
        },
        # mean over samples: (attention modules, heads); module i sits in block 2i+1 (2 per layer if attention-only)
        "key0_mass_per_head": key0_mass.mean(axis=0).tolist(),
        "sink_ratio_per_module": [sink_ratio(key0_mass[:, i], sink_eps) for i in range(key0_mass.shape[1])],
    }
