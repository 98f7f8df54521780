"""The cross-architecture view: spikes and sinks of every configured model side by side.

This is the real-weights counterpart of the paper's Table 5, where changing the normalisation
(sandwich norm, QK-norm, DynamicTanh) removes the spike while sinks stay. Among released models,
Gemma 2/3 use sandwich norms and OLMo 2 normalises block outputs only; if normalisation is what
couples spikes and sinks, those models should have a much smaller spike relative to the median
of their residual stream while still sinking. The comparison is confounded by everything else
that differs between released models (size, data, tokenizer, training length, QK-norm): the
claims say so, and they read n/a unless both a pre-norm and a non-pre-norm model are configured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from spikesink.analyses.architectures.result import Architectures
from spikesink.analyses.unit import Job

COLUMNS = [
    "model",
    "family",
    "model_type",
    "norm placement",
    "FFN",
    "blocks",
    "d_model",
    "spike channels",
    "step-up",
    "step-down",
    "peak |h|",
    "peak / median",
    "position-0 spike share",
    "sink ratio (%)",
    "key-0 mass",
]


def measure(job: Job) -> Architectures:
    """One row per configured model (inputs: {model: value} per read key)."""
    rows = [
        architecture_row(name, job["block_stats"][name].meta, vars(lc), vars(job["sinks"][name]))
        for name, lc in job["lifecycle"].items()
    ]
    return Architectures(table=architecture_table(rows))


def architecture_row(model: str, meta: Mapping, lifecycle: Mapping, sinks: Mapping) -> dict:
    """One row from a model's block statistics meta, its life cycle and its sink statistics."""
    arch = meta.get("architecture") or {}
    return {
        "model": model,
        "family": arch.get("family", "?"),
        "model_type": arch.get("model_type", "?"),
        "norm placement": arch.get("norm_placement", "?"),
        "FFN": arch.get("ffn_kind", "?"),
        "blocks": int(lifecycle["n_blocks"]),
        "d_model": int(meta.get("d_model", 0)),
        "spike channels": list(lifecycle["spike_channels"]),
        "step-up": list(lifecycle["step_up"]),
        "step-down": list(lifecycle["step_down"]),
        "peak |h|": float(lifecycle["peak_magnitude"]),
        "peak / median": float(lifecycle["peak_median_ratio"]),
        "position-0 spike share": float(lifecycle["position0_spike_fraction"]),
        "sink ratio (%)": float(np.asarray(sinks["sink_ratio"])),
        "key-0 mass": float(np.asarray(sinks["key0_mass_mean"])),
    }


def architecture_table(rows: Sequence[Mapping]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=COLUMNS)
