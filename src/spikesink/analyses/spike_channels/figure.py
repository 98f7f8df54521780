"""Properties (iii) and (iv): each spike channel against the reference channel on every spike token,
and the spread of their ratios per block."""

from __future__ import annotations

import os
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from spikesink.analyses.spike_channels.claims import ratio_spread
from spikesink.analyses.spike_channels.result import SpikeChannels, channel_column
from spikesink.analyses.unit import Job
from spikesink.reporting.plotting import PALETTE, apply_style, placeholder_figure, save_figure


def draw(result: SpikeChannels, job: Job, paths: Mapping[str, os.PathLike]) -> dict:
    return {"": plot_spike_channels(result, paths[""], job.model_name, job.settings.claims.channel_fraction)}


def plot_spike_channels(
    result: SpikeChannels, path: str | os.PathLike, model: str = "", channel_fraction: float = 0.1
) -> dict:
    """Left: c_i against c_ref on every spike token (all blocks read), one colour per channel, with
    the line of the mean ratio; right: the coefficient of variation of c_i / c_ref per block.
    Returns the points and the per-block table drawn."""
    title = f"Spike channels together{' - ' + model if model else ''}"
    if result.not_applicable or result.tokens is None or result.tokens.empty:
        reason = result.not_applicable or "no spike token in the prompts read"
        placeholder_figure(path, title, f"n/a: {reason}")
        return {}
    apply_style()
    tokens, ref = result.tokens, result.reference_channel
    _, table = ratio_spread(result, channel_fraction)
    fig, (scatter, spread) = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = plt.get_cmap("tab10")
    reference = tokens[channel_column(ref)].to_numpy(np.float64)
    points = []
    for k, channel in enumerate(c for c in result.spike_channels if c != ref):
        values = tokens[channel_column(channel)].to_numpy(np.float64)
        color = colors(k % 10)
        scatter.scatter(reference, values, s=12, color=color, label=f"channel {channel}")
        mean = table.loc[table["channel"] == channel, "mean_ratio"].mean()
        if np.isfinite(mean):
            span = np.array([min(0.0, reference.min()), max(0.0, reference.max())])
            scatter.plot(span, mean * span, color=color, linewidth=0.8, linestyle="--")
        points.append(pd.DataFrame({"channel": channel, "reference": reference, "value": values}))
        rows = table[table["channel"] == channel]
        spread.plot(rows["block"], rows["cv"], marker="o", color=color, label=f"c_{channel} / c_{ref}")
    scatter.axhline(0, color=PALETTE["median"], linewidth=0.5)
    scatter.axvline(0, color=PALETTE["median"], linewidth=0.5)
    scatter.set_xlabel(f"reference channel {ref} (post-residual)")
    scatter.set_ylabel("spike channel value")
    scatter.set_title(f"{len(tokens)} spike tokens, blocks {result.blocks[0]}-{result.blocks[-1]}", fontsize=9)
    scatter.legend(fontsize=7, frameon=False)
    spread.set_xlabel("block")
    spread.set_ylabel("coefficient of variation of the ratio")
    spread.set_yscale("symlog", linthresh=1e-3)
    spread.legend(fontsize=7, frameon=False)
    fig.suptitle(title)
    save_figure(fig, path)
    return {"points": pd.concat(points, ignore_index=True), "spread": table}
