"""The spike channels' values on every spike token of the blocks read (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass, field

from spikesink.analyses.unit import Result, stored


def channel_column(channel: int) -> str:
    return f"ch_{int(channel)}"


@dataclass(kw_only=True)
class SpikeChannels(Result):
    # one row per (block, prompt, position) spike token: block, prompt, position, token_id, token_max (its
    # largest |h|) and its signed value on each spike channel (columns ch_<channel>)
    tokens: object = stored("parquet")
    spike_channels: list[int] = field(default_factory=list)
    reference_channel: int = -1  # c_ref of the ratios: the channel with the largest |P| in the life cycle
    blocks: list[int] = field(default_factory=list)
    n_prompts: int = 0
    n_tokens: int = 0  # tokens read per block (prompts x positions)
    bos_dropped: bool = False
