"""Fig. 5: the cosine matrices of the spike tokens before and after the step-up block."""

from __future__ import annotations

import os
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np

from spikesink.analyses.rmsnorm_collapse.result import Collapse
from spikesink.analyses.unit import Job
from spikesink.reporting.plotting import PALETTE, apply_style, placeholder_figure, save_figure


def draw(result: Collapse, job: Job, paths: Mapping[str, os.PathLike]) -> dict:
    if result.not_applicable:
        placeholder_figure(paths[""], f"Spike-token cosines - {job.model_name}", f"n/a: {result.not_applicable}")
        return {"": {}}
    return {"": plot_cosine_collapse(result.matrices, paths[""], job.model_name)}


def plot_cosine_collapse(matrices: Mapping[str, np.ndarray], path: str | os.PathLike, model: str = "") -> dict:
    """Fig 5: cosine matrices of spike tokens before / after the step-up block (and after the
    next RMSNorm), side by side, plus the distribution of their off-diagonal entries. Returns the
    matrices it drew, by panel."""
    names = [k for k in ("before", "after", "after_normed") if k in matrices and np.asarray(matrices[k]).size]
    if not names:
        placeholder_figure(
            path, f"Spike-token cosines{' - ' + model if model else ''}", "no spike token / no step-up block"
        )
        return {}
    apply_style()
    titles = {"before": "before step-up", "after": "after step-up", "after_normed": "after RMSNorm (weight)"}
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(3.3 * (len(names) + 1), 3.3))
    image = None
    for ax, name in zip(axes, names):
        image = ax.imshow(matrices[name], vmin=-1, vmax=1, cmap="RdBu_r", interpolation="nearest")
        ax.grid(False)
        ax.set_title(titles[name])
        ax.set_xlabel("spike token")
    axes[0].set_ylabel("spike token")
    if image is not None:
        fig.colorbar(image, ax=axes[: len(names)].tolist(), shrink=0.8, label="cosine")
    drawn = {name: np.asarray(matrices[name]) for name in names}
    dist = axes[-1]
    bins = np.linspace(-1, 1, 81)
    colors = {"before": PALETTE["other"], "after": PALETTE["spike"], "after_normed": PALETTE["top2"]}
    for name in names:
        m = matrices[name]
        off = m[~np.eye(m.shape[0], dtype=bool)]
        if off.size:
            dist.hist(off, bins=bins, alpha=0.6, color=colors[name], label=titles[name], density=True)
    other_after = matrices.get("other_after")
    if other_after is not None and other_after.size > 1:
        off = other_after[~np.eye(other_after.shape[0], dtype=bool)]
        dist.hist(
            off, bins=bins, histtype="step", color=PALETTE["median"], label="ordinary tokens, after", density=True
        )
    dist.set_xlabel("pairwise cosine")
    dist.set_ylabel("density")
    dist.legend(fontsize=7, frameon=False)
    fig.suptitle(f"Spike tokens collapse to one vector{' - ' + model if model else ''}")
    save_figure(fig, path)
    return drawn
