"""The paper's two central definitions, written once and shared by every analysis.

Massive activation (Sun et al. 2024, as used in the paper): a magnitude is massive when it is
above an absolute floor (about 100) *and* a large multiple (about 1000x) of the median magnitude
of the same hidden state.

Sink ratio (Gu et al. 2024, sail-sg/Attention-Sink; the metric of the paper's Section 4): a
head sinks on a sample when the mean attention its queries give to key 0 exceeds eps (0.3); the
ratio is the share of (layer, head, sample) triples that sink, in percent.
"""

from __future__ import annotations

import numpy as np

# the thresholds are the config's `spike` and `sinks` sections (defaults in the config schema)


def is_massive(magnitude, median, floor: float, median_ratio: float):
    """Elementwise: magnitude > floor and magnitude > median_ratio * median. Works on numpy or torch."""
    return (magnitude > floor) & (magnitude > median_ratio * median)


def massive_threshold(median, floor: float, median_ratio: float):
    """The smallest magnitude that counts as massive for a state with this median."""
    if hasattr(median, "clamp"):  # a torch tensor (this module stays torch-free for the figure jobs)
        return (median * median_ratio).clamp(min=floor)
    return np.maximum(np.asarray(median, dtype=np.float64) * median_ratio, floor)


def sinking(key0_mass, eps: float) -> np.ndarray:
    """1.0 where the mean attention on key 0 exceeds eps, else 0.0; NaN stays NaN (a hybrid's
    linear-attention layers have no attention map): average it with np.nanmean."""
    mass = np.asarray(key0_mass, dtype=np.float64)
    return np.where(np.isnan(mass), np.nan, mass > eps)


def sink_ratio(key0_mass, eps: float) -> float:
    """Percent of entries (any shape, e.g. samples x layers x heads) whose mean attention on key 0 exceeds eps.

    NaN entries (a hybrid's linear-attention layers: no attention map) are no heads and are left out."""
    mass = np.asarray(key0_mass, dtype=np.float64)
    mass = mass[np.isfinite(mass)]
    if mass.size == 0:
        raise ValueError("sink_ratio needs at least one head")
    return float(100.0 * np.mean(mass > eps))
