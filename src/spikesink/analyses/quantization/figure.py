"""Held-out perplexity with INT8 activations, and its table."""

from __future__ import annotations

import os
from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd

from spikesink.analyses.quantization.result import Quantization
from spikesink.analyses.unit import Job
from spikesink.reporting.plotting import PALETTE, apply_style, save_figure


def tables(result: Quantization, job: Job) -> dict:
    bits = job.settings.bits
    caption = (
        f"{job.model_name}: held-out perplexity with INT{bits} activations at every Linear input "
        "(weights untouched): per tensor, per tensor with the tokens that would clip kept in full precision, per token"
    )
    return {"": (result.table, caption)}


def draw(result: Quantization, job: Job, paths: Mapping[str, os.PathLike]) -> dict:
    return {"": plot_quantization(result.table, paths[""], job.model_name)}


def plot_quantization(table: pd.DataFrame, path: str | os.PathLike, model: str = "") -> dict:
    """Held-out perplexity per activation quantiser (log). Returns the bars drawn."""
    apply_style()
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    labels = {
        "fp": "full precision",
        "per_tensor": "per-tensor A8",
        "per_tensor_keep": "per-tensor A8,\nspike tokens fp",
        "per_token": "per-token A8",
    }
    ax.bar(
        [labels.get(c, c) for c in table["condition"]],
        table["perplexity"],
        color=[PALETTE["ours"], PALETTE["spike"], PALETTE["step_up"], PALETTE["other"]][: len(table)],
    )
    ax.set_yscale("log")
    ax.set_ylabel("held-out perplexity (log)")
    ax.set_title(f"INT8 activations, weights untouched{' - ' + model if model else ''}")
    ax.tick_params(axis="x", labelsize=8)
    save_figure(fig, path)
    return {"perplexity": table.set_index("condition")["perplexity"]}
