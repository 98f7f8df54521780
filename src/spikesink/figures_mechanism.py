"""Figures for the mechanism analyses (Table 2, Fig 2, 3/8, 4, 5): one function per figure.

Each takes the tables the analyses produce (never a model) and writes PDF + PNG through
spikesink.reporting.plotting.save_figure, so a figure can be redrawn from cached results alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm

from spikesink.reporting.plotting import PALETTE, apply_style, placeholder_figure, save_figure


def _log_bins(values: np.ndarray, n: int = 60) -> np.ndarray:
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size == 0:
        return np.logspace(-2, 1, n)
    low, high = np.log10(positive.min()), np.log10(positive.max())
    if high - low < 1e-6:
        low, high = low - 0.5, high + 0.5
    return np.logspace(low, high, n)


def plot_vocab_probe(frame: pd.DataFrame, summary: Mapping, path: str | os.PathLike, model: str = "") -> list:
    """Table 2 as a picture: per-token peak |h| at position 0 vs after a prefix (log x).

    The massive thresholds are drawn as vertical lines: the floor and, when the probe used a
    reference median, median_ratio x the smallest reference median of the probed blocks.
    """
    apply_style()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    columns = [("peak_pos0", "position 0", PALETTE["spike"])]
    if "peak_later" in frame:
        columns.append(("peak_later", "after prefix", PALETTE["other"]))
    bins = _log_bins(np.concatenate([frame[c].to_numpy(dtype=float) for c, _, _ in columns]))
    for column, label, color in columns:
        ratio = summary["ratio_pos0"] if column == "peak_pos0" else summary.get("ratio_later", float("nan"))
        ax.hist(
            frame[column].clip(lower=bins[0]),
            bins=bins,
            color=color,
            alpha=0.7,
            label=f"{label}: {100 * ratio:.2f}% spike tokens",
        )
    ax.axvline(
        summary["floor"], color=PALETTE["median"], linestyle=":", linewidth=1, label=f"floor {summary['floor']:g}"
    )
    reference = summary.get("reference_median")
    if reference:
        threshold = summary["median_ratio"] * min(reference.values())
        ax.axvline(
            threshold,
            color=PALETTE["median"],
            linestyle="--",
            linewidth=1,
            label=f"{summary['median_ratio']:g} x reference median",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("max |h| over probed blocks and channels")
    ax.set_ylabel("vocabulary items")
    ax.set_title(f"Vocabulary probe{' - ' + model if model else ''} ({summary['n_probed']:,} ids)")
    ax.legend(fontsize=8, frameon=False)
    return save_figure(fig, path)


def plot_silu_regime(
    frame: pd.DataFrame, path: str | os.PathLike, model: str = "", max_points: int = 20000, seed: int = 0
) -> list:
    """Fig 2: cos(act(x), x) vs ||act(x)||/||x|| per token, one panel per FFN block, coloured by
    the block-output peak (log), spike tokens outlined; act is the family's gate activation
    (SiLU for SwiGLU), read from the frame's attrs like the reason when the analysis is n/a."""
    act = {"silu": "SiLU"}.get(frame.attrs.get("activation", "silu"), frame.attrs.get("activation", "act"))
    if frame.empty:
        reason = frame.attrs.get("not_applicable") or "no step-up / step-down block detected"
        return placeholder_figure(path, f"SiLU regime{' - ' + model if model else ''}", f"n/a: {reason}")
    apply_style()
    blocks = sorted(frame["block"].unique())
    fig, axes = plt.subplots(1, len(blocks), figsize=(3.6 * len(blocks), 3.2), squeeze=False, sharey=True)
    rng = np.random.default_rng(seed)
    peaks = frame["out_peak"].clip(lower=1e-3)
    norm = LogNorm(vmin=float(peaks.min()), vmax=float(max(peaks.max(), peaks.min() * 10)))
    scatter = None
    for ax, block in zip(axes[0], blocks):
        rows = frame[frame["block"] == block]
        spikes = rows[rows["is_spike"]]
        others = rows[~rows["is_spike"]]
        if len(others) > max_points:
            others = others.iloc[rng.choice(len(others), max_points, replace=False)]
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
    return save_figure(fig, path)


def plot_uk_norms(
    norms: pd.DataFrame,
    path: str | os.PathLike,
    spike_channels: Sequence[int] = (),
    step_up_blocks: Sequence[int] = (),
    step_down_blocks: Sequence[int] = (),
    model: str = "",
) -> list:
    """Fig 3/8: ||U_k||_F over (FFN block, channel) as a log heat map, and per block the spike
    channels against the median and max of all channels."""
    apply_style()
    matrix = norms.pivot(index="block", columns="channel", values="uk_norm").sort_index()
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
    return save_figure(fig, path)


def plot_spectra(table: pd.DataFrame, path: str | os.PathLike, max_rank: int = 32, model: str = "") -> list:
    """Fig 4: |lambda_i| / |lambda_1| of S_k by rank, spike channels vs random control channels."""
    if table.empty:
        return placeholder_figure(
            path, f"Spectra of S_k{' - ' + model if model else ''}", "no step-up / step-down block detected"
        )
    apply_style()
    blocks = sorted(table["block"].unique())
    fig, axes = plt.subplots(1, len(blocks), figsize=(4.2 * len(blocks), 3.4), squeeze=False)
    for ax, block in zip(axes[0], blocks):
        rows = table[(table["block"] == block) & (table["rank"] <= max_rank)]
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
                label=f"spike channel {channel}" if spike else None,
            )
        ax.plot([], [], color=PALETTE["other"], label="random channels")
        ax.set_yscale("log")
        ax.set_xlabel("eigenvalue rank (by |lambda|)")
        ax.set_title(f"block {block}")
        ax.legend(fontsize=7, frameon=False)
    axes[0, 0].set_ylabel("|lambda_i| / |lambda_1| of S_k")
    fig.suptitle(f"Spectra of S_k{' - ' + model if model else ''}", y=1.04)
    return save_figure(fig, path)


def plot_cosine_collapse(matrices: Mapping[str, np.ndarray], path: str | os.PathLike, model: str = "") -> list:
    """Fig 5: cosine matrices of spike tokens before / after the step-up block (and after the
    next RMSNorm), side by side, plus the distribution of their off-diagonal entries."""
    names = [k for k in ("before", "after", "after_normed") if k in matrices and np.asarray(matrices[k]).size]
    if not names:
        return placeholder_figure(
            path, f"Spike-token cosines{' - ' + model if model else ''}", "no spike token / no step-up block"
        )
    apply_style()
    titles = {"before": "before step-up", "after": "after step-up", "after_normed": "after RMSNorm (weight)"}
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(3.3 * (len(names) + 1), 3.3))
    image = None
    for ax, name in zip(axes, names):
        image = ax.imshow(matrices[name], vmin=-1, vmax=1, cmap="RdBu_r", interpolation="nearest")
        ax.grid(False)
        ax.set_title(titles[name])
        ax.set_xlabel("spike token")
    axes[0].set_ylabel("spike token")
    if image is not None:
        fig.colorbar(image, ax=axes[: len(names)].tolist(), shrink=0.8, label="cosine")
    dist = axes[-1]
    bins = np.linspace(-1, 1, 81)
    colors = {"before": PALETTE["other"], "after": PALETTE["spike"], "after_normed": PALETTE["top2"]}
    for name in names:
        m = matrices[name]
        off = m[~np.eye(m.shape[0], dtype=bool)]
        if off.size:
            dist.hist(off, bins=bins, alpha=0.6, color=colors[name], label=titles[name], density=True)
    other_after = matrices.get("other_after")
    if other_after is not None and other_after.size > 1:
        off = other_after[~np.eye(other_after.shape[0], dtype=bool)]
        dist.hist(
            off, bins=bins, histtype="step", color=PALETTE["median"], label="ordinary tokens, after", density=True
        )
    dist.set_xlabel("pairwise cosine")
    dist.set_ylabel("density")
    dist.legend(fontsize=7, frameon=False)
    fig.suptitle(f"Spike tokens collapse to one vector{' - ' + model if model else ''}")
    return save_figure(fig, path)
