"""One plotting style for every figure: PDF + PNG, labelled axes, paper values overlaid in one look."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window (also on headless CI)
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from spikesink.io import atomic_path, output_stem, with_extension  # noqa: E402

PALETTE = {
    "top1": "#b2182b",
    "top2": "#ef8a62",
    "top3": "#fddbc7",
    "median": "#4d4d4d",
    "step_up": "#1a9850",
    "step_down": "#5e3c99",
    "ours": "#2166ac",
    "paper": "#d6604d",
    "spike": "#b2182b",
    "other": "#9e9e9e",
}
PAPER_STYLE = dict(color=PALETTE["paper"], marker="D", linestyle="--", linewidth=1.2, markersize=5)
OURS_STYLE = dict(color=PALETTE["ours"], marker="o", linestyle="-", linewidth=1.5, markersize=5)


def apply_style() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 200,
            "savefig.bbox": "tight",
            "axes.titleweight": "bold",
            "axes.spines.top": False,
            "axes.spines.right": False,
            # fixed metadata so that re-running a plot gives identical PDF bytes
            "pdf.compression": 6,
        }
    )


def save_figure(fig, path: str | os.PathLike) -> list[Path]:
    """Save `fig` as PDF and PNG next to each other (path may name either, or no suffix)."""
    base = output_stem(path)
    written = []
    for suffix, extra in (
        (".pdf", {"metadata": {"CreationDate": None, "ModDate": None}}),
        (".png", {"metadata": {"Software": None}}),
    ):
        target = with_extension(base, suffix)
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=suffix[1:], **extra)
        written.append(target)
    plt.close(fig)
    return written


def placeholder_figure(path: str | os.PathLike, title: str, message: str) -> list[Path]:
    """A labelled empty figure (e.g. 'n/a: ...'), so an analysis that does not apply to a model
    still writes every output file, saying why instead of drawing zeros."""
    apply_style()
    fig, ax = plt.subplots(figsize=(6.4, 2.4))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, wrap=True)
    ax.set_title(title)
    return save_figure(fig, path)
