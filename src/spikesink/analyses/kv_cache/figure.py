"""Perplexity over position under sliding-window attention, and the summary table."""

from __future__ import annotations

import os
from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd

from spikesink.analyses.kv_cache.result import KVCache
from spikesink.analyses.unit import Job
from spikesink.reporting.plotting import PALETTE, apply_style, save_figure


def tables(result: KVCache, job: Job) -> dict:
    s, texts = job.settings, job.settings.n_texts
    caption = (
        f"{job.model_name}: perplexity of {texts} x {s.n_tokens} held-out tokens with every layer "
        f"attending through a window of {s.window} keys, keeping the first tokens or not, beside full attention"
    )
    return {"": (result.summary, caption)}


def draw(result: KVCache, job: Job, paths: Mapping[str, os.PathLike]) -> dict:
    return {"": plot_kv_cache(result.curve, result.summary, paths[""], job.model_name)}


def plot_kv_cache(curve: pd.DataFrame, summary: pd.DataFrame, path: str | os.PathLike, model: str = "") -> dict:
    """Perplexity per position bin, one line per condition, the window marked. Returns the lines drawn."""
    apply_style()
    drawn = {}
    fig, ax = plt.subplots(figsize=(7, 3.6))
    colors = [PALETTE["ours"], PALETTE["spike"], PALETTE["step_up"], PALETTE["step_down"], PALETTE["top2"]]
    for color, (name, rows) in zip(colors, curve.groupby("condition", sort=False)):
        ax.plot(rows["position"], rows["perplexity"], color=color, label=name, linewidth=1.4)
        drawn[name] = rows.set_index("position")["perplexity"]
    window = summary["window"].dropna()
    if len(window):
        ax.axvline(float(window.iloc[0]), color=PALETTE["median"], linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("position of the predicted token")
    ax.set_ylabel("perplexity per position bin (log)")
    ax.set_title(f"Sliding-window attention with kept first tokens{' - ' + model if model else ''}")
    ax.legend(fontsize=7, frameon=False)
    save_figure(fig, path)
    return drawn
