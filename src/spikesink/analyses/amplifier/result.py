"""U_k norms, S_k spectra and the position-0 map (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from spikesink.analyses.unit import Result, stored


@dataclass(kw_only=True)
class Amplifier(Result):
    norms: object = stored("parquet")  # ||U_k||_F per (FFN block, expert, channel)
    spectra: object = stored("parquet")  # eigenvalues of S_k per (step block, channel), spike and control
    summary: dict = stored("json")  # ratios to the median, dominance, shared s*, the position-0 check
