"""Bars per edit of the step-up block: sinks, key-0 mass, perplexity and the spike."""

from __future__ import annotations

import os
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from spikesink.analyses.intervention.result import Intervention
from spikesink.analyses.unit import Job
from spikesink.reporting.plotting import PALETTE, apply_style, placeholder_figure, save_figure


def draw(result: Intervention, job: Job, paths: Mapping[str, os.PathLike]) -> dict:
    name = job.model_name
    if result.not_applicable:
        placeholder_figure(paths[""], f"{name}: spike intervention", f"n/a: {result.not_applicable}")
        return {"": {}}
    return {"": plot_intervention(result.table, paths[""], title=f"{name}: removing the spike at the step-up block")}


def plot_intervention(table: pd.DataFrame, path: str | os.PathLike, title: str | None = None) -> dict:
    """Bars per condition: sink ratio, mean key-0 mass, perplexity, spike at the first token.
    Returns the bar heights drawn per panel, by condition label."""
    apply_style()
    drawn = {}
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
        drawn[column] = pd.Series(values, index=conditions)
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
    save_figure(fig, path)
    return drawn
