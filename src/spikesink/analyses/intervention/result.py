"""Sinks, spike and perplexity per edit of the step-up block(s) (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from spikesink.analyses.unit import Result, stored


@dataclass(kw_only=True)
class Intervention(Result):
    table: object = stored("parquet")  # one row per (block, condition): none first, then each edit
