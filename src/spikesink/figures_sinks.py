"""Figures of the sink analysis: key-0 heat map, sinks vs spikes over depth, t-SNE (paper Fig 6),
intervention bars. Every function takes small arrays / tables and a path, writes PDF + PNG
through plotting.save_figure and returns the written paths.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from spikesink.reporting.plotting import OURS_STYLE, PALETTE, apply_style, save_figure

KIND_STYLE = {
    "q(n)": dict(color=PALETTE["ours"], marker="o", label="q(n): non-sink queries"),
    "k(n)": dict(color=PALETTE["other"], marker="s", label="k(n): non-sink keys"),
    "k(s)": dict(color=PALETTE["spike"], marker="*", label="k(s): sink keys"),
}
ROLE_TITLE = {"sink": "sink head", "non_sink": "non-sink head"}


def plot_key0_heatmap(
    key0_mass_layer_head: np.ndarray,
    path: str | os.PathLike,
    title: str | None = None,
    highlight: dict[str, tuple[int, int]] | None = None,
) -> list[Path]:
    """Mean attention on key 0 per (layer, head); optionally outline chosen heads (role -> (layer, head))."""
    apply_style()
    mass = np.asarray(key0_mass_layer_head, dtype=np.float32)
    n_layers, n_heads = mass.shape
    fig, ax = plt.subplots(figsize=(1.2 + 0.35 * n_heads, 1.0 + 0.16 * n_layers))
    image = ax.imshow(mass, aspect="auto", cmap="magma", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="mean attention on key 0")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(n_heads))
    step = max(1, n_layers // 10)
    ax.set_yticks(range(0, n_layers, step))
    ax.grid(False)
    handles = []
    for role, (layer, head) in (highlight or {}).items():
        color = PALETTE["step_up"] if role == "sink" else PALETTE["ours"]
        box = plt.Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor=color, linewidth=2)
        ax.add_patch(box)
        handles.append(
            plt.Rectangle(
                (0, 0),
                1,
                1,
                fill=False,
                edgecolor=color,
                linewidth=2,
                label=f"{ROLE_TITLE.get(role, role)} (L{layer} H{head})",
            )
        )
    if handles:
        ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.08 - 0.4 / max(n_layers, 1)),
            fontsize=7,
            ncol=len(handles),
            frameon=False,
        )
    ax.set_title(title or "Attention on the first token")
    return save_figure(fig, path)


def plot_sink_vs_spike(
    sink_ratio_layer: np.ndarray,
    key0_mass_layer: np.ndarray,
    top1_per_block: np.ndarray,
    path: str | os.PathLike,
    title: str | None = None,
    step_up: Sequence[int] = (),
    step_down: Sequence[int] = (),
) -> list[Path]:
    """Spike magnitude (top-1 |h| per block, post-residual) above, sinks per layer below, same depth axis.

    x is the paper's block number; a layer's sink statistics sit at its attention block 2l+1
    (0-based l). top1_per_block comes from the extraction (length 2L).
    """
    apply_style()
    ratio = np.asarray(sink_ratio_layer, dtype=np.float64)
    mass = np.asarray(key0_mass_layer, dtype=np.float64)
    top1 = np.asarray(top1_per_block, dtype=np.float64)
    n_layers = len(ratio)
    if len(mass) != n_layers or len(top1) != 2 * n_layers:
        raise ValueError(f"need L sink values and 2L block magnitudes, got {len(ratio)}, {len(mass)}, {len(top1)}")
    blocks = np.arange(1, 2 * n_layers + 1)
    attention_blocks = 2 * np.arange(n_layers) + 1
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.0, 5.0), sharex=True)
    top.plot(blocks, top1, color=PALETTE["top1"], marker="o", markersize=3, linewidth=1.5, label="top-1 |h|")
    top.set_yscale("log")
    top.set_ylabel("spike: top-1 magnitude")
    bottom.plot(attention_blocks, ratio, **OURS_STYLE, label="sink ratio (%)")
    bottom.set_ylabel("sink ratio (%)")
    bottom.set_ylim(-2, 102)
    twin = bottom.twinx()
    twin.plot(attention_blocks, mass, color=PALETTE["median"], linestyle=":", marker=".", label="mean key-0 mass")
    twin.set_ylim(-0.02, 1.02)
    twin.set_ylabel("mean attention on key 0")
    twin.grid(False)
    for ax in (top, bottom):
        for block in step_up:
            ax.axvline(block, color=PALETTE["step_up"], linestyle="--", linewidth=1)
        for block in step_down:
            ax.axvline(block, color=PALETTE["step_down"], linestyle="--", linewidth=1)
    handles = bottom.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    bottom.legend(handles, [h.get_label() for h in handles], loc="lower right", fontsize=8)
    bottom.set_xlabel("block (odd = attention, even = FFN)")
    top.set_title(title or "Spikes and sinks over depth")
    return save_figure(fig, path)


def plot_tsne(tsne: pd.DataFrame, path: str | os.PathLike, title: str | None = None) -> list[Path]:
    """Paper Fig 6: q(n), k(n), k(s) of the sink head (left) and the non-sink head (right)."""
    apply_style()
    roles = [role for role in ("sink", "non_sink") if role in set(tsne["role"])]
    fig, axes = plt.subplots(1, len(roles), figsize=(4.2 * len(roles), 4.0), squeeze=False)
    for ax, role in zip(axes[0], roles):
        part = tsne[tsne["role"] == role]
        for kind, style in KIND_STYLE.items():
            points = part[part["kind"] == kind]
            size = 40 if kind == "k(s)" else 10
            ax.scatter(points["x"], points["y"], s=size, alpha=0.7, linewidths=0, **style)
        layer, head = int(part["layer"].iloc[0]), int(part["head"].iloc[0])
        ax.set_title(f"{ROLE_TITLE[role]} (layer {layer}, head {head})")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(loc="best", fontsize=7, markerscale=1.2)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_intervention(table: pd.DataFrame, path: str | os.PathLike, title: str | None = None) -> list[Path]:
    """Bars per condition: sink ratio, mean key-0 mass, perplexity, spike at the first token."""
    apply_style()
    panels = [
        ("sink_ratio", "sink ratio (%)"),
        ("key0_mass", "mean attention on key 0"),
        ("perplexity", "perplexity"),
        ("spike_first_token", "spike: max |h| at token 0"),
    ]
    panels = [panel for panel in panels if panel[0] in table.columns]
    several_blocks = table["block"].nunique() > 1
    if several_blocks:  # one table per block concatenated: one "none" bar, edits labelled by block
        table = pd.concat([table[table["condition"] == "none"].iloc[:1], table[table["condition"] != "none"]])
    conditions = [
        f"{row.condition}\nb{row.block}" if several_blocks and row.condition != "none" else row.condition
        for row in table.itertuples()
    ]
    colors = [PALETTE["other"] if c == "none" else PALETTE["ours"] for c in table["condition"]]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), layout="constrained")
    for ax, (column, label) in zip(np.atleast_1d(axes), panels):
        values = table[column].to_numpy(dtype=float)
        ax.bar(range(len(conditions)), values, color=colors)
        positive = values[values > 0]
        if len(positive) == len(values) and positive.max() / positive.min() > 50:
            ax.set_yscale("log")  # e.g. perplexity exploding after an edit
            label += " (log)"
        ax.set_xticks(range(len(conditions)), conditions)
        ax.set_title(label, fontsize=9)
        for x, value in enumerate(values):
            ax.annotate(f"{value:.3g}", (x, value), ha="center", va="bottom", fontsize=7)
    first = table.iloc[-1]
    where = (
        "blocks " + ", ".join(str(b) for b in sorted(set(table["block"])))
        if several_blocks
        else f"block {first['block']}"
    )
    channels = first["channels"] if table["channels"].nunique() == 1 else "the spike channels"
    default = f"Edit of channels {channels} at {where} ({first['site']}, {first['positions']} token)"
    fig.suptitle(title or default, fontsize=10)
    return save_figure(fig, path)
