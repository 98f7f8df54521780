"""Windowed perplexity per condition, and over position (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from spikesink.analyses.unit import Result, stored


@dataclass(kw_only=True)
class KVCache(Result):
    summary: object = stored("parquet")  # one row per condition: full attention, window + k kept
    curve: object = stored("parquet")  # perplexity per position bin and condition
