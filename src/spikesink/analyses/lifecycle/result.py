"""The detected life cycle (torch-free): what every later analysis reads about the spike."""

from __future__ import annotations

from dataclasses import dataclass, field

from spikesink.analyses.unit import Result


@dataclass(kw_only=True)
class Lifecycle(Result):
    n_blocks: int = 0
    massive_blocks: list[int] = field(default_factory=list)
    plateau: tuple[int, int] | None = None  # first and last massive block
    contiguous: bool = False
    spike_channels: list[int] = field(default_factory=list)
    spike_vector: list[float] = field(default_factory=list)  # P, on spike_channels
    contributions: list[float] = field(default_factory=list)  # c_b for b = 1..n_blocks
    step_up: list[int] = field(default_factory=list)
    step_down: list[int] = field(default_factory=list)
    reference_tokens: str = "none"  # "position 0" or "spike tokens"
    peak_magnitude: float = 0.0
    peak_block: int = 0
    peak_median_ratio: float = 0.0
    median_at_peak: float = 0.0
    spike_token_fraction: float = 0.0  # share of tokens that are massive at the middle plateau block
    spike_token_fraction_by_prompt: list[float] = field(default_factory=list)  # the same per prompt
    position0_spike_fraction: float = 0.0
    top1_by_block: list[float] = field(default_factory=list)
    median_by_block: list[float] = field(default_factory=list)
    # every stage of the spike, earliest first; the last is the main (massive) one (stages.py)
    stages: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.plateau is not None:
            self.plateau = tuple(self.plateau)
