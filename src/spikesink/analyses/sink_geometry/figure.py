"""Paper Fig. 6: t-SNE of queries and keys of a sink head and a non-sink head."""

from __future__ import annotations

import os
from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd

from spikesink.analyses.sink_geometry.result import SinkGeometry
from spikesink.analyses.unit import Job
from spikesink.reporting.plotting import PALETTE, apply_style, save_figure

KIND_STYLE = {
    "q(n)": dict(color=PALETTE["ours"], marker="o", label="q(n): non-sink queries"),
    "k(n)": dict(color=PALETTE["other"], marker="s", label="k(n): non-sink keys"),
    "k(s)": dict(color=PALETTE["spike"], marker="*", label="k(s): sink keys"),
}

ROLE_TITLE = {"sink": "sink head", "non_sink": "non-sink head"}


def draw(result: SinkGeometry, job: Job, paths: Mapping[str, os.PathLike]) -> dict:
    return {"": plot_tsne(result.tsne, paths[""], title=f"{job.model_name}: queries and keys (t-SNE)")}


def plot_tsne(tsne: pd.DataFrame, path: str | os.PathLike, title: str | None = None) -> dict:
    """Paper Fig 6: q(n), k(n), k(s) of the sink head (left) and the non-sink head (right).
    Returns the points drawn per head."""
    apply_style()
    drawn = {}
    roles = [role for role in ("sink", "non_sink") if role in set(tsne["role"])]
    fig, axes = plt.subplots(1, len(roles), figsize=(4.2 * len(roles), 4.0), squeeze=False)
    for ax, role in zip(axes[0], roles):
        part = tsne[tsne["role"] == role]
        drawn[role] = part[["kind", "x", "y"]].reset_index(drop=True)
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
    save_figure(fig, path)
    return drawn
