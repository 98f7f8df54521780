"""The vocabulary probe's per-id rows and its Table 2 summary (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from spikesink.analyses.unit import Result, stored


@dataclass(kw_only=True)
class VocabProbe(Result):
    frame: object = stored("parquet")  # one row per probed id: peaks, spike flags, embedding geometry
    summary: dict = stored("json")  # counts and ratios as in Table 2, the exceptions
