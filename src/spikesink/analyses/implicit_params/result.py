"""Held-out perplexity per edit of the massive activations, and the calibrated sites (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from spikesink.analyses.unit import Result, stored

COLUMNS = ["block", "roles", "mode", "perplexity", "ratio", "edited_tokens", "spread"]


@dataclass(kw_only=True)
class ImplicitParams(Result):
    table: object = stored("parquet")  # one row per (site, mode) and the unedited model: COLUMNS
    sites: dict = stored("json")  # the calibrated sites (means, spread) and the candidates skipped
