"""Windowed perplexity per condition, and over position (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from spikesink.analyses.unit import Result, stored

PER_BLOCK = ["condition", "kept", "text", "block", "start", "n_tokens", "nll_sum"]


@dataclass(kw_only=True)
class KVCache(Result):
    summary: object = stored("parquet")  # one row per condition: full attention, window + k kept
    curve: object = stored("parquet")  # perplexity per position bin and condition
    # the same forwards per block of `bin` targets beyond the window: one row per (condition, text,
    # block), PER_BLOCK (nll_sum: the loss summed over n_tokens targets from `start`): what the
    # claims' bootstrap resamples when there are too few texts to resample
    per_block: object = stored("parquet")
