"""Figures of what spikes and sinks do: the implicit-parameter test, the attention-path test,
activation scales and INT8 perplexity, and sliding-window perplexity over position. Each takes a
small table and a path, writes PDF + PNG through plotting.save_figure, returns the paths."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from spikesink.reporting.plotting import PALETTE, apply_style, placeholder_figure, save_figure

MODE_COLOR = {"own_mean": PALETTE["step_up"], "zero": PALETTE["spike"], "ordinary_mean": PALETTE["top2"]}
ROLE_STYLE = {
    "q": ("q / k / v input", PALETTE["ours"]),
    "qkv": ("q / k / v input", PALETTE["ours"]),
    "o": ("o input", PALETTE["other"]),
    "gate": ("gate / up input", PALETTE["step_down"]),
    "gate_up": ("gate / up input", PALETTE["step_down"]),
    "fc_in": ("fc_in input", PALETTE["step_down"]),
    "down": ("down input", PALETTE["spike"]),
    "fc_out": ("fc_out input", PALETTE["spike"]),
}


def plot_implicit_params(
    table: pd.DataFrame, path: str | os.PathLike, model: str = "", reason: str | None = None, tolerance: float = 0.05
) -> list[Path]:
    title = f"Massive activations as implicit parameters{' - ' + model if model else ''}"
    edits = table[table["mode"] != "none"] if not table.empty else table
    if reason or edits.empty:
        return placeholder_figure(path, title, f"n/a: {reason or 'no site'}")
    apply_style()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    sites = sorted(edits["block"].unique())
    modes = [m for m in MODE_COLOR if m in set(edits["mode"])]
    width = 0.8 / len(modes)
    for i, mode in enumerate(modes):
        rows = edits[edits["mode"] == mode].set_index("block").reindex(sites)
        ax.bar(
            np.arange(len(sites)) + (i - (len(modes) - 1) / 2) * width,
            rows["ratio"],
            width,
            color=MODE_COLOR[mode],
            label=mode.replace("_", " "),
        )
    ax.axhline(1.0, color=PALETTE["median"], linewidth=1)
    ax.axhspan(1 - tolerance, 1 + tolerance, color=PALETTE["step_up"], alpha=0.12, label=f"within {100 * tolerance:g}%")
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(sites)), [f"block {b}" for b in sites])
    ax.set_ylabel("held-out perplexity / unedited (log)")
    ax.set_title(title)
    ax.legend(fontsize=7, frameon=False)
    return save_figure(fig, path)


def plot_attention_path(
    table: pd.DataFrame, path: str | os.PathLike, model: str = "", reason: str | None = None
) -> list[Path]:
    title = f"Spike removed from token 0's attention input only{' - ' + model if model else ''}"
    if reason or table.empty:
        return placeholder_figure(path, title, f"n/a: {reason or 'no plateau attention block'}")
    apply_style()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    colors = [PALETTE["ours"], PALETTE["spike"], PALETTE["other"]]
    for ax, column, label in zip(
        axes,
        ("sink_ratio_edited_layers", "key0_mass_edited_layers", "perplexity"),
        ("sink ratio, edited layers (%)", "attention on key 0, edited layers", "held-out perplexity"),
    ):
        ax.bar(table["condition"], table[column], color=colors[: len(table)])
        ax.set_ylabel(label)
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(f"{title} (blocks {table['blocks'].iloc[0]})", y=1.04)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_act_scales(
    scales: pd.DataFrame, path: str | os.PathLike, step_up: Sequence[int] = (), model: str = ""
) -> list[Path]:
    apply_style()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    scales = scales.assign(label=scales["role"].map(lambda r: ROLE_STYLE.get(r, (f"{r} input", PALETTE["top3"]))[0]))
    for label, rows in scales.groupby("label", sort=False):
        color = ROLE_STYLE.get(rows["role"].iloc[0], (label, PALETTE["top3"]))[1]
        best = rows.groupby("block")["max_scale"].max()
        ax.plot(best.index, best.values, marker="o", markersize=3, color=color, label=label)
    for block in step_up:
        ax.axvline(block, color=PALETTE["step_up"], linestyle="--", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("block (paper numbering)")
    ax.set_ylabel("largest input |x| of the layer (log)")
    ax.set_title(f"Activation scales per Linear input{' - ' + model if model else ''} (dashed: step-up)")
    ax.legend(fontsize=7, frameon=False)
    return save_figure(fig, path)


def plot_quantization(table: pd.DataFrame, path: str | os.PathLike, model: str = "") -> list[Path]:
    apply_style()
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    labels = {
        "fp": "full precision",
        "per_tensor": "per-tensor A8",
        "per_tensor_keep": "per-tensor A8,\nspike tokens fp",
        "per_token": "per-token A8",
    }
    ax.bar(
        [labels.get(c, c) for c in table["condition"]],
        table["perplexity"],
        color=[PALETTE["ours"], PALETTE["spike"], PALETTE["step_up"], PALETTE["other"]][: len(table)],
    )
    ax.set_yscale("log")
    ax.set_ylabel("held-out perplexity (log)")
    ax.set_title(f"INT8 activations, weights untouched{' - ' + model if model else ''}")
    ax.tick_params(axis="x", labelsize=8)
    return save_figure(fig, path)


def plot_kv_cache(curve: pd.DataFrame, summary: pd.DataFrame, path: str | os.PathLike, model: str = "") -> list[Path]:
    apply_style()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    colors = [PALETTE["ours"], PALETTE["spike"], PALETTE["step_up"], PALETTE["step_down"], PALETTE["top2"]]
    for color, (name, rows) in zip(colors, curve.groupby("condition", sort=False)):
        ax.plot(rows["position"], rows["perplexity"], color=color, label=name, linewidth=1.4)
    window = summary["window"].dropna()
    if len(window):
        ax.axvline(float(window.iloc[0]), color=PALETTE["median"], linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("position of the predicted token")
    ax.set_ylabel("perplexity per position bin (log)")
    ax.set_title(f"Sliding-window attention with kept first tokens{' - ' + model if model else ''}")
    ax.legend(fontsize=7, frameon=False)
    return save_figure(fig, path)
