"""Sinks and perplexity with token 0's attention input edited, against a control (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from spikesink.analyses.unit import Result, stored

COLUMNS = [
    "condition",
    "blocks",
    "channels",
    "edited_tokens",
    "perplexity",
    "sink_ratio",
    "key0_mass",
    "sink_ratio_edited_layers",
    "key0_mass_edited_layers",
]
PER_PROMPT = [
    "condition",
    "prompt",
    "n_tokens",
    "nll_sum",
    "sink_ratio",
    "key0_mass",
    "sink_ratio_edited_layers",
    "key0_mass_edited_layers",
]


@dataclass(kw_only=True)
class AttentionPath(Result):
    table: object = stored("parquet")  # conditions none / spike channels / control channels: COLUMNS
    # the same forwards per held-out prompt: one row per (condition, prompt), PER_PROMPT (nll_sum:
    # summed next-token loss over n_tokens; sink ratios in percent of (layer, head) pairs)
    per_prompt: object = stored("parquet")
