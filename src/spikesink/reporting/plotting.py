"""One plotting style for every figure: PDF + PNG, labelled axes, paper values overlaid in one look."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window (also on headless CI)
import matplotlib.pyplot as plt  # noqa: E402
from cycler import cycler  # noqa: E402

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


# seaborn's set_theme(context="paper", style="whitegrid", font_scale=1.1) written out: importing
# seaborn (scipy.stats with it) cost ~0.65 s of every figure job; tests/test_plotting.py checks that
# these values still equal seaborn's. Colormaps are named where used (no seaborn "rocket" default).
SEABORN_PAPER_WHITEGRID = {
    "axes.axisbelow": True,
    "axes.edgecolor": ".8",
    "axes.grid": True,
    "axes.labelcolor": ".15",
    "axes.labelsize": 10.56,
    "axes.linewidth": 1.0,
    "axes.prop_cycle": cycler(  # seaborn's "deep" palette
        color=[
            "#4c72b0",
            "#dd8452",
            "#55a868",
            "#c44e52",
            "#8172b3",
            "#937860",
            "#da8bc3",
            "#8c8c8c",
            "#ccb974",
            "#64b5cd",
        ]
    ),
    "axes.titlesize": 10.56,
    "font.sans-serif": ["Arial", "DejaVu Sans", "Liberation Sans", "Bitstream Vera Sans", "sans-serif"],
    "font.size": 10.56,
    "grid.color": ".8",
    "legend.fontsize": 9.68,
    "legend.title_fontsize": 10.56,
    "lines.linewidth": 1.2,
    "lines.markersize": 4.8,
    "lines.solid_capstyle": "round",
    "patch.edgecolor": "w",
    "patch.force_edgecolor": True,
    "patch.linewidth": 0.8,
    "text.color": ".15",
    "xtick.bottom": False,
    "xtick.color": ".15",
    "xtick.labelsize": 9.68,
    "xtick.major.size": 4.8,
    "xtick.major.width": 1.0,
    "xtick.minor.size": 3.2,
    "xtick.minor.width": 0.8,
    "ytick.color": ".15",
    "ytick.labelsize": 9.68,
    "ytick.left": False,
    "ytick.major.size": 4.8,
    "ytick.major.width": 1.0,
    "ytick.minor.size": 3.2,
    "ytick.minor.width": 0.8,
}


def apply_style() -> None:
    plt.rcParams.update(SEABORN_PAPER_WHITEGRID)
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
