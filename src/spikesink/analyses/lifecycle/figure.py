"""Figure 1 / Figure 7 (the spike's life cycle over the 2L blocks) and Table 1."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from spikesink.analyses.lifecycle.result import Lifecycle
from spikesink.analyses.unit import Job
from spikesink.reporting import paper
from spikesink.reporting.plotting import PALETTE, apply_style, save_figure
from spikesink.results import OUTPUT, RESIDUAL, BlockStats


def draw(result: Lifecycle, job: Job, paths: Mapping[str, os.PathLike]) -> dict:
    fig = job.settings.figure
    return {
        "": plot_lifecycle(
            job["block_stats"],
            result,
            job.model_name,
            paths[""],
            fig.top_k,
            fig.show_median,
            fig.height,
            fig.width,
            paper_model=job.paper_model,
        )
    }


def summary_tables(results: Mapping[str, Lifecycle], jobs: Mapping[str, Job]) -> dict:
    rows = [table1_row(name, lc, jobs[name].paper_model) for name, lc in results.items()]
    caption = (
        "Table 1: blocks, step-up and step-down blocks (paper numbering: block 2l-1 = attention, 2l = FFN of layer l)."
    )
    return {"table1_step_up_down": (table1(rows), caption)}


def draw_summary(results: Mapping[str, Lifecycle], jobs: Mapping[str, Job], paths: Mapping[str, os.PathLike]) -> dict:
    items = [(name, jobs[name]["block_stats"], lc) for name, lc in results.items()]
    top_k = next(iter(jobs.values())).settings.figure.top_k
    return {"all_models": plot_lifecycle_grid(items, paths["all_models"], top_k=top_k)}


def _panel(ax, stats: BlockStats, kind: int, lc: Lifecycle, show_median: bool, top_k: int) -> pd.DataFrame:
    """Draw one panel; return what it drew: one column per line, indexed by block."""
    blocks = np.arange(1, stats.n_blocks + 1)
    top = stats.topk_abs[kind].mean(axis=1)  # (blocks, k): mean over prompts of the i-th largest
    drawn = {}
    for i in range(min(top_k, top.shape[1])):
        drawn[f"top-{i + 1}"] = top[:, i]
        ax.plot(
            blocks,
            top[:, i],
            color=PALETTE[f"top{i + 1}"] if i < 3 else None,
            marker="o",
            markersize=2.5,
            linewidth=1.2,
            label=f"top-{i + 1}",
        )
    if show_median:
        drawn["median"] = stats.median[kind].mean(axis=1)
        ax.plot(
            blocks,
            drawn["median"],
            color=PALETTE["median"],
            linestyle=":",
            linewidth=1.2,
            label="median",
        )
    for block in lc.step_up:
        ax.axvline(block, color=PALETTE["step_up"], linewidth=1.0, alpha=0.8)
    for block in lc.step_down:
        ax.axvline(block, color=PALETTE["step_down"], linewidth=1.0, alpha=0.8, linestyle="--")
    ax.set_yscale("log")
    ax.set_xlim(0.5, stats.n_blocks + 0.5)
    return pd.DataFrame(drawn, index=pd.Index(blocks, name="block"))


def plot_lifecycle(
    stats: BlockStats,
    lc: Lifecycle,
    title: str,
    path: str | os.PathLike,
    top_k: int = 3,
    show_median: bool = True,
    height: float = 5.2,
    width: float = 7.0,
    paper_model: str | None = None,
):
    """Top panel: top-k magnitudes of the post-residual state per block; bottom: of each block's
    output. Green solid lines: step-up blocks; purple dashed lines: step-down blocks (of the main
    stage; an earlier stage's dotted); the paper's step-up / step-down blocks of `paper_model`
    (Table 1) as triangles on the top axis. Returns what it drew: each panel's lines per block,
    and the marked blocks."""
    apply_style()
    fig, (top_ax, bottom_ax) = plt.subplots(2, 1, figsize=(width, height), sharex=True)
    drawn = {
        "post_residual": _panel(top_ax, stats, RESIDUAL, lc, show_median, top_k),
        "block_output": _panel(bottom_ax, stats, OUTPUT, lc, show_median, top_k),
        "step_up": list(lc.step_up),
        "step_down": list(lc.step_down),
        "earlier_stages": [(s["step_up"], s["step_down"]) for s in lc.stages if not s["main"]],
    }
    for up, down in drawn["earlier_stages"]:
        for ax in (top_ax, bottom_ax):
            for block in up:
                ax.axvline(block, color=PALETTE["step_up"], linewidth=1.0, linestyle=":", alpha=0.8)
            for block in down:
                ax.axvline(block, color=PALETTE["step_down"], linewidth=1.0, linestyle=":", alpha=0.8)
    reference = paper.TABLE1.get(paper_model or "")
    if reference:  # the paper's Table 1 blocks for the same model, on the top edge
        drawn["paper"] = {"step_up": reference["step_up"], "step_down": reference["step_down"]}
        for blocks, color in (
            (reference["step_up"], PALETTE["step_up"]),
            (reference["step_down"], PALETTE["step_down"]),
        ):
            top_ax.plot(
                blocks, [1.0] * len(blocks), "v", color=color, markersize=7, transform=top_ax.get_xaxis_transform()
            )
    top_ax.set_ylabel("|h| post-residual")
    bottom_ax.set_ylabel("|block output|")
    bottom_ax.set_xlabel("block (odd = attention, even = FFN)")
    channels = ", ".join(map(str, lc.spike_channels[:4])) or "none"
    top_ax.set_title(f"{title}: spike life cycle (channels {channels})", fontsize=10)
    handles, labels = top_ax.get_legend_handles_labels()
    handles += [
        plt.Line2D([], [], color=PALETTE["step_up"]),
        plt.Line2D([], [], color=PALETTE["step_down"], linestyle="--"),
    ]
    labels += [f"step-up {lc.step_up}", f"step-down {lc.step_down}"]
    if drawn["earlier_stages"]:
        handles.append(plt.Line2D([], [], color=PALETTE["step_up"], linestyle=":"))
        labels.append("earlier stage: " + "; ".join(f"up {u}, down {d}" for u, d in drawn["earlier_stages"]))
    if reference:
        handles.append(plt.Line2D([], [], color=PALETTE["paper"], marker="v", linestyle=""))
        labels.append(f"paper ({paper_model}): up {reference['step_up']}, down {reference['step_down']}")
    top_ax.legend(handles, labels, fontsize=7, loc="upper left", ncol=2, frameon=True)
    fig.tight_layout()
    save_figure(fig, path)
    return drawn


def plot_lifecycle_grid(items: list[tuple[str, BlockStats, Lifecycle]], path: str | os.PathLike, top_k: int = 3):
    """Figure 7: the post-residual life cycle of every configured model side by side; returns
    each model's drawn lines."""
    apply_style()
    drawn = {}
    n = len(items)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, (name, stats, lc) in zip(axes.flat, items):
        drawn[name] = _panel(ax, stats, RESIDUAL, lc, True, top_k)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("block")
        ax.set_ylabel("|h| post-residual")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path)
    return drawn


def table1_row(model: str, lc: Lifecycle, paper_model: str | None) -> dict:
    ref = paper.TABLE1.get(paper_model or "", {})
    return {
        "model": model,
        "paper model": paper_model or "-",
        "blocks": lc.n_blocks,
        "step-up": lc.step_up,
        "step-down": lc.step_down,
        "spike channels": lc.spike_channels,
        "peak |h|": lc.peak_magnitude,
        "peak block": lc.peak_block,
        "peak / median": lc.peak_median_ratio,
        "plateau": f"{lc.plateau[0]}-{lc.plateau[1]}" if lc.plateau else "-",
        "paper blocks": ref.get("blocks"),
        "paper step-up": ref.get("step_up"),
        "paper step-down": ref.get("step_down"),
    }


def paper_only_rows(models_present: set[str]) -> list[dict]:
    """The paper's rows for models this run did not evaluate, so Table 1 is always complete."""
    rows = []
    for name, ref in paper.TABLE1.items():
        if name in models_present:
            continue
        rows.append(
            {
                "model": "-",
                "paper model": name,
                "blocks": None,
                "step-up": None,
                "step-down": None,
                "spike channels": None,
                "peak |h|": None,
                "peak block": None,
                "peak / median": None,
                "plateau": "-",
                "paper blocks": ref["blocks"],
                "paper step-up": ref["step_up"],
                "paper step-down": ref["step_down"],
            }
        )
    return rows


def table1(rows: list[dict]) -> pd.DataFrame:
    present = {row["paper model"] for row in rows}
    return pd.DataFrame(rows + paper_only_rows(present))
