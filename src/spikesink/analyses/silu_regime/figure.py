"""Fig. 2: cos(act(x), x) against ||act(x)|| / ||x|| per token in the step blocks."""

from __future__ import annotations

import os
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm

from spikesink.analyses.silu_regime.result import SiluRegime
from spikesink.analyses.unit import Job
from spikesink.reporting.plotting import PALETTE, apply_style, placeholder_figure, save_figure


def draw(result: SiluRegime, job: Job, paths: Mapping[str, os.PathLike]) -> dict:
    return {"": plot_silu_regime(result.frame, paths[""], job.model_name, result.activation, result.not_applicable)}


def plot_silu_regime(
    frame: pd.DataFrame,
    path: str | os.PathLike,
    model: str = "",
    activation: str = "silu",
    reason: str | None = None,
    max_points: int = 20000,
    seed: int = 0,
) -> dict:
    """Fig 2: cos(act(x), x) vs ||act(x)||/||x|| per token, one panel per FFN block, coloured by
    the block-output peak (log), spike tokens outlined; act is the family's gate activation (SiLU
    for SwiGLU). Returns the points it drew per block (the ordinary tokens subsampled)."""
    act = {"silu": "SiLU"}.get(activation, activation)
    if reason or frame.empty:
        reason = reason or "no step-up / step-down block detected"
        placeholder_figure(path, f"SiLU regime{' - ' + model if model else ''}", f"n/a: {reason}")
        return {}
    apply_style()
    blocks = sorted(frame["block"].unique())
    fig, axes = plt.subplots(1, len(blocks), figsize=(3.6 * len(blocks), 3.2), squeeze=False, sharey=True)
    rng = np.random.default_rng(seed)
    peaks = frame["out_peak"].clip(lower=1e-3)
    norm = LogNorm(vmin=float(peaks.min()), vmax=float(max(peaks.max(), peaks.min() * 10)))
    scatter, drawn = None, {}
    for ax, block in zip(axes[0], blocks):
        rows = frame[frame["block"] == block]
        spikes = rows[rows["is_spike"]]
        others = rows[~rows["is_spike"]]
        if len(others) > max_points:
            others = others.iloc[rng.choice(len(others), max_points, replace=False)]
        drawn[int(block)] = pd.concat([others, spikes])[["norm_ratio", "cos", "out_peak", "is_spike"]]
        for part, size, edge in ((others, 6, "none"), (spikes, 36, PALETTE["spike"])):
            if len(part):
                scatter = ax.scatter(
                    part["norm_ratio"],
                    part["cos"],
                    c=part["out_peak"].clip(lower=1e-3),
                    s=size,
                    cmap="viridis",
                    norm=norm,
                    edgecolors=edge,
                    linewidths=0.8,
                )
        ax.axhline(1.0, color=PALETTE["median"], linewidth=0.6, linestyle=":")
        ax.axvline(1.0, color=PALETTE["median"], linewidth=0.6, linestyle=":")
        ax.set_title(f"block {block}\n{len(spikes)} spike / {len(rows) - len(spikes)} other", fontsize=8)
        ax.set_xlabel(f"||{act}(x)|| / ||x||")
    axes[0, 0].set_ylabel(f"cos({act}(x), x)")
    if scatter is not None:
        fig.colorbar(scatter, ax=axes[0].tolist(), label="FFN output max |.|")
    fig.suptitle(f"{act} regime of the gate{' - ' + model if model else ''} (outlined: spike tokens)", y=1.06)
    save_figure(fig, path)
    return drawn
