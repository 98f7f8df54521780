"""Attention on key 0 per (layer, head), and sinks over depth beside the spike."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from spikesink.analyses.sinks.result import Sinks
from spikesink.analyses.unit import Job
from spikesink.reporting import paper
from spikesink.reporting.plotting import OURS_STYLE, PALETTE, apply_style, save_figure

ROLE_TITLE = {"sink": "sink head", "non_sink": "non-sink head"}


NO_OUTPUT_GATE = "n/a: no output gate on the attention output"


def sink_table(result: Sinks) -> pd.DataFrame:
    """One row per layer: mean key-0 mass and sink ratio over its heads, and the mean output gate
    sigmoid(g) at token 0 and at the other tokens (Qwen3-Next); cells that do not apply read
    "n/a: <reason>" (a hybrid's linear-attention layers; a family without an output gate)."""
    per_head = result.per_head or {}
    mass = np.asarray(per_head.get("key0_mass_layer", []), dtype=np.float64)
    ratio = np.asarray(per_head.get("sink_ratio_layer", []), dtype=np.float64)
    gate0 = per_head.get("output_gate_pos0_layer")
    rest = per_head.get("output_gate_rest_layer")
    rows = []
    for layer in range(len(mass)):
        row = {"layer": layer, "block": 2 * layer + 1}
        if not np.isfinite(mass[layer]):
            na = f"n/a: {result.no_softmax_reason or 'no softmax attention'}"
            rows.append(row | dict.fromkeys(("key0_mass", "sink_ratio_pct", "gate_token0", "gate_others"), na))
            continue
        row |= {"key0_mass": round(float(mass[layer]), 4), "sink_ratio_pct": round(float(ratio[layer]), 2)}
        if gate0 is None or not np.isfinite(gate0[layer]):
            row |= {"gate_token0": NO_OUTPUT_GATE, "gate_others": NO_OUTPUT_GATE}
        else:
            row |= {"gate_token0": round(float(gate0[layer]), 4), "gate_others": round(float(rest[layer]), 4)}
        rows.append(row)
    return pd.DataFrame(rows, columns=["layer", "block", "key0_mass", "sink_ratio_pct", "gate_token0", "gate_others"])


def tables(result: Sinks, job: Job) -> dict:
    caption = (
        f"{job.model_name}: per layer (means over heads and prompts), attention on key 0, the share of heads "
        f"sinking (key-0 mass > {result.eps:g}), and the attention output gate sigmoid(g) at token 0 beside the "
        "other tokens (per head in the result's per_head arrays)"
        + (f". n/a: {result.not_applicable}" if result.not_applicable else "")
    )
    return {"": (sink_table(result), caption)}


def draw(result: Sinks, job: Job, paths: Mapping[str, os.PathLike]) -> dict:
    lc, name = job["lifecycle"], job.model_name
    return {
        "key0_heatmap": plot_key0_heatmap(
            result.per_head["key0_mass_layer_head"], paths["key0_heatmap"], title=f"{name}: mean attention on key 0"
        ),
        "sinks_vs_spike": plot_sink_vs_spike(
            result.per_head["sink_ratio_layer"],
            result.per_head["key0_mass_layer"],
            np.asarray(lc.top1_by_block),
            paths["sinks_vs_spike"],
            title=f"{name}: spikes and sinks over depth",
            step_up=lc.step_up,
            step_down=lc.step_down,
            model_sink_ratio=result.sink_ratio,
        ),
    }


def plot_key0_heatmap(
    key0_mass_layer_head: np.ndarray,
    path: str | os.PathLike,
    title: str | None = None,
    highlight: dict[str, tuple[int, int]] | None = None,
) -> dict:
    """Mean attention on key 0 per (layer, head); optionally outline chosen heads (role -> (layer, head)).
    Returns the (layer x head) matrix drawn."""
    apply_style()
    mass = np.asarray(key0_mass_layer_head, dtype=np.float32)
    n_layers, n_heads = mass.shape
    fig, ax = plt.subplots(figsize=(1.2 + 0.35 * n_heads, 1.0 + 0.16 * n_layers))
    image = ax.imshow(mass, aspect="auto", cmap="magma", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="mean attention on key 0")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(n_heads))
    step = max(1, n_layers // 10)
    ax.set_yticks(range(0, n_layers, step))
    ax.grid(False)
    for layer in np.flatnonzero(np.isnan(mass).all(axis=1)):  # a hybrid's linear-attention layers
        ax.text((n_heads - 1) / 2, layer, "n/a: no attention map", ha="center", va="center", fontsize=7, color="0.4")
    handles = []
    for role, (layer, head) in (highlight or {}).items():
        color = PALETTE["step_up"] if role == "sink" else PALETTE["ours"]
        box = plt.Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor=color, linewidth=2)
        ax.add_patch(box)
        handles.append(
            plt.Rectangle(
                (0, 0),
                1,
                1,
                fill=False,
                edgecolor=color,
                linewidth=2,
                label=f"{ROLE_TITLE.get(role, role)} (L{layer} H{head})",
            )
        )
    if handles:
        ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.08 - 0.4 / max(n_layers, 1)),
            fontsize=7,
            ncol=len(handles),
            frameon=False,
        )
    ax.set_title(title or "Attention on the first token")
    save_figure(fig, path)
    return {"key0_mass": mass}


def _whole_model_lines(ax, model_sink_ratio: float | None) -> dict[str, float]:
    """The paper's baseline sink ratio and, when given, this model's whole-model one, as lines."""
    lines = {"paper baseline sink ratio (%)": paper.BASELINE_SINK_RATIO}
    label = f"paper: {paper.BASELINE_SINK_RATIO:g} % (Llama baseline, Tables 5-7)"
    ax.axhline(paper.BASELINE_SINK_RATIO, color=PALETTE["paper"], linestyle="-.", linewidth=1, label=label)
    if model_sink_ratio is not None and np.isfinite(model_sink_ratio):
        lines["model sink ratio (%)"] = float(model_sink_ratio)
        label = f"ours, whole model: {model_sink_ratio:.1f} %"
        ax.axhline(model_sink_ratio, color=PALETTE["ours"], linestyle="--", linewidth=1, label=label)
    return lines


def plot_sink_vs_spike(
    sink_ratio_layer: np.ndarray,
    key0_mass_layer: np.ndarray,
    top1_per_block: np.ndarray,
    path: str | os.PathLike,
    title: str | None = None,
    step_up: Sequence[int] = (),
    step_down: Sequence[int] = (),
    model_sink_ratio: float | None = None,
) -> dict:
    """Spike magnitude (top-1 |h| per block, post-residual) above, sinks per layer below, same depth axis.
    Returns the three curves drawn and the two whole-model sink ratios drawn as lines (ours, when
    given, and the paper's from-scratch baseline of Tables 5-7).

    x is the paper's block number; a layer's sink statistics sit at its attention block 2l+1
    (0-based l). top1_per_block comes from the extraction (length 2L).
    """
    apply_style()
    ratio = np.asarray(sink_ratio_layer, dtype=np.float64)
    mass = np.asarray(key0_mass_layer, dtype=np.float64)
    top1 = np.asarray(top1_per_block, dtype=np.float64)
    n_layers = len(ratio)
    if len(mass) != n_layers or len(top1) != 2 * n_layers:
        raise ValueError(f"need L sink values and 2L block magnitudes, got {len(ratio)}, {len(mass)}, {len(top1)}")
    blocks = np.arange(1, 2 * n_layers + 1)
    attention_blocks = 2 * np.arange(n_layers) + 1
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.0, 5.0), sharex=True)
    top.plot(blocks, top1, color=PALETTE["top1"], marker="o", markersize=3, linewidth=1.5, label="top-1 |h|")
    top.set_yscale("log")
    top.set_ylabel("spike: top-1 magnitude")
    bottom.plot(attention_blocks, ratio, **OURS_STYLE, label="sink ratio (%)")
    bottom.set_ylabel("sink ratio (%)")
    bottom.set_ylim(-2, 102)
    lines = _whole_model_lines(bottom, model_sink_ratio)
    twin = bottom.twinx()
    twin.plot(attention_blocks, mass, color=PALETTE["median"], linestyle=":", marker=".", label="mean key-0 mass")
    twin.set_ylim(-0.02, 1.02)
    twin.set_ylabel("mean attention on key 0")
    twin.grid(False)
    for ax in (top, bottom):
        for block in step_up:
            ax.axvline(block, color=PALETTE["step_up"], linestyle="--", linewidth=1)
        for block in step_down:
            ax.axvline(block, color=PALETTE["step_down"], linestyle="--", linewidth=1)
    handles = bottom.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    bottom.legend(handles, [h.get_label() for h in handles], loc="lower right", fontsize=8)
    bottom.set_xlabel("block (odd = attention, even = FFN)")
    top.set_title(title or "Spikes and sinks over depth")
    save_figure(fig, path)
    return {
        "top1_by_block": pd.Series(top1, index=blocks),
        "sink_ratio_by_layer": pd.Series(ratio, index=attention_blocks),
        "key0_mass_by_layer": pd.Series(mass, index=attention_blocks),
        "lines": lines,
    }
