"""Sink statistics per layer and head, summarised from the extraction's forward (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from spikesink.analyses.unit import Result, stored


@dataclass(kw_only=True)
class Sinks(Result):
    per_head: dict = stored(
        "npz"
    )  # key0_mass_layer_head, sink_ratio_layer_head, spike_mass_layer_head (L, H); per layer (L,)
    sink_ratio: float = 0.0  # percent of (prompt, layer, head) with key-0 mass > eps
    key0_mass_mean: float = 0.0
    share_on_spikes: float = float("nan")  # attention sinking heads give to spike tokens (key 0 included)
    eps: float = 0.3
