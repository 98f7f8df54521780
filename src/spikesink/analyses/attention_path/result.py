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


@dataclass(kw_only=True)
class AttentionPath(Result):
    table: object = stored("parquet")  # conditions none / spike channels / control channels: COLUMNS
