"""The largest activation scale of every Linear input over depth."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd

from spikesink.analyses.act_scales.result import ActScales
from spikesink.analyses.unit import Job
from spikesink.reporting.plotting import PALETTE, apply_style, save_figure

# q, k and v (gate and up) read the same tensor: one line each, under one label
ROLE_STYLE = {
    "q": ("q / k / v input", PALETTE["ours"]),
    "k": ("q / k / v input", PALETTE["ours"]),
    "v": ("q / k / v input", PALETTE["ours"]),
    "qkv": ("q / k / v input", PALETTE["ours"]),
    "o": ("o input", PALETTE["other"]),
    "gate": ("gate / up input", PALETTE["step_down"]),
    "up": ("gate / up input", PALETTE["step_down"]),
    "gate_up": ("gate / up input", PALETTE["step_down"]),
    "shared_gate": ("shared expert gate / up input", PALETTE["top3"]),
    "shared_up": ("shared expert gate / up input", PALETTE["top3"]),
    "fc_in": ("fc_in input", PALETTE["step_down"]),
    "down": ("down input", PALETTE["spike"]),
    "fc_out": ("fc_out input", PALETTE["spike"]),
    "linear_in": ("linear attention input", PALETTE["ours"]),
    "linear_out": ("linear attention output input", PALETTE["other"]),
}


def draw(result: ActScales, job: Job, paths: Mapping[str, os.PathLike]) -> dict:
    return {"": plot_act_scales(result.summary, paths[""], job["lifecycle"].step_up, job.model_name)}


def plot_act_scales(
    scales: pd.DataFrame, path: str | os.PathLike, step_up: Sequence[int] = (), model: str = ""
) -> dict:
    """The largest input |x| per block, one line per kind of Linear input; step-up blocks dashed.
    Returns the lines drawn, by label."""
    apply_style()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    drawn = {}
    scales = scales.assign(label=scales["role"].map(lambda r: ROLE_STYLE.get(r, (f"{r} input", PALETTE["top3"]))[0]))
    for label, rows in scales.groupby("label", sort=False):
        color = ROLE_STYLE.get(rows["role"].iloc[0], (label, PALETTE["top3"]))[1]
        best = rows.groupby("block")["max_scale"].max()
        drawn[label] = best
        ax.plot(best.index, best.values, marker="o", markersize=3, color=color, label=label)
    for block in step_up:
        ax.axvline(block, color=PALETTE["step_up"], linestyle="--", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("block (paper numbering)")
    ax.set_ylabel("largest input |x| of the layer (log)")
    ax.set_title(f"Activation scales per Linear input{' - ' + model if model else ''} (dashed: step-up)")
    ax.legend(fontsize=7, frameon=False)
    save_figure(fig, path)
    return drawn
