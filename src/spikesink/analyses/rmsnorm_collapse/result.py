"""The collapse of the spike tokens across the step-up block (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from spikesink.analyses.unit import Result, stored


@dataclass(kw_only=True)
class Collapse(Result):
    summary: dict = stored("json")  # cosines before / after, energy shares, the norm bound, delimiters
    matrices: dict = stored("npz")  # the small cosine matrices Fig. 5 draws
    delimiters: object = stored("parquet")  # non-initial spike tokens by count, decoded
    self_attention: object = stored("parquet")  # self-attention share per early layer, spike vs other
