"""One row per configured model (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from spikesink.analyses.unit import Result, stored


@dataclass(kw_only=True)
class Architectures(Result):
    table: object = stored("parquet")  # family, norm placement, FFN, spike and sinks per model
