"""Figure 1 / Figure 7: the spike's life cycle over the 2L blocks."""

from __future__ import annotations

import math
import os

import matplotlib.pyplot as plt
import numpy as np

from spikesink.plotting import PALETTE, apply_style, save_figure
from spikesink.results import OUTPUT, RESIDUAL, BlockStats, Lifecycle


def _panel(ax, stats: BlockStats, kind: int, lc: Lifecycle, show_median: bool, top_k: int) -> None:
    blocks = np.arange(1, stats.n_blocks + 1)
    top = stats.topk_abs[kind].mean(axis=1)  # (blocks, k): mean over prompts of the i-th largest
    for i in range(min(top_k, top.shape[1])):
        ax.plot(
            blocks,
            top[:, i],
            color=PALETTE[f"top{i + 1}"] if i < 3 else None,
            marker="o",
            markersize=2.5,
            linewidth=1.2,
            label=f"top-{i + 1}",
        )
    if show_median:
        ax.plot(
            blocks,
            stats.median[kind].mean(axis=1),
            color=PALETTE["median"],
            linestyle=":",
            linewidth=1.2,
            label="median",
        )
    for block in lc.step_up:
        ax.axvline(block, color=PALETTE["step_up"], linewidth=1.0, alpha=0.8)
    for block in lc.step_down:
        ax.axvline(block, color=PALETTE["step_down"], linewidth=1.0, alpha=0.8, linestyle="--")
    ax.set_yscale("log")
    ax.set_xlim(0.5, stats.n_blocks + 0.5)


def plot_lifecycle(
    stats: BlockStats,
    lc: Lifecycle,
    title: str,
    path: str | os.PathLike,
    top_k: int = 3,
    show_median: bool = True,
    height: float = 5.2,
    width: float = 7.0,
):
    """Top panel: top-k magnitudes of the post-residual state per block; bottom: of each block's
    output. Green solid lines: step-up blocks; purple dashed lines: step-down blocks."""
    apply_style()
    fig, (top_ax, bottom_ax) = plt.subplots(2, 1, figsize=(width, height), sharex=True)
    _panel(top_ax, stats, RESIDUAL, lc, show_median, top_k)
    _panel(bottom_ax, stats, OUTPUT, lc, show_median, top_k)
    top_ax.set_ylabel("|h| post-residual")
    bottom_ax.set_ylabel("|block output|")
    bottom_ax.set_xlabel("block (odd = attention, even = FFN)")
    channels = ", ".join(map(str, lc.spike_channels[:4])) or "none"
    top_ax.set_title(f"{title}: spike life cycle (channels {channels})", fontsize=10)
    handles, labels = top_ax.get_legend_handles_labels()
    handles += [
        plt.Line2D([], [], color=PALETTE["step_up"]),
        plt.Line2D([], [], color=PALETTE["step_down"], linestyle="--"),
    ]
    labels += [f"step-up {lc.step_up}", f"step-down {lc.step_down}"]
    top_ax.legend(handles, labels, fontsize=7, loc="upper left", ncol=2, frameon=True)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_lifecycle_grid(items: list[tuple[str, BlockStats, Lifecycle]], path: str | os.PathLike, top_k: int = 3):
    """Figure 7: the post-residual life cycle of every configured model side by side."""
    apply_style()
    n = len(items)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, (name, stats, lc) in zip(axes.flat, items):
        _panel(ax, stats, RESIDUAL, lc, True, top_k)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("block")
        ax.set_ylabel("|h| post-residual")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)
