"""Held-out perplexity per activation quantiser (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from spikesink.analyses.unit import Result, stored


@dataclass(kw_only=True)
class Quantization(Result):
    table: object = stored("parquet")  # one row per condition: fp, per_tensor, per_tensor_keep, per_token
