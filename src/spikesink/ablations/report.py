"""Section 4 tables, the head-dimension figure and scorecard rows from finished ablation runs."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

from ..reporting.scorecard import Claim
from .variants import TABLE_NAMES, table_stem  # noqa: F401  (torch-free home, read by the workflow)

SECTION = "4 ablations (CPU scale)"

# the columns averaged over seeds (each also gets <column>_sd and <column>_seeds)
SEED_COLUMNS = ("ppl", "sink_ratio", "key0_mass_mean", "spike", "spike_to_median", "first_token_to_median")
DATA_LABELS = {
    "bigram_backcopy": "synthetic Bigram-Backcopy",
    "passages": "text corpus",
    "hf": "text (Hugging Face dataset)",
}


def _missing(value) -> bool:
    """None or a float NaN: an empty cell (a single seed has no sd, a variant may have no paper row)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def data_label(source: str | None) -> str:
    """What a claim was tested on, for the scorecard: synthetic language or text."""
    return DATA_LABELS.get(source or "passages", str(source))


# ----------------------------------------------------------------------------------------------
# one row per run, and the trend statistic


def ablation_table(metrics_list: list[dict]) -> pd.DataFrame:
    """One row per run (variant and seed): the paper's ppl / sink % / spike beside ours (metrics.json dicts of run_variant)."""
    rows = []
    for m in metrics_list:
        paper = m.get("paper") or {}
        cfg = m.get("model_config", {})
        rows.append(
            {
                "variant": m.get("variant"),
                "seed": (m.get("train_config") or {}).get("seed"),
                "data": (m.get("data") or {}).get("source"),
                "table": m.get("table"),
                "paper_setting": m.get("paper_setting"),
                "n_heads": cfg.get("n_heads"),
                "d_head": cfg.get("d_head"),
                "ppl_paper": paper.get("ppl"),
                "ppl": m["ppl"],
                "sink_ratio_paper": paper.get("sink_ratio"),
                "sink_ratio": m["sink_ratio"],
                "key0_mass_mean": m["key0_mass_mean"],
                "spike_paper": paper.get("spike"),
                "spike": m["spike"],
                "spike_to_median": m["spike_to_median"],
                "first_token_to_median": m.get("first_token_spike_to_median"),
                "spike_position": m["spike_position"],
                "spike_block": m["spike_block"],
            }
        )
    return pd.DataFrame(rows)


def trend(xs, ys) -> float:
    """Spearman rank correlation of ys with xs (the sign says whether a paper trend holds); NaN if undefined."""
    from scipy.stats import spearmanr

    if len(xs) < 3 or np.ptp(np.asarray(xs, float)) == 0 or np.ptp(np.asarray(ys, float)) == 0:
        return float("nan")  # constant input: no ordering to compare
    rho = spearmanr(xs, ys).statistic
    return float(rho)


def aggregate_seeds(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per variant from one row per (variant, seed): the mean over seeds of every measured
    column, its sample standard deviation (`<column>_sd`, NaN with one seed), the per-seed values
    (`<column>_seeds`, a string) and `n_seeds`. Paper columns and settings are the variant's own."""
    rows = []
    for _variant, group in runs.groupby("variant", sort=False):
        group = group.sort_values("seed", kind="stable") if "seed" in group else group
        row = group.iloc[0].drop(labels=[c for c in ("seed",) if c in group]).to_dict()
        row["n_seeds"] = len(group)
        row["seeds"] = ",".join(str(s) for s in group["seed"]) if "seed" in group else ""
        for column in SEED_COLUMNS:
            if column not in group:
                continue
            values = group[column].astype(float)
            row[column] = float(values.mean())
            row[f"{column}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
            row[f"{column}_seeds"] = " / ".join(f"{v:.3g}" for v in values)
        rows.append(row)
    return pd.DataFrame(rows)


def table_frame(metrics_list: list[dict], table: str) -> pd.DataFrame:
    """Rows of one paper table (and the baseline, which every table compares against), seeds averaged."""
    runs = ablation_table([m for m in metrics_list if m.get("table") in (table, "")])
    frame = aggregate_seeds(runs)
    return frame.sort_values(["table", "n_heads", "d_head", "variant"], kind="stable").reset_index(drop=True)


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as printed (md / tex): paper beside ours, seed mean +- sd in one cell; the CSV keeps
    every column (per-seed values, sds, positions)."""

    def cell(row, column, digits):
        value = row[column]
        if _missing(value):
            return ""
        sd = row.get(f"{column}_sd")
        text = f"{value:.{digits}f}"
        return text + ("" if _missing(sd) else f" +- {sd:.{digits}f}")

    rows = []
    for _, row in frame.iterrows():
        rows.append(
            {
                "variant": row["variant"],
                "paper setting": row.get("paper_setting") or "",
                "heads x d_head": f"{row['n_heads']} x {row['d_head']}",
                "seeds": int(row.get("n_seeds", 1) or 1),
                "ppl paper": row.get("ppl_paper"),
                "ppl": cell(row, "ppl", 2),
                "sink % paper": row.get("sink_ratio_paper"),
                "sink %": cell(row, "sink_ratio", 1),
                "sink % per seed": row.get("sink_ratio_seeds", ""),
                "key-0 attention": cell(row, "key0_mass_mean", 3),
                "spike paper": row.get("spike_paper"),
                "spike max abs(h)": cell(row, "spike", 1),
                "first-token / median": cell(row, "first_token_to_median", 1),
            }
        )
    return pd.DataFrame(rows)


def write_ablation_table(frame: pd.DataFrame, stem, caption: str) -> None:
    """stem.csv with every column, stem.md / stem.tex as display_frame prints them."""
    from ..reporting.tables import write_table

    write_table(frame, stem, caption=caption, formats=("csv",))
    write_table(display_frame(frame), stem, caption=caption, formats=("md", "tex"))


def _rank_agreement(frame: pd.DataFrame, column: str) -> float:
    with_paper = frame.dropna(subset=[f"{column}_paper"])
    return trend(with_paper[f"{column}_paper"].to_numpy(float), with_paper[column].to_numpy(float))


def _fmt(x: float) -> str:
    return "n/a" if _missing(x) else f"{x:+.2f}"


def _sd(row, column: str) -> float:
    value = row.get(f"{column}_sd", float("nan"))
    return 0.0 if _missing(value) else float(value)


def _value(row, column: str) -> str:
    """'mean +- sd (n seeds)' or the single value."""
    n = int(row.get("n_seeds", 1) or 1)
    if n > 1:
        return f"{row[column]:.3g} +- {_sd(row, column):.2g} ({n} seeds)"
    return f"{row[column]:.3g}"


def _beyond(row, base, column: str, factor: float, direction: str) -> bool:
    """Is row's mean `direction` ('below' / 'above') factor x the baseline's mean by more than the seeds'
    combined sd? (With one seed each, the plain comparison; 'above' accepts equality then.) 'Above'
    needs something to keep: a baseline mean above zero by more than its own sd."""
    if direction == "above" and not float(base[column]) > _sd(base, column):
        return False
    threshold, margin = factor * float(base[column]), _sd(row, column) + factor * _sd(base, column)
    diff = float(row[column]) - threshold if direction == "above" else threshold - float(row[column])
    return diff > margin if margin > 0 or direction == "below" else diff >= 0


SPREAD = "on the seed means, by more than the seeds' combined sd"
# a first-token spike to test spike-side claims on: position 0's largest |h| at least this many times
# its block's median (the paper's massive activations are ~1000x; CPU-scale text reaches 20-100x)
SPIKE_MIN_TO_MEDIAN = 10.0
# the sink-side claims need a sink: the search's criterion, a held-out sink ratio of 20 % at the baseline
SINK_MIN_RATIO = 20.0


def table_claims(frame: pd.DataFrame, table: str, preset: str) -> list[Claim]:
    """The table's claims, each labelled with the data it was tested on (the `model` column).

    Spearman agreement with the paper's ordering (sink ratio, spike) for every table, then the
    table's own qualitative claims: Table 3 (weight decay and learning rate), 4 (FFN type and the
    spike), 5 (normalization: spike falls, sinks stay), 6 (head dimension and count), 7 (gating) and
    8 (loss positions). Sign claims compare seed means and must clear the seeds' spread.
    """
    claims = []
    sources = frame["data"].dropna().unique() if "data" in frame else []
    model = f"ablations/{preset} ({', '.join(data_label(s) for s in sources) or data_label(None)})"

    def claim(text, paper, ours, holds, tolerance):
        claims.append(Claim(SECTION, f"Table {table}: {text}", model, paper, ours, bool(holds), tolerance))

    baseline = frame[frame["variant"] == "baseline"]
    base = baseline.iloc[0] if len(baseline) else None  # comparisons with the baseline need it configured
    # the spike-side claims need a spike: position 0 standing out from its block's median at the
    # baseline (or, without one, in some variant)
    first_token = (
        frame["first_token_to_median"].astype(float) if "first_token_to_median" in frame else pd.Series([np.nan])
    )
    reference = (
        float(base["first_token_to_median"])
        if base is not None and "first_token_to_median" in base
        else float(first_token.max())
    )
    has_spike = not math.isnan(reference) and reference >= SPIKE_MIN_TO_MEDIAN
    sink_reference = float(base["sink_ratio"]) if base is not None else float(frame["sink_ratio"].astype(float).max())
    has_sink = not math.isnan(sink_reference) and sink_reference >= SINK_MIN_RATIO
    tested = {"spike": has_spike, "sink_ratio": has_sink}
    for column, label in (("sink_ratio", "sink ratio"), ("spike", "spike")):
        if not tested[column] or frame[f"{column}_paper"].notna().sum() < 3:
            continue  # nothing formed to order, or too few paper rows for a rank correlation
        rho = _rank_agreement(frame, column)
        claim(
            f"our {label} orders the variants as the paper's",
            "Spearman rho = 1 with itself",
            f"rho = {_fmt(rho)} over {frame[f'{column}_paper'].notna().sum()} rows",
            not math.isnan(rho) and rho > 0,
            "rho > 0",
        )
    if not has_spike and table in ("3", "4", "5", "6"):
        claim(
            "a first-token spike forms at the baseline (what the spike-side claims of this table need)",
            "spike 3818 at the baseline (massive: > 100 and ~1000x the median)",
            f"position 0's largest abs(h) is {reference:.3g}x its block's median: no spike, the spike-side claims are not tested",
            False,
            f"first-token max abs(h) >= {SPIKE_MIN_TO_MEDIAN:g}x the median",
        )
    if not has_sink:
        claim(
            "a sink forms at the baseline (what the sink-side claims of this table need)",
            "sink ratio 46.0 % at the baseline",
            f"sink ratio {sink_reference:.3g} % at the baseline: no sink, the sink-side claims are not tested",
            False,
            f"sink ratio >= {SINK_MIN_RATIO:g} %",
        )
    rows = {r["variant"]: r for _, r in frame.iterrows()}
    paper_base = 46.0 if base is None or base.get("sink_ratio_paper") is None else float(base["sink_ratio_paper"])

    def versus(name: str, column: str, factor: float, direction: str, text: str, paper: str):
        if name not in rows or base is None or not tested.get(column, True):
            return
        row = rows[name]
        label = "sink ratio" if column == "sink_ratio" else "spike"
        claim(
            f"{name}: {text}",
            paper,
            f"{label} {_value(row, column)} vs baseline {_value(base, column)}",
            _beyond(row, base, column, factor, direction),
            f"{direction} {factor:g}x baseline {SPREAD}",
        )

    def rises(names: list[str], x_column: str, y_column: str, text: str, paper: str):
        sweep = frame[frame["variant"].isin(names)].sort_values(x_column)
        if len(sweep) < 3 or not tested.get(y_column, True):
            return
        rho = trend(sweep[x_column].to_numpy(float), sweep[y_column].to_numpy(float))
        values = ", ".join(f"{x:g}: {v:.3g}" for x, v in zip(sweep[x_column], sweep[y_column]))
        claim(
            text,
            paper,
            f"Spearman({x_column}, {y_column}) = {_fmt(rho)}; means {values}",
            not math.isnan(rho) and rho > 0.5,
            "Spearman > 0.5 on the seed means",
        )

    if table == "3":
        versus(
            "wd-0",
            "sink_ratio",
            1.0,
            "below",
            "weight decay raises sinks (none: fewer)",
            "sink 33.8 vs 46.0 (wd 0 vs 0.1)",
        )
        versus(
            "wd-5x",
            "sink_ratio",
            1.0,
            "above",
            "weight decay raises sinks (5x: more)",
            "Gu et al. 2025: 41 % vs 18 % (wd 0.5 vs 0.1)",
        )
        versus("wd-0", "spike", 1.0, "above", "no weight decay gives a bigger spike", "spike 12275 vs 3818")
        for name, paper in (("lr-025x", "sink 18.6 vs 46.0"), ("lr-05x", "sink 31.8 vs 46.0")):
            versus(name, "sink_ratio", 1.0, "below", "too small a learning rate suppresses sinks", paper)
        factors = {"lr-025x": 0.25, "lr-05x": 0.5, "baseline": 1.0, "lr-2x": 2.0}
        lr_frame = frame[frame["variant"].isin(factors)]
        if len(lr_frame) >= 3 and has_sink:
            lr = lr_frame["variant"].map(factors).to_numpy(float)
            rho = trend(lr, lr_frame["sink_ratio"].to_numpy(float))
            claim(
                "sink ratio rises with the learning rate up to 2x the baseline's",
                "18.6 / 31.8 / 46.0 / 51.5 % for lr x0.25 / x0.5 / x1 / x2",
                f"Spearman(lr, sink ratio) = {_fmt(rho)}; means "
                + ", ".join(f"x{a:g}: {b:.3g}" for a, b in sorted(zip(lr, lr_frame["sink_ratio"]))),
                not math.isnan(rho) and rho > 0.5,
                "Spearman > 0.5 on the seed means",
            )
    if table == "4":
        for name, factor, paper in (
            ("ffn-gelu", 1.0, "spike 3369 vs 3818"),
            ("ffn-linear", 0.5, "spike 688 vs 3818"),
            ("ffn-attn-only", 0.5, "spike 637 vs 3818"),
        ):
            versus(name, "spike", factor, "below", "the spike is smaller without the gated (SwiGLU) amplifier", paper)
    if table == "5":
        for name in [n for n in rows if n.startswith("norm-")]:
            row = rows[name]
            versus(
                name,
                "spike",
                0.5,
                "below",
                "changing normalization removes the spike",
                f"spike {row['spike_paper']} vs 3818",
            )
            versus(
                name,
                "sink_ratio",
                0.5,
                "above",
                "changing normalization keeps the sinks",
                f"sink {row['sink_ratio_paper']} vs 46.0",
            )
    if table == "6":
        dhead = [n for n in rows if n.startswith("dhead-")] + ["baseline"]
        sweep = frame[frame["variant"].isin(dhead)].drop_duplicates("d_head")
        for column, label in (("sink_ratio", "sink ratio"), ("spike", "spike")):
            rises(
                list(sweep["variant"]),
                "d_head",
                column,
                f"{label} rises with d_head at fixed N_head",
                "rises (Table 6: sink 4.1 -> 46.0 %, spike 291 -> 3818 for d_head 8 -> 128)",
            )
        # below the sink threshold the ratio is flat at 0; the mean attention on key 0 still moves
        rises(
            list(sweep["variant"]),
            "d_head",
            "key0_mass_mean",
            "attention on key 0 rises with d_head at fixed N_head (sink proxy)",
            "sink ratio rises with d_head (Table 6)",
        )
        nhead = [n for n in rows if n.startswith("nhead-")] + ["baseline"]
        rises(
            nhead,
            "n_heads",
            "sink_ratio",
            "sink ratio rises with N_head at fixed d_head",
            "rises (Table 6: 37.1 / 41.7 / 46.0 % for N_head 8 / 16 / 32)",
        )
        width = None if base is None else base["n_heads"] * base["d_head"]
        fixed = [n for n in rows if n.startswith("heads-") and rows[n]["n_heads"] * rows[n]["d_head"] == width] + [
            "baseline"
        ]
        rises(
            fixed,
            "n_heads",
            "sink_ratio",
            "at fixed width, sink ratio rises with N_head (smaller heads)",
            "rises (Table 6, width 4096: 11.0 / 30.8 / 41.1 / 44.1 / 52.1 % for N_head 8 / 16 / 32 / 64 / 256)",
        )
    if table in ("7", "8"):
        # the paper's own row says whether the change removes the sink (< 0.5x its baseline) or keeps it
        for name, row in rows.items():
            if name == "baseline" or row.get("sink_ratio_paper") is None or math.isnan(float(row["sink_ratio_paper"])):
                continue
            removes = float(row["sink_ratio_paper"]) < 0.5 * paper_base
            what = (
                ("conditional gating removes the sink" if name.startswith("gate-cond") else "the gate keeps the sink")
                if table == "7"
                else ("loss only on late positions collapses the sink" if removes else "the sink stays")
            )
            if table == "7" and name.startswith("gate-cond") and not removes:
                what = "a conditional single gate keeps most of the sink"
            versus(
                name,
                "sink_ratio",
                0.5,
                "below" if removes else "above",
                what,
                f"sink {row['sink_ratio_paper']} vs {paper_base}",
            )
    return claims


def plot_head_dim(frame: pd.DataFrame, path: str | os.PathLike):
    """Table 6 as a figure: sink ratio (left, with our mean attention on key 0 on a twin axis) and
    spike (right) against d_head, ours beside the paper's (paper spikes scaled to our largest
    value, since scales differ ~100x)."""
    import matplotlib.pyplot as plt

    from ..reporting.plotting import OURS_STYLE, PAPER_STYLE, apply_style, save_figure

    apply_style()
    sweep = frame[frame["variant"].str.startswith("dhead-") | (frame["variant"] == "baseline")]
    sweep = sweep.drop_duplicates("d_head").sort_values("d_head")
    fig, (ax_sink, ax_spike) = plt.subplots(1, 2, figsize=(8.4, 3.4))
    d_head = sweep["d_head"].to_numpy(float)
    ax_sink.errorbar(
        d_head,
        sweep["sink_ratio"],
        yerr=_sd_column(sweep, "sink_ratio"),
        capsize=3,
        label=_ours_label(sweep),
        **OURS_STYLE,
    )
    ax_sink.plot(d_head, sweep["sink_ratio_paper"], label="paper (Table 6)", **PAPER_STYLE)
    ax_sink.set_ylabel("sink ratio (%)")
    if "key0_mass_mean" in sweep:
        # below the sink threshold the ratio is flat; the mean attention on key 0 still moves
        ax_key0 = ax_sink.twinx()
        ax_key0.plot(
            d_head,
            sweep["key0_mass_mean"],
            color=OURS_STYLE["color"],
            linestyle=":",
            marker="s",
            markersize=4,
            linewidth=1.2,
            label="ours: mean attention on key 0 (right)",
        )
        ax_key0.set_ylabel("mean attention on key 0")
        ax_key0.grid(False)
    ours_spike = sweep["spike"].to_numpy(float)
    paper_spike = sweep["spike_paper"].to_numpy(float)
    scale = np.nanmax(ours_spike) / np.nanmax(paper_spike) if np.isfinite(np.nanmax(paper_spike)) else 1.0
    ax_spike.errorbar(
        d_head, ours_spike, yerr=_sd_column(sweep, "spike"), capsize=3, label=_ours_label(sweep), **OURS_STYLE
    )
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


def _sd_column(frame: pd.DataFrame, column: str):
    """The seed sd of a column as error bars (None with one seed per variant)."""
    if f"{column}_sd" not in frame or frame[f"{column}_sd"].isna().all():
        return None
    return frame[f"{column}_sd"].fillna(0.0).to_numpy(float)


def _ours_label(frame: pd.DataFrame) -> str:
    n = int(frame["n_seeds"].max()) if "n_seeds" in frame and len(frame) else 1
    return f"ours (mean +- sd, {n} seeds)" if n > 1 else "ours"


def plot_table(frame: pd.DataFrame, table: str, path: str | os.PathLike, data: str = ""):
    """Any Section 4 table as a figure, one group of bars per variant (baseline first):
    sink ratio (ours: seed mean +- sd, each seed a dot; the paper's beside), mean attention on key 0
    (ours), and the spike relative to each one's baseline (max abs(h) / baseline's, log scale), since
    absolute spikes differ ~100x between the paper's 7B model and ours."""
    import matplotlib.pyplot as plt

    from ..reporting.plotting import PALETTE, apply_style, save_figure

    apply_style()
    frame = pd.concat([frame[frame["variant"] == "baseline"], frame[frame["variant"] != "baseline"]], ignore_index=True)
    x = np.arange(len(frame))
    width = 0.38
    fig, axes = plt.subplots(1, 3, figsize=(max(9.0, 2.0 + 1.3 * len(frame)), 3.6))
    ax_sink, ax_key0, ax_spike = axes

    def seed_dots(ax, column, offset, scale=1.0):
        for xi, values in zip(x, frame.get(f"{column}_seeds", pd.Series([""] * len(frame)))):
            if isinstance(values, str) and "/" in values:
                ys = [float(v) * scale for v in values.split(" / ")]
                ax.plot([xi + offset] * len(ys), ys, "o", color="black", markersize=2.5, zorder=3)

    ax_sink.bar(x - width / 2, frame["sink_ratio_paper"].astype(float), width, color=PALETTE["paper"], label="paper")
    ax_sink.bar(
        x + width / 2,
        frame["sink_ratio"],
        width,
        yerr=_sd_column(frame, "sink_ratio"),
        capsize=2,
        color=PALETTE["ours"],
        label=_ours_label(frame),
    )
    seed_dots(ax_sink, "sink_ratio", width / 2)
    ax_sink.set_ylabel("sink ratio (%), eps 0.3")
    ax_key0.bar(
        x, frame["key0_mass_mean"], 0.6, yerr=_sd_column(frame, "key0_mass_mean"), capsize=2, color=PALETTE["ours"]
    )
    seed_dots(ax_key0, "key0_mass_mean", 0.0)
    ax_key0.set_ylabel("ours: mean attention on key 0")
    base = frame[frame["variant"] == "baseline"]
    if len(base):
        ours_base, paper_base = float(base["spike"].iloc[0]), float(base["spike_paper"].iloc[0] or np.nan)
        ax_spike.bar(
            x - width / 2, frame["spike_paper"].astype(float) / paper_base, width, color=PALETTE["paper"], label="paper"
        )
        sd = _sd_column(frame, "spike")
        ax_spike.bar(
            x + width / 2,
            frame["spike"] / ours_base,
            width,
            yerr=None if sd is None else sd / ours_base,
            capsize=2,
            color=PALETTE["ours"],
            label="ours",
        )
        seed_dots(ax_spike, "spike", width / 2, 1.0 / ours_base)
        ax_spike.axhline(1.0, color="#9e9e9e", linestyle=":", linewidth=1)
        ax_spike.set_yscale("log")
    ax_spike.set_ylabel("spike (max abs(h)) / baseline's")
    for ax in axes:
        ax.set_xticks(x)
        ax.set_xticklabels(frame["variant"], rotation=40, ha="right", fontsize=7)
    ax_sink.legend(fontsize=7)
    title = f"Paper Table {table} ({TABLE_NAMES.get(table, '')})" + (f" on {data}" if data else "")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_training_curves(curves: dict[str, pd.DataFrame | list[pd.DataFrame]], path: str | os.PathLike):
    """Held-out metrics over training, one colour per variant (a list of curves: one line per seed):
    does the sink (and the spike) emerge, and when?

    Panels: perplexity, sink ratio, mean attention on key 0 and the first-token spike (largest |h|
    at position 0 over the median |h| of that block's states), each against training tokens.
    """
    import matplotlib.pyplot as plt

    from ..reporting.plotting import apply_style, save_figure

    apply_style()
    panels = (
        ("eval_ppl", "held-out perplexity", "log"),
        ("eval_sink_ratio", "sink ratio (%), eps 0.3", "linear"),
        ("eval_key0_mass_mean", "mean attention on key 0", "linear"),
        ("eval_first_token_spike_to_median", "first-token spike / median |h|", "log"),
    )
    many = len(curves) > 8  # then distinct colours and the legend beside the panels
    fig, axes = plt.subplots(1, 4, figsize=(16.5 if many else 14, 3.3 if len(curves) <= 24 else 4.5))
    colors = (
        plt.cm.tab20(np.linspace(0, 1, 20))[np.arange(len(curves)) % 20]
        if many
        else plt.cm.viridis(np.linspace(0, 0.9, max(1, len(curves))))
    )
    for color, (name, runs) in zip(colors, curves.items()):
        for i, curve in enumerate(runs if isinstance(runs, (list, tuple)) else [runs]):  # one line per seed, one colour
            rows = curve.dropna(subset=["eval_ppl"])
            for ax, (column, label, scale) in zip(axes, panels):
                ax.plot(
                    rows["tokens"] / 1e6,
                    rows[column],
                    color=color,
                    linewidth=1.4 if i == 0 else 0.9,
                    alpha=1.0 if i == 0 else 0.6,
                    label=name if i == 0 else None,
                )
                ax.set_ylabel(label)
                ax.set_yscale(scale)
    for ax in axes:
        ax.set_xlabel("training tokens (millions)")
    axes[1].axhline(20, color="#9e9e9e", linestyle=":", linewidth=1)
    axes[3].axhline(100, color="#9e9e9e", linestyle=":", linewidth=1)
    if many:
        axes[-1].legend(
            *axes[0].get_legend_handles_labels(),
            fontsize=6,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.05),
            ncol=1 + len(curves) // 24,
        )
    else:
        axes[0].legend(fontsize=7)
    fig.suptitle("Section 4 runs over training (held-out windows; dotted: 20 % sinks, 100x spike)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def write_preset_tables(preset_dir: str | os.PathLike, out: str | os.PathLike, preset: str | None = None) -> list[str]:
    """Every paper table of the finished runs under <preset_dir>/<variant>/seed<N>/metrics.json, as the
    workflow writes them (tables, claims, a figure per table, the head-dimension figure), into `out`.

    For rebuilding one preset's outputs outside Snakemake (e.g. while another preset runs there);
    returns the table stems written.
    """
    from pathlib import Path

    from ..io import read_json
    from ..reporting.scorecard import write_claims

    preset_dir, out = Path(preset_dir), Path(out)
    preset = preset or preset_dir.name
    metrics = [read_json(p) for p in sorted(preset_dir.glob("*/seed*/metrics.json"))]
    stems = []
    for table in sorted({m["table"] for m in metrics if m.get("table")}):
        frame = table_frame(metrics, table)
        data = ", ".join(data_label(s) for s in frame["data"].dropna().unique())
        stem = table_stem(table)
        write_ablation_table(
            frame,
            out / stem,
            caption=f"Table {table} on {data}, preset {preset}: ours (mean +- sd over seeds) beside the paper's.",
        )
        write_claims(out / "claims" / f"{stem}.json", table_claims(frame, table, preset))
        plot_table(frame, table, out / f"{stem}.pdf", data)
        if table == "6":
            plot_head_dim(frame, out / "head_dim.pdf")
        stems.append(stem)
    return stems


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=write_preset_tables.__doc__.splitlines()[0])
    parser.add_argument("preset_dir", help="results/ablations/<preset>")
    parser.add_argument("--out", required=True, help="folder for the tables, claims/ and figures")
    args = parser.parse_args()
    print(", ".join(write_preset_tables(args.preset_dir, args.out)))
