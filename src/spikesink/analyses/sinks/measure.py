"""Sinks from the extraction's sink statistics: no forward of its own (the extraction's attention
observer measured every head's attention on key 0 and on the spike tokens)."""

from __future__ import annotations

import numpy as np

from spikesink.analyses.sinks.result import Sinks
from spikesink.analyses.unit import Job

PER_HEAD = (
    "key0_mass_layer_head",
    "sink_ratio_layer_head",
    "spike_mass_layer_head",
    "key0_mass_layer",
    "sink_ratio_layer",
)


def measure(job: Job) -> Sinks:
    stats = job["sinks"]
    sinking = np.asarray(stats.key0_mass, dtype=np.float64) > job.shared.sink_eps
    spike_mass = np.asarray(stats.spike_mass, dtype=np.float64)
    # of the attention a sinking head gives to spike tokens, how much lands on key 0
    share = float(np.nanmean(spike_mass[sinking])) if sinking.any() else float("nan")
    return Sinks(
        per_head={name: np.asarray(getattr(stats, name)) for name in PER_HEAD},
        sink_ratio=float(stats.sink_ratio),
        key0_mass_mean=float(stats.key0_mass_mean),
        share_on_spikes=share,
        eps=job.shared.sink_eps,
    )
