"""Section 4 tables, the head-dimension figure and scorecard rows from finished ablation runs."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

from ..reporting.scorecard import Claim
from .claims import Thresholds, claim_thresholds, evaluate, seed_estimate
from .variants import TABLE_NAMES, table_stem  # noqa: F401  (torch-free home, read by the workflow)

# the columns averaged over seeds (each also gets <column>_sd, <column>_seeds and the 95 % bootstrap
# interval of the seed mean, <column>_low / <column>_high); sink_slot_share only where a run has a slot
SEED_COLUMNS = (
    "ppl",
    "sink_ratio",
    "key0_mass_mean",
    "spike",
    "spike_to_median",
    "first_token_to_median",
    "sink_slot_share",
)
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
                # the remedies table: the literature's first-token attention, the learned sink's share
                **({"key0_mass_paper": paper["key0_mass"]} if "key0_mass" in paper else {}),
                **({"sink_slot_share": m["sink_slot_share"]} if m.get("sink_slot_share") is not None else {}),
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
            finite = values.dropna().to_numpy(float)
            est = seed_estimate([finite], lambda m: m[:, 0]) if len(finite) else None
            row[f"{column}_low"] = est.low if est is not None and est.has_interval else float("nan")
            row[f"{column}_high"] = est.high if est is not None and est.has_interval else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def runs_from_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, seed) back from a written table (`table<N>_*.csv`: one row per variant, each
    seed's value in `<column>_seeds`, at 3 significant digits): to re-score archived tables without their runs."""
    rows = []
    for _, row in frame.iterrows():
        seeds = [s for s in str(row.get("seeds", "")).split(",") if s.strip() not in ("", "nan")]
        kept = {
            k: v
            for k, v in row.items()
            if not k.endswith(("_sd", "_seeds", "_low", "_high")) and k not in ("n_seeds", "seeds")
        }
        for i in range(int(row.get("n_seeds", 1) or 1)):
            run = {**kept, "seed": int(float(seeds[i])) if i < len(seeds) else i}
            for column in SEED_COLUMNS:
                values = row.get(f"{column}_seeds")
                if isinstance(values, str) and values:
                    run[column] = float(values.split(" / ")[i])
                elif not _missing(values):
                    run[column] = float(values)  # one seed: read back as a number
            rows.append(run)
    runs = pd.DataFrame(rows)
    runs["table"] = runs["table"].map(_table_id)
    return runs


def _table_id(value) -> str:
    """A table id read back from a CSV: '' (the baseline), '3'..'8' (read as numbers), or a name ('remedies')."""
    if _missing(value) or value == "":
        return ""
    try:
        return str(int(float(value)))
    except ValueError:
        return str(value)


def table_frame(metrics_list: list[dict], table: str) -> pd.DataFrame:
    """Rows of one paper table (and the baseline, which every table compares against), seeds averaged."""
    runs = ablation_table([m for m in metrics_list if m.get("table") in (table, "")])
    frame = aggregate_seeds(runs)
    return frame.sort_values(["table", "n_heads", "d_head", "variant"], kind="stable").reset_index(drop=True)


# the remedies table as printed: (column, label, digits, the literature's column or None); each cell
# the seed mean with its 95 % bootstrap interval over seeds
REMEDY_COLUMNS = (
    ("sink_ratio", "sink %", 1, "sink_ratio_paper"),
    ("key0_mass_mean", "key-0 mass", 3, "key0_mass_paper"),
    ("sink_slot_share", "learned-sink share", 3, None),
    ("first_token_to_median", "first-token spike / median", 1, None),
    ("spike", "max abs(h)", 1, "spike_paper"),
    ("ppl", "ppl", 2, "ppl_paper"),
)


def _interval_cell(row, column: str, digits: int) -> str:
    """'12.3 [4.5, 20.1]': the seed mean and its 95 % bootstrap interval (the mean alone with one seed)."""
    value = row.get(column)
    if _missing(value):
        return ""
    low, high = row.get(f"{column}_low"), row.get(f"{column}_high")
    text = f"{value:.{digits}f}"
    return text if _missing(low) or _missing(high) else f"{text} [{low:.{digits}f}, {high:.{digits}f}]"


def remedy_display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The remedies table as printed: per remedy, each REMEDY_COLUMNS cell with its interval and the
    literature's number beside it where one is published (its source in the last column)."""
    rows = []
    for _, row in frame.iterrows():
        cells = {"remedy": row["variant"], "seeds": int(row.get("n_seeds", 1) or 1)}
        for column, label, digits, paper in REMEDY_COLUMNS:
            cells[label] = _interval_cell(row, column, digits)
            if paper is not None:
                cells[f"{label} lit."] = "" if _missing(row.get(paper)) else f"{row[paper]:g}"
        cells["sink % per seed"] = row.get("sink_ratio_seeds", "")
        cells["literature"] = row.get("paper_setting") or ""
        rows.append(cells)
    return pd.DataFrame(rows)


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as printed (md / tex): paper beside ours, seed mean +- sd in one cell; the CSV keeps
    every column (per-seed values, sds, intervals, positions). The remedies table: remedy_display_frame."""
    if "table" in frame and (frame["table"] == "remedies").any():
        return remedy_display_frame(frame)

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


def table_claims(runs: pd.DataFrame, table: str, preset: str, thresholds: Thresholds) -> list[Claim]:
    """The claims of paper table `table` (spikesink.ablations.claims.CLAIMS: definitions, evaluated over
    seeds) on one row per run (`ablation_table`, or `runs_from_table` for a written table), each labelled
    with the data it was tested on (the `model` column); `thresholds`: `ablations.claims` of the config."""
    sources = runs["data"].dropna().unique() if "data" in runs else []
    model = f"ablations/{preset} ({', '.join(data_label(s) for s in sources) or data_label(None)})"
    return evaluate(runs, table, model, thresholds)


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


# the remedies figure: one panel per column (column, y label, log scale), ours with its interval
REMEDY_PANELS = (
    ("sink_ratio", "sink ratio (%), eps 0.3", False),
    ("key0_mass_mean", "key-0 mass (+ learned-sink share)", False),
    ("first_token_to_median", "first-token max abs(h) / median", True),
    ("ppl", "held-out perplexity", False),
)


def _interval_errors(frame: pd.DataFrame, column: str):
    """Asymmetric error bars from the seed mean to its 95 % bootstrap interval (None without one)."""
    if f"{column}_low" not in frame or frame[f"{column}_low"].isna().all():
        return None
    mean = frame[column].to_numpy(float)
    low = np.nan_to_num(mean - frame[f"{column}_low"].to_numpy(float))
    high = np.nan_to_num(frame[f"{column}_high"].to_numpy(float) - mean)
    return np.vstack([np.maximum(low, 0), np.maximum(high, 0)])


def plot_remedies(frame: pd.DataFrame, path: str | os.PathLike, data: str = ""):
    """The remedies table as a figure, one bar per remedy (baseline first) in four panels: sink ratio,
    key-0 mass (the learned-sink share hatched on top), first-token spike and perplexity, each bar the
    seed mean with its 95 % bootstrap interval and every seed a dot; the literature's number a
    diamond where one is published (sink ratio, first-token attention: the scales that compare);
    dotted lines: the sink threshold (20 %), the baseline's perplexity x 1.05 (the cost limit)."""
    import matplotlib.pyplot as plt

    from ..reporting.plotting import PALETTE, apply_style, save_figure

    apply_style()
    frame = pd.concat([frame[frame["variant"] == "baseline"], frame[frame["variant"] != "baseline"]], ignore_index=True)
    x = np.arange(len(frame))
    fig, axes = plt.subplots(2, 2, figsize=(max(9.0, 2.0 + 0.8 * len(frame)), 7.2))
    axes = axes.flatten()  # REMEDY_PANELS in reading order
    # the literature's sink ratio and first-token attention are on our scale; its perplexity and spike are not
    literature = {c: p for c, _, _, p in REMEDY_COLUMNS if c in ("sink_ratio", "key0_mass_mean")}
    for ax, (column, label, log) in zip(axes, REMEDY_PANELS):
        means = frame[column].to_numpy(float) if column in frame else np.full(len(frame), np.nan)
        ax.bar(x, means, 0.6, yerr=_interval_errors(frame, column), capsize=2, color=PALETTE["ours"], label="ours")
        for xi, values in zip(x, frame.get(f"{column}_seeds", pd.Series([""] * len(frame)))):
            if isinstance(values, str) and values:
                ys = [float(v) for v in values.split(" / ") if v != "nan"]
                ax.plot([xi] * len(ys), ys, "o", color="black", markersize=2.5, zorder=3)
        paper = literature.get(column)
        if paper and paper in frame and frame[paper].notna().any():
            ax.plot(x, frame[paper].astype(float), "D", color=PALETTE["paper"], markersize=6, label="literature")
        if column == "key0_mass_mean" and "sink_slot_share" in frame:
            ax.bar(
                x,
                frame["sink_slot_share"].fillna(0.0).to_numpy(float),
                0.6,
                bottom=np.nan_to_num(means),
                color="white",
                edgecolor=PALETTE["ours"],
                hatch="///",
                label="learned-sink share",
            )
        if column == "sink_ratio":
            ax.axhline(20, color="#9e9e9e", linestyle=":", linewidth=1)
        base = frame[frame["variant"] == "baseline"]
        if column == "ppl" and len(base):
            ax.axhline(1.05 * float(base["ppl"].iloc[0]), color="#9e9e9e", linestyle=":", linewidth=1)
            ax.set_ylim(0.9 * np.nanmin(means), 1.1 * np.nanmax(means))
        if log:
            ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.set_xticks(x)
        ax.set_xticklabels(frame["variant"], rotation=40, ha="right", fontsize=7)
        ax.legend(fontsize=7)
    seeds = int(frame["n_seeds"].max()) if "n_seeds" in frame and len(frame) else 1
    title = f"Sink remedies, each one switch from the baseline ({seeds} seeds: mean, 95 % interval, each seed a dot)"
    fig.suptitle(title + (f" on {data}" if data else ""), fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_table(frame: pd.DataFrame, table: str, path: str | os.PathLike, data: str = ""):
    """Any Section 4 table as a figure, one group of bars per variant (baseline first):
    sink ratio (ours: seed mean +- sd, each seed a dot; the paper's beside), mean attention on key 0
    (ours), and the spike relative to each one's baseline (max abs(h) / baseline's, log scale), since
    absolute spikes differ ~100x between the paper's 7B model and ours. The remedies table: plot_remedies."""
    import matplotlib.pyplot as plt

    from ..reporting.plotting import PALETTE, apply_style, save_figure

    if table == "remedies":
        return plot_remedies(frame, path, data)
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


def write_preset_tables(
    preset_dir: str | os.PathLike,
    out: str | os.PathLike,
    preset: str | None = None,
    thresholds: Thresholds | None = None,
) -> list[str]:
    """Every paper table of the finished runs under <preset_dir>/<variant>/seed<N>/metrics.json, as the
    workflow writes them (tables, claims, a figure per table, the head-dimension figure), into `out`.

    For rebuilding one preset's outputs outside Snakemake (e.g. while another preset runs there);
    `thresholds`: the claims' (None: the schema's defaults). Returns the table stems written.
    """
    from pathlib import Path

    from ..io import read_json
    from ..reporting.scorecard import write_claims

    preset_dir, out = Path(preset_dir), Path(out)
    preset = preset or preset_dir.name
    metrics = [read_json(p) for p in sorted(preset_dir.glob("*/seed*/metrics.json"))]
    runs, thresholds = ablation_table(metrics), thresholds or claim_thresholds()
    stems = []
    for table in sorted({m["table"] for m in metrics if m.get("table")}):
        frame = table_frame(metrics, table)
        data = ", ".join(data_label(s) for s in frame["data"].dropna().unique())
        stem = table_stem(table)
        write_ablation_table(
            frame,
            out / stem,
            caption=f"Table {table} on {data}, preset {preset}: ours (mean +- sd over seeds) beside the paper's."
            if table != "remedies"
            else f"Sink remedies on {data}, preset {preset}: ours (seed mean, 95 % interval) beside the literature's.",
        )
        write_claims(out / "claims" / f"{stem}.json", table_claims(runs, table, preset, thresholds))
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
    parser.add_argument(
        "--configfile", help="a config whose ablations.claims thresholds to use (default: the schema's)"
    )
    args = parser.parse_args()
    claims = None
    if args.configfile:
        import yaml

        with open(args.configfile) as handle:
            claims = (yaml.safe_load(handle) or {}).get("ablations", {}).get("claims")
    print(", ".join(write_preset_tables(args.preset_dir, args.out, thresholds=claim_thresholds(claims))))
