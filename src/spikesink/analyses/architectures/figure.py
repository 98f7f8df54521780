"""Every configured model's spike and sinks beside the paper's Table 5 (trained from scratch)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from spikesink.analyses.architectures.result import Architectures
from spikesink.analyses.unit import Job
from spikesink.reporting.plotting import PALETTE, apply_style, save_figure

PLACEMENT_COLOR = {
    "pre": PALETTE["ours"],
    "parallel": PALETTE["step_down"],
    "sandwich": PALETTE["step_up"],
    "post": PALETTE["top2"],
    "post_residual": PALETTE["top1"],
}

PAPER_TABLE5 = [
    ("pre-norm baseline", "pre", 3818, 46.0),
    ("sandwich", "sandwich", 520, 44.7),
    ("sandwich + QK-norm", "sandwich", 92, 42.0),
]


def tables(result: Architectures, job: Job) -> dict:
    caption = "Every configured model: norm placement, FFN, spike and sinks (beyond the paper; the real-weights view of Table 5)."
    return {"architectures": (result.table, caption)}


def draw(result: Architectures, job: Job, paths: Mapping[str, os.PathLike]) -> dict:
    return {"overview": plot_architectures(result.table, paths["overview"])}


def plot_architectures(frame: pd.DataFrame, path: str | os.PathLike) -> dict:
    """Peak/median and sink ratio per model, coloured by norm placement, beside the paper's Table 5.
    Returns the bars drawn and the paper's points."""
    apply_style()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    names = list(frame["model"])
    colors = [PLACEMENT_COLOR.get(p, PALETTE["other"]) for p in frame["norm placement"]]
    x = np.arange(len(names))
    axes[0].bar(x, frame["peak / median"], color=colors)
    axes[0].set_yscale("log")
    axes[0].axhline(1000, color=PALETTE["median"], linestyle=":", linewidth=1)
    axes[0].text(-0.4, 1000, " massive: 1000x median", va="bottom", fontsize=7, color=PALETTE["median"])
    axes[0].set_ylabel("peak |h| / median |h| (log)")
    axes[0].set_title("spike relative to the residual stream")
    axes[1].bar(x, frame["sink ratio (%)"], color=colors)
    axes[1].set_ylim(0, 100)
    axes[1].set_ylabel("sink ratio (%, eps 0.3)")
    axes[1].set_title("attention sinks")
    for ax in axes[:2]:
        ax.set_xticks(x, [f"{n}\n({f})" for n, f in zip(names, frame["family"])], rotation=30, ha="right", fontsize=7)
    paper = axes[2]
    for label, placement, spike, sink in PAPER_TABLE5:
        paper.scatter(spike, sink, color=PLACEMENT_COLOR[placement], marker="D", s=40)
        paper.annotate(label, (spike, sink), textcoords="offset points", xytext=(4, 4), fontsize=7)
    paper.set_xscale("log")
    paper.set_xlim(50, 10000)
    paper.set_ylim(0, 100)
    paper.set_xlabel("paper: spike max |h| (log)")
    paper.set_ylabel("paper: sink ratio (%)")
    paper.set_title("paper Table 5 (from scratch)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in PLACEMENT_COLOR.values()]
    fig.legend(
        handles,
        [f"{p} norm" for p in PLACEMENT_COLOR],
        loc="upper center",
        ncol=len(PLACEMENT_COLOR),
        frameon=False,
        bbox_to_anchor=(0.5, 1.06),
    )
    fig.tight_layout()
    save_figure(fig, path)
    return {
        "peak / median": frame.set_index("model")["peak / median"],
        "sink ratio (%)": frame.set_index("model")["sink ratio (%)"],
        "paper": pd.DataFrame(PAPER_TABLE5, columns=["label", "placement", "spike", "sink ratio (%)"]),
    }
