"""Held-out perplexity with the massive activations edited, as a ratio to the unedited model."""

from __future__ import annotations

import os
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from spikesink.analyses.implicit_params.result import COLUMNS, ImplicitParams
from spikesink.analyses.unit import Job
from spikesink.reporting.plotting import PALETTE, apply_style, placeholder_figure, save_figure

MODE_COLOR = {"own_mean": PALETTE["step_up"], "zero": PALETTE["spike"], "ordinary_mean": PALETTE["top2"]}


def tables(result: ImplicitParams, job: Job) -> dict:
    table = result.table if not result.table.empty else pd.DataFrame(columns=COLUMNS)
    caption = (
        f"{job.model_name}: held-out perplexity with the massive activations set to their own mean, "
        "to zero or to the ordinary tokens' mean (Sun et al. 2024)"
        + (f". n/a: {result.not_applicable}" if result.not_applicable else "")
    )
    return {"": (table, caption)}


def draw(result: ImplicitParams, job: Job, paths: Mapping[str, os.PathLike]) -> dict:
    tolerance = job.settings.claims.mean_tolerance
    return {"": plot_implicit_params(result.table, paths[""], job.model_name, result.not_applicable, tolerance)}


def plot_implicit_params(
    table: pd.DataFrame, path: str | os.PathLike, model: str = "", reason: str | None = None, tolerance: float = 0.05
) -> dict:
    """Perplexity ratio to the unedited model per site and edit (log), the tolerance band shaded.
    Returns the bar heights drawn per mode, by block."""
    title = f"Massive activations as implicit parameters{' - ' + model if model else ''}"
    edits = table[table["mode"] != "none"] if not table.empty else table
    if reason or edits.empty:
        placeholder_figure(path, title, f"n/a: {reason or 'no site'}")
        return {}
    apply_style()
    drawn = {}
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    sites = sorted(edits["block"].unique())
    modes = [m for m in MODE_COLOR if m in set(edits["mode"])]
    width = 0.8 / len(modes)
    for i, mode in enumerate(modes):
        rows = edits[edits["mode"] == mode].set_index("block").reindex(sites)
        drawn[mode] = rows["ratio"]
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
    save_figure(fig, path)
    return drawn
