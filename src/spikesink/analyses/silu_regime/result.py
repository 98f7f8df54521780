"""Per-token SiLU alignment in the step blocks (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from spikesink.analyses.unit import Result, stored

COLUMNS = [
    "sample",
    "position",
    "token_id",
    "block",
    "cos",
    "norm_ratio",
    "gate_norm",
    "out_peak",
    "resid_in_peak",
    "resid_out_peak",
    "is_spike",
]


@dataclass(kw_only=True)
class SiluRegime(Result):
    frame: object = stored("parquet")  # one row per (token, step block): COLUMNS
    activation: str = "silu"  # the family's gate activation (Gemma: gelu_pytorch_tanh)
