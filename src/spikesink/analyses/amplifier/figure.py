"""Fig. 3/8 (U_k norms over blocks and channels) and Fig. 4 (S_k spectra)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm

from spikesink.analyses.amplifier.result import Amplifier
from spikesink.analyses.unit import Job
from spikesink.reporting.plotting import PALETTE, apply_style, placeholder_figure, save_figure


def draw(result: Amplifier, job: Job, paths: Mapping[str, os.PathLike]) -> dict:
    s = result.summary
    reason = s.get("not_applicable") or s.get("note") or "no step-up / step-down block detected"
    # the compared channels are the spike channels, or the top position-0 channels when fewer than two spiked
    label = "spike channel" if s.get("sharing_from", "spike channels") == "spike channels" else "top position-0 channel"
    return {
        "uk_norms": plot_uk_norms(
            result.norms, paths["uk_norms"], s["spike_channels"], s["step_up"], s["step_down"], job.model_name, reason
        ),
        "spectra": plot_spectra(
            result.spectra, paths["spectra"], model=job.model_name, channels_label=label, reason=reason
        ),
    }


def plot_uk_norms(
    norms: pd.DataFrame,
    path: str | os.PathLike,
    spike_channels: Sequence[int] = (),
    step_up_blocks: Sequence[int] = (),
    step_down_blocks: Sequence[int] = (),
    model: str = "",
    reason: str = "no U_k: the FFN has no gate",
) -> dict:
    """Fig 3/8: ||U_k||_F over (FFN block, channel) as a log heat map, and per block the spike
    channels against the median and max of all channels. An MoE block shows, per channel, the
    largest norm over its experts (and shared expert). Returns the (block x channel) matrix drawn."""
    if norms.empty:
        placeholder_figure(path, f"Quadratic amplifier norms{' - ' + model if model else ''}", f"n/a: {reason}")
        return {}
    apply_style()
    matrix = norms.groupby(["block", "channel"])["uk_norm"].max().unstack("channel").sort_index()
    fig, (heat, line) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1.6, 1]})
    values = matrix.to_numpy()
    positive = values[values > 0]
    image = heat.imshow(
        values,
        aspect="auto",
        interpolation="nearest",
        cmap="magma",
        norm=LogNorm(vmin=float(np.quantile(positive, 0.01)), vmax=float(positive.max())),
    )
    heat.grid(False)
    heat.set_yticks(range(len(matrix.index)))
    heat.set_yticklabels([str(b) for b in matrix.index], fontsize=6)
    heat.set_xlabel("output channel k")
    heat.set_ylabel("FFN block")
    for channel in spike_channels:
        heat.axvline(channel, color=PALETTE["spike"], linewidth=0.4, alpha=0.6)
    fig.colorbar(image, ax=heat, label="||U_k||_F (heat map)")
    blocks = matrix.index.to_numpy()
    line.plot(blocks, matrix.median(axis=1), color=PALETTE["median"], label="median channel")
    line.plot(blocks, matrix.max(axis=1), color=PALETTE["top2"], linestyle="--", label="max channel")
    for i, channel in enumerate(spike_channels):
        if channel in matrix.columns:
            line.plot(
                blocks,
                matrix[channel],
                marker="o",
                markersize=3,
                label=f"channel {channel}",
                color=plt.cm.Reds(0.9 - 0.2 * (i % 4)),
            )
    for block in step_up_blocks:
        line.axvline(block, color=PALETTE["step_up"], linestyle=":", linewidth=1)
    for block in step_down_blocks:
        line.axvline(block, color=PALETTE["step_down"], linestyle=":", linewidth=1)
    line.set_yscale("log")
    line.set_xlabel("FFN block (dotted: step-up green, step-down purple)")
    line.set_ylabel("||U_k||_F")
    line.legend(fontsize=7, frameon=False)
    fig.suptitle(f"Quadratic amplifier norms{' - ' + model if model else ''}")
    save_figure(fig, path)
    return {"matrix": matrix}


def plot_spectra(
    table: pd.DataFrame,
    path: str | os.PathLike,
    max_rank: int = 32,
    model: str = "",
    channels_label: str = "spike channel",
    reason: str = "no step-up / step-down block detected",
) -> dict:
    """Fig 4: |lambda_i| / |lambda_1| of S_k by rank, the compared channels (the spike channels, or
    `channels_label` when they are another choice) vs random control channels. Returns the
    curves drawn per block: (channel, kind, rank, abs_normalised)."""
    if table.empty:
        placeholder_figure(path, f"Spectra of S_k{' - ' + model if model else ''}", f"n/a: {reason}")
        return {}
    apply_style()
    blocks = sorted(table["block"].unique())
    fig, axes = plt.subplots(1, len(blocks), figsize=(4.2 * len(blocks), 3.4), squeeze=False)
    drawn = {}
    for ax, block in zip(axes[0], blocks):
        rows = table[(table["block"] == block) & (table["rank"] <= max_rank)]
        drawn[int(block)] = rows[["channel", "kind", "rank", "abs_normalised"]].reset_index(drop=True)
        markers = iter("osD^v<>p*h")
        for i, (channel, group) in enumerate(rows.groupby("channel")):
            spike = group["kind"].iloc[0] == "spike"
            ax.plot(
                group["rank"],
                group["abs_normalised"].clip(lower=1e-8),
                marker=next(markers, "o") if spike else None,
                markersize=3,
                linewidth=1.6 if spike else 0.8,
                color=plt.cm.Reds(0.95 - 0.15 * (i % 4)) if spike else PALETTE["other"],
                alpha=1.0 if spike else 0.6,
                label=f"{channels_label} {channel}" if spike else None,
            )
        ax.plot([], [], color=PALETTE["other"], label="random channels")
        ax.set_yscale("log")
        ax.set_xlabel("eigenvalue rank (by |lambda|)")
        ax.set_title(f"block {block}")
        ax.legend(fontsize=7, frameon=False)
    axes[0, 0].set_ylabel("|lambda_i| / |lambda_1| of S_k")
    fig.suptitle(f"Spectra of S_k{' - ' + model if model else ''}", y=1.04)
    save_figure(fig, path)
    return drawn
