"""Table 2 and its picture: peak |h| of every vocabulary id at position 0 and after a prefix."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from spikesink.analyses.unit import Job
from spikesink.analyses.vocab_probe.result import VocabProbe
from spikesink.reporting.plotting import PALETTE, apply_style, save_figure


def draw(result: VocabProbe, job: Job, paths: Mapping[str, os.PathLike]) -> dict:
    return {"": plot_vocab_probe(result.frame, result.summary, paths[""], model=job.model_name)}


def summary_tables(results: Mapping[str, VocabProbe], jobs: Mapping[str, Job]) -> dict:
    rows = [
        {"model": name, "paper_model": jobs[name].paper_model, "summary": result.summary}
        for name, result in results.items()
    ]
    caption = "Table 2: vocabulary ids that become spike tokens alone at position 0, and after a neutral prefix."
    return {"table2_vocab_probe": (table2(rows), caption)}


def _log_bins(values: np.ndarray, n: int = 60) -> np.ndarray:
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size == 0:
        return np.logspace(-2, 1, n)
    low, high = np.log10(positive.min()), np.log10(positive.max())
    if high - low < 1e-6:
        low, high = low - 0.5, high + 0.5
    return np.logspace(low, high, n)


def plot_vocab_probe(frame: pd.DataFrame, summary: Mapping, path: str | os.PathLike, model: str = "") -> dict:
    """Table 2 as a picture: per-token peak |h| at position 0 vs after a prefix (log x).

    The massive thresholds are drawn as vertical lines: the floor and, when the probe used a
    reference median, median_ratio x the smallest reference median of the probed blocks (a
    token is a spike token when it is massive at some probed block). Returns what it drew: the
    histogram counts per series, the bin edges and the threshold lines.
    """
    apply_style()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    columns = [("peak_pos0", "position 0", PALETTE["spike"])]
    if "peak_later" in frame:
        columns.append(("peak_later", "after prefix", PALETTE["other"]))
    bins = _log_bins(np.concatenate([frame[c].to_numpy(dtype=float) for c, _, _ in columns]))
    drawn = {"bins": bins, "counts": {}, "lines": {"floor": float(summary["floor"])}}
    for column, label, color in columns:
        ratio = summary["ratio_pos0"] if column == "peak_pos0" else summary.get("ratio_later", float("nan"))
        drawn["counts"][column], _, _ = ax.hist(
            # both ends: 10 ** log10(max) may round below the max, which would then fall out
            frame[column].clip(lower=bins[0], upper=bins[-1]),
            bins=bins,
            color=color,
            alpha=0.7,
            label=f"{label}: {100 * ratio:.2f}% spike tokens",
        )
    ax.axvline(
        summary["floor"], color=PALETTE["median"], linestyle=":", linewidth=1, label=f"floor {summary['floor']:g}"
    )
    reference = summary.get("reference_median")
    if reference:
        threshold = summary["median_ratio"] * min(float(reference[b]) for b in summary["blocks"])
        drawn["lines"]["median_ratio x reference median"] = float(threshold)
        ax.axvline(
            threshold,
            color=PALETTE["median"],
            linestyle="--",
            linewidth=1,
            label=f"{summary['median_ratio']:g} x reference median",
        )
    low, high = paper_share_range()
    drawn["paper_share_pos0"] = (low, high)
    # the paper's Table 2 as a legend entry: a share, not a magnitude, so no line on this axis
    ax.plot([], [], " ", label=f"paper (Table 2, 7 models): {100 * low:.2f}-{100 * high:.2f}% at position 0")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("max |h| over probed blocks and channels")
    ax.set_ylabel("vocabulary items")
    ax.set_title(f"Vocabulary probe{' - ' + model if model else ''} ({summary['n_probed']:,} ids)")
    ax.legend(fontsize=8, frameon=True, framealpha=0.9)
    save_figure(fig, path)
    return drawn


def paper_share_range() -> tuple[float, float]:
    """The lowest and highest share of spike tokens at position 0 among the paper's Table 2 models."""
    from spikesink.reporting import paper

    shares = [ref["spike_tokens"] / ref["vocab"] for ref in paper.TABLE2.values()]
    return min(shares), max(shares)


def table2(rows: Sequence[Mapping]) -> pd.DataFrame:
    """Table 2 with the paper's rows beside ours. rows: dicts with model, paper_model, summary."""
    from spikesink.reporting import paper

    out, present = [], set()
    for row in rows:
        s, ref = row["summary"], paper.TABLE2.get(row.get("paper_model") or "")
        present.add(row.get("paper_model"))
        out.append(
            {
                "model": row["model"],
                "paper model": row.get("paper_model") or "-",
                "vocab": s["vocab_size"],
                "probed": s["n_probed"],
                "spike tokens pos 0": s["n_spike_pos0"],
                "ratio pos 0 (%)": 100 * s["ratio_pos0"],
                "ratio later (%)": 100 * s["ratio_later"] if "ratio_later" in s else None,
                "paper spike tokens": ref["spike_tokens"] if ref else None,
                "paper ratio (%)": 100 * ref["spike_tokens"] / ref["vocab"] if ref else None,
            }
        )
    for name, ref in paper.TABLE2.items():
        if name not in present:
            out.append(
                {
                    "model": "-",
                    "paper model": name,
                    "vocab": ref["vocab"],
                    "probed": None,
                    "spike tokens pos 0": None,
                    "ratio pos 0 (%)": None,
                    "ratio later (%)": None,
                    "paper spike tokens": ref["spike_tokens"],
                    "paper ratio (%)": 100 * ref["spike_tokens"] / ref["vocab"],
                }
            )
    return pd.DataFrame(out, dtype=object)  # object: counts stay integers beside the missing cells
