"""Sink statistics per layer and head, summarised from the extraction's forward (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass, field

from spikesink.analyses.unit import Result, stored


@dataclass(kw_only=True)
class Sinks(Result):
    per_head: dict = stored(
        "npz"
    )  # key0_mass_layer_head, sink_ratio_layer_head, spike_mass_layer_head (L, H); per layer (L,)
    # per prompt (N,): sink_ratio (percent of its (layer, head)), key0_mass (mean), n_sinking, on_spikes (the
    # attention its sinking heads give to spike tokens, summed over them); key0_spikes (N, L): key 0 is a spike
    # token entering layer l
    per_prompt: dict = stored("npz")
    sink_ratio: float = 0.0  # percent of (prompt, layer, head) with key-0 mass > eps
    key0_mass_mean: float = 0.0
    share_on_spikes: float = float("nan")  # attention sinking heads give to spike tokens (key 0 while it is one)
    # a learned sink logit per head (GPT-OSS): the mean share of a query's softmax it takes; NaN without one
    # (per_head then also holds learned_sink_share_layer_head (L, H) and learned_sink_share_layer (L,))
    learned_sink_share_mean: float = float("nan")
    # an output gate sigmoid(g) on the attention output (Qwen3-Next): its mean at token 0 and over the other
    # tokens; NaN without one (per_head then also holds output_gate_{pos0,rest}_layer_head (L, H) and _layer (L,))
    output_gate_pos0_mean: float = float("nan")
    output_gate_rest_mean: float = float("nan")
    # a hybrid's layers without softmax attention (Qwen3-Next's Gated DeltaNet): their rows are NaN, and why
    no_softmax_layers: list = field(default_factory=list)
    no_softmax_reason: str | None = None
    eps: float = 0.3
