"""Sinks of the edited layers and perplexity without the spike in token 0's attention input."""

from __future__ import annotations

import os
from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd

from spikesink.analyses.attention_path.result import COLUMNS, AttentionPath
from spikesink.analyses.unit import Job
from spikesink.reporting.plotting import PALETTE, apply_style, placeholder_figure, save_figure


def tables(result: AttentionPath, job: Job) -> dict:
    table = result.table if not result.table.empty else pd.DataFrame(columns=COLUMNS)
    caption = (
        f"{job.model_name}: token 0's normalised attention input with its spike channels replaced by the "
        "ordinary tokens' mean, in the plateau layers only (residual stream and FFN untouched), against a control "
        "edit of as many non-spike channels" + (f". n/a: {result.not_applicable}" if result.not_applicable else "")
    )
    return {"": (table, caption)}


def draw(result: AttentionPath, job: Job, paths: Mapping[str, os.PathLike]) -> dict:
    return {"": plot_attention_path(result.table, paths[""], job.model_name, result.not_applicable)}


def plot_attention_path(
    table: pd.DataFrame, path: str | os.PathLike, model: str = "", reason: str | None = None
) -> dict:
    """Bars per condition (none, spike channels, control channels): sinks of the edited layers
    and perplexity. Returns the bar heights drawn per panel."""
    title = f"Spike removed from token 0's attention input only{' - ' + model if model else ''}"
    if reason or table.empty:
        placeholder_figure(path, title, f"n/a: {reason or 'no plateau attention block'}")
        return {}
    apply_style()
    drawn = {}
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    colors = [PALETTE["ours"], PALETTE["spike"], PALETTE["other"]]
    for ax, column, label in zip(
        axes,
        ("sink_ratio_edited_layers", "key0_mass_edited_layers", "perplexity"),
        ("sink ratio, edited layers (%)", "attention on key 0, edited layers", "held-out perplexity"),
    ):
        ax.bar(table["condition"], table[column], color=colors[: len(table)])
        drawn[column] = table.set_index("condition")[column]
        ax.set_ylabel(label)
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(f"{title} (blocks {table['blocks'].iloc[0]})", y=1.04)
    fig.tight_layout()
    save_figure(fig, path)
    return drawn
