"""Sinks from the extraction's sink statistics: no forward of its own (the extraction's attention
observer measured every head's attention on key 0 and on the spike tokens).

"Sinks form on the spike token" is read per prompt, layer and head: a head *sinks* when its mean
attention on key 0 exceeds `sinks.eps`; the attention it gives to spike tokens is the extraction's
spike mass (key 0 and every token flagged as a spike token so far in the forward), except that key
0 counts only while it *is* a spike token: its state entering the layer (the post-residual of the
block before) is massive against its prompt's median (the block statistics of the same forward).
A sink on a first token that carries no spike is then no sink on a spike token.
"""

from __future__ import annotations

import numpy as np

from spikesink import metrics
from spikesink.analyses.sinks.result import Sinks
from spikesink.analyses.unit import Job
from spikesink.metrics import is_massive

PER_HEAD = (
    "key0_mass_layer_head",
    "sink_ratio_layer_head",
    "spike_mass_layer_head",
    "key0_mass_layer",
    "sink_ratio_layer",
)
LEARNED_SINK = ("learned_sink_share_layer_head", "learned_sink_share_layer")
OUTPUT_GATE = (
    "output_gate_pos0_layer_head",
    "output_gate_rest_layer_head",
    "output_gate_pos0_layer",
    "output_gate_rest_layer",
)


def measure(job: Job) -> Sinks:
    stats = job["sinks"]
    key0_spikes = key0_spike_layers(job["block_stats"], job.rule)
    per_prompt = sink_attention_per_prompt(stats.key0_mass, stats.spike_mass, key0_spikes, job.shared.sink_eps)
    n_sinking = per_prompt["n_sinking"].sum()
    share = float(per_prompt["on_spikes"].sum() / n_sinking) if n_sinking else float("nan")
    per_head = {name: np.asarray(getattr(stats, name)) for name in PER_HEAD}
    learned = float("nan")
    if stats.has_learned_sinks:  # a sink by design (GPT-OSS), reported beside the key-0 sink
        per_head |= {name: np.asarray(getattr(stats, name)) for name in LEARNED_SINK}
        learned = float(np.nanmean(stats.learned_sink_share))
    gate0 = gate_rest = float("nan")
    if stats.has_output_gate:  # sigmoid(gate) on the attention output (Qwen3-Next): at token 0 vs the others
        per_head |= {name: np.asarray(getattr(stats, name)) for name in OUTPUT_GATE}
        gate0, gate_rest = float(np.nanmean(stats.output_gate_pos0)), float(np.nanmean(stats.output_gate_rest))
    no_softmax = [int(i) for i in np.flatnonzero(~np.isfinite(np.asarray(stats.key0_mass_layer, dtype=float)))]
    return Sinks(
        per_head=per_head,
        per_prompt=per_prompt,
        sink_ratio=float(stats.sink_ratio),
        key0_mass_mean=float(stats.key0_mass_mean),
        share_on_spikes=share,
        eps=job.shared.sink_eps,
        learned_sink_share_mean=learned,
        output_gate_pos0_mean=gate0,
        output_gate_rest_mean=gate_rest,
        no_softmax_layers=no_softmax,
        no_softmax_reason=_no_softmax_reason(job["block_stats"]) if no_softmax else None,
    )


def _no_softmax_reason(block_stats) -> str:
    """Why the NaN rows of the sink statistics have no attention map (the extraction's architecture)."""
    architecture = (getattr(block_stats, "meta", None) or {}).get("architecture") or {}
    return architecture.get("no_softmax_reason") or "no softmax attention in these layers"


def key0_spike_layers(block_stats, rule) -> np.ndarray:
    """(N, L) bool: position 0 is a spike token in the state layer l's attention reads.

    Layer l (0-based) reads the post-residual of block 2l (the FFN block of layer l - 1); layer 0
    reads the embeddings, which carry no spike.
    """
    from spikesink.results import RESIDUAL

    n_blocks, n_prompts = block_stats.median.shape[1:3]
    n_layers = n_blocks // 2
    out = np.zeros((n_prompts, n_layers), dtype=bool)
    for layer in range(1, n_layers):
        block = 2 * layer  # 1-based
        peak = block_stats.token_max[RESIDUAL, block - 1, :, 0]
        median = block_stats.median[RESIDUAL, block - 1]
        out[:, layer] = is_massive(peak, median, rule.floor, rule.median_ratio)
    return out


def sink_attention_per_prompt(key0_mass, spike_mass, key0_spikes, eps: float) -> dict[str, np.ndarray]:
    """Per prompt: sink ratio (%), mean key-0 mass, sinking (layer, head) count and the attention they
    give to spike tokens, summed over them (key 0's share counted only where key 0 is a spike token).

    key0_mass, spike_mass: (N, L, H) from the sink statistics (spike mass NaN where no spike position
    was given: then key 0 alone); key0_spikes: (N, L) bool.
    """
    key0 = np.asarray(key0_mass, dtype=np.float64)
    spike = np.asarray(spike_mass, dtype=np.float64)
    spike = np.where(np.isnan(spike), key0, spike)  # key 0 is always among the flagged positions
    spikes0 = np.asarray(key0_spikes, dtype=bool)[:, :, None]
    on_spikes = np.clip(np.where(spikes0, spike, spike - key0), 0.0, 1.0)
    # a hybrid's linear-attention layers are NaN (no attention map): no heads, left out of the means
    sinking = np.nan_to_num(metrics.sinking(key0, eps), nan=0.0).astype(bool)
    return {
        "sink_ratio": 100.0 * np.nanmean(metrics.sinking(key0, eps), axis=(1, 2)),
        "key0_mass": np.nanmean(key0, axis=(1, 2)),
        "n_sinking": sinking.sum(axis=(1, 2)).astype(np.int64),
        "on_spikes": np.where(sinking, on_spikes, 0.0).sum(axis=(1, 2)),
        "key0_spikes": np.asarray(key0_spikes, dtype=bool),
    }
