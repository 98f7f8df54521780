"""Section 4 tables, the head-dimension figure and scorecard rows from finished ablation runs."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

from ..scorecard import Claim
from .evaluate import ablation_table, trend
from .variants import TABLE_NAMES, table_stem  # noqa: F401  (torch-free home, read by the workflow)

SECTION = "4 ablations"


def table_frame(metrics_list: list[dict], table: str) -> pd.DataFrame:
    """Rows of one paper table (and the baseline, which every table compares against)."""
    frame = ablation_table([m for m in metrics_list if m.get("table") in (table, "")])
    return frame.sort_values(["table", "n_heads", "d_head", "variant"], kind="stable").reset_index(drop=True)


def _rank_agreement(frame: pd.DataFrame, column: str) -> float:
    with_paper = frame.dropna(subset=[f"{column}_paper"])
    return trend(with_paper[f"{column}_paper"].to_numpy(float), with_paper[column].to_numpy(float))


def _fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.2f}"


def table_claims(frame: pd.DataFrame, table: str, preset: str) -> list[Claim]:
    """Spearman agreement with the paper's ordering, plus the table's qualitative claim."""
    claims = []
    model = f"ablations/{preset}"
    for column, label in (("sink_ratio", "sink ratio"), ("spike", "spike")):
        rho = _rank_agreement(frame, column)
        claims.append(Claim(SECTION, f"Table {table}: our {label} orders the variants as the paper's", model,
                            "Spearman rho = 1 with itself", f"rho = {_fmt(rho)} over {frame[f'{column}_paper'].notna().sum()} rows",
                            bool(not math.isnan(rho) and rho > 0), "rho > 0"))
    baseline = frame[frame["variant"] == "baseline"]
    if table == "6":
        # the d_head sweep at the baseline's head count: dhead-* rows plus the baseline's own d_head
        sweep = frame[frame["variant"].str.startswith("dhead-") | (frame["variant"] == "baseline")]
        sweep = sweep.drop_duplicates("d_head").sort_values("d_head")
        if len(sweep) >= 3:
            for column, label in (("sink_ratio", "sink ratio"), ("spike", "spike")):
                rho = trend(sweep["d_head"].to_numpy(float), sweep[column].to_numpy(float))
                claims.append(Claim(SECTION, f"{label} rises with d_head at fixed N_head", model,
                                    "rises (Table 6: sink 4.1 -> 46.0 %, spike 291 -> 3818 for d_head 8 -> 128)",
                                    f"Spearman(d_head, {label}) = {_fmt(rho)}; values "
                                    + ", ".join(f"{d:g}: {v:.3g}" for d, v in zip(sweep["d_head"], sweep[column])),
                                    bool(not math.isnan(rho) and rho > 0.5), "Spearman > 0.5"))
            # below the sink threshold (no head above eps) the ratio is flat at 0; the mean attention
            # on key 0 still shows whether attention drifts toward the first token as d_head grows
            rho = trend(sweep["d_head"].to_numpy(float), sweep["key0_mass_mean"].to_numpy(float))
            claims.append(Claim(SECTION, "attention on key 0 rises with d_head at fixed N_head (sink proxy)", model,
                                "sink ratio rises with d_head (Table 6)",
                                f"Spearman(d_head, mean key-0 attention) = {_fmt(rho)}; values "
                                + ", ".join(f"{d:g}: {v:.3f}" for d, v in zip(sweep["d_head"], sweep["key0_mass_mean"])),
                                bool(not math.isnan(rho) and rho > 0.5), "Spearman > 0.5"))
    if table == "5" and len(baseline):
        base = baseline.iloc[0]
        for _, row in frame[frame["variant"].str.startswith("norm-")].iterrows():
            holds = row["spike"] < 0.5 * base["spike"] and row["sink_ratio"] >= 0.5 * base["sink_ratio"]
            claims.append(Claim(SECTION, f"{row['variant']}: changing normalization removes spikes while sinks stay", model,
                                f"spike {row['spike_paper']} vs 3818, sink {row['sink_ratio_paper']} vs 46.0",
                                f"spike {row['spike']:.3g} vs {base['spike']:.3g}, sink {row['sink_ratio']:.3g} vs {base['sink_ratio']:.3g}",
                                bool(holds), "spike < 0.5x baseline and sink >= 0.5x baseline"))
    if table == "7" and len(baseline):
        base = baseline.iloc[0]
        for _, row in frame[frame["variant"].str.startswith("gate-cond")].iterrows():
            holds = row["sink_ratio"] < 0.5 * base["sink_ratio"]
            claims.append(Claim(SECTION, f"{row['variant']}: conditional gating removes sinks", model,
                                f"sink {row['sink_ratio_paper']} vs 46.0", f"sink {row['sink_ratio']:.3g} vs {base['sink_ratio']:.3g}",
                                bool(holds), "sink < 0.5x baseline"))
    return claims


def plot_head_dim(frame: pd.DataFrame, path: str | os.PathLike):
    """Table 6 as a figure: sink ratio (left, with our mean attention on key 0 on a twin axis) and
    spike (right) against d_head, ours beside the paper's (paper spikes scaled to our largest
    value, since scales differ ~100x)."""
    import matplotlib.pyplot as plt

    from ..plotting import OURS_STYLE, PAPER_STYLE, apply_style, save_figure

    apply_style()
    sweep = frame[frame["variant"].str.startswith("dhead-") | (frame["variant"] == "baseline")]
    sweep = sweep.drop_duplicates("d_head").sort_values("d_head")
    fig, (ax_sink, ax_spike) = plt.subplots(1, 2, figsize=(8.4, 3.4))
    d_head = sweep["d_head"].to_numpy(float)
    ax_sink.plot(d_head, sweep["sink_ratio"], label="ours", **OURS_STYLE)
    ax_sink.plot(d_head, sweep["sink_ratio_paper"], label="paper (Table 6)", **PAPER_STYLE)
    ax_sink.set_ylabel("sink ratio (%)")
    if "key0_mass_mean" in sweep:
        # below the sink threshold the ratio is flat; the mean attention on key 0 still moves
        ax_key0 = ax_sink.twinx()
        ax_key0.plot(d_head, sweep["key0_mass_mean"], color=OURS_STYLE["color"], linestyle=":", marker="s",
                     markersize=4, linewidth=1.2, label="ours: mean attention on key 0 (right)")
        ax_key0.set_ylabel("mean attention on key 0")
        ax_key0.grid(False)
    ours_spike = sweep["spike"].to_numpy(float)
    paper_spike = sweep["spike_paper"].to_numpy(float)
    scale = np.nanmax(ours_spike) / np.nanmax(paper_spike) if np.isfinite(np.nanmax(paper_spike)) else 1.0
    ax_spike.plot(d_head, ours_spike, label="ours", **OURS_STYLE)
    ax_spike.plot(d_head, paper_spike * scale, label=f"paper x {scale:.2g}", **PAPER_STYLE)
    ax_spike.set_ylabel("spike: max |h|")
    for ax in (ax_sink, ax_spike):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("head dimension d_head (fixed N_head)")
    # one legend per panel, the twin axis's line included
    handles = [h for a in fig.axes if a is not ax_spike for h in a.get_legend_handles_labels()[0]]
    top = np.nanmax(np.r_[sweep["sink_ratio"].to_numpy(float), sweep["sink_ratio_paper"].to_numpy(float), 1.0])
    ax_sink.set_ylim(-0.04 * top, 1.5 * top)  # head room for the legend
    fig.axes[-1].legend(handles=handles, fontsize=7, loc="upper left", framealpha=0.9)  # drawn above both axes' lines
    ax_spike.legend(fontsize=8)
    fig.suptitle("Head-dimension sweep (paper Table 6)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_training_curves(curves: dict[str, pd.DataFrame], path: str | os.PathLike):
    """Held-out metrics over training, one line per variant: does the sink (and the spike) emerge, and when?

    Panels: perplexity, sink ratio, mean attention on key 0 and the first-token spike (largest |h|
    at position 0 over the median |h| of that block's states), each against training tokens.
    """
    import matplotlib.pyplot as plt

    from ..plotting import apply_style, save_figure

    apply_style()
    panels = (
        ("eval_ppl", "held-out perplexity", "log"),
        ("eval_sink_ratio", "sink ratio (%), eps 0.3", "linear"),
        ("eval_key0_mass_mean", "mean attention on key 0", "linear"),
        ("eval_first_token_spike_to_median", "first-token spike / median |h|", "log"),
    )
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.3))
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(1, len(curves))))
    for color, (name, curve) in zip(colors, curves.items()):
        rows = curve.dropna(subset=["eval_ppl"])
        for ax, (column, label, scale) in zip(axes, panels):
            ax.plot(rows["tokens"] / 1e6, rows[column], color=color, linewidth=1.4, label=name)
            ax.set_ylabel(label)
            ax.set_yscale(scale)
    for ax in axes:
        ax.set_xlabel("training tokens (millions)")
    axes[1].axhline(20, color="#9e9e9e", linestyle=":", linewidth=1)
    axes[3].axhline(100, color="#9e9e9e", linestyle=":", linewidth=1)
    axes[0].legend(fontsize=7)
    fig.suptitle("Section 4 runs over training (held-out windows; dotted: 20 % sinks, 100x spike)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
