"""Activation scales per Linear input, in SmoothQuant's layout (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from spikesink.analyses.unit import Result, stored


@dataclass(kw_only=True)
class ActScales(Result):
    scales: dict = stored("safetensors")  # module path -> (in_features,) max |x| over every token
    non_spike: dict = stored("safetensors")  # the same without the spike tokens
    summary: object = stored("parquet")  # one row per Linear: role, block, largest scale and its channel
