"""Stages of the spike: a spike can rise, live and be cancelled more than once (torch-free).

SmolLM2-135M's channel 507 rises in two stages: FFN blocks 4 and 6 write ~780 (about 800x the
block median), blocks 18-22 cancel it, then block 24 writes the 2.3e4 spike that lasts to blocks
58-60. Measured against the final plateau's spike vector, the first stage carries 0.01-0.03 of
the spike and is invisible; each stage is therefore measured against its own level.

The level after block b is the reference state (position 0 when it spikes, else the mean spike
token) projected on the spike direction P / ||P|| over the spike channels; a block's signed
contribution is its output projected the same way, in |h| units. The main stage is the one the
life cycle's plateau found (the massive spike). Before its first step-up block, an earlier stage
is a peak of the level that is itself a spike (above the floor and `stage_min_ratio` times the
block median) with step-up and step-down blocks of its own (`step_fraction` of its peak); the
search repeats before that stage's first step-up.
"""

from __future__ import annotations

import numpy as np


def spike_levels(vectors: np.ndarray, channels: list[int], direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(level after each block, each block's contribution) along `direction` over `channels`.

    vectors: (2, B, d) reference vectors per kind (post-residual, block output), e.g. pos0_mean.
    """
    unit = np.asarray(direction, dtype=np.float64)
    unit = unit / max(float(np.linalg.norm(unit)), 1e-30)
    return vectors[0][:, channels] @ unit, vectors[1][:, channels] @ unit


def stage(levels, contributions, start: int, stop: int, step_fraction: float, main: bool) -> dict:
    """One stage over blocks [start, stop) (0-based): its peak and its step-up / step-down blocks."""
    peak_index = start + int(np.argmax(levels[start:stop]))
    peak = float(levels[peak_index])
    window = contributions[start:stop] / max(abs(peak), 1e-30)
    up = [start + int(i) + 1 for i in np.flatnonzero(window >= step_fraction)]
    down = [start + int(i) + 1 for i in np.flatnonzero(window <= -step_fraction)]
    after_peak = contributions[peak_index + 1 : stop]
    cancelled = float(-after_peak[after_peak < 0].sum() / max(abs(peak), 1e-30)) if after_peak.size else 0.0
    return {
        "main": main,
        "peak_level": peak,
        "peak_block": peak_index + 1,
        "step_up": up,
        "step_down": down,
        "contributions": [float(contributions[b - 1] / max(abs(peak), 1e-30)) for b in up + down],
        "cancelled_share": cancelled,  # share of the peak the blocks after it take away (within the stage)
        "blocks": [start + 1, stop],
    }


def detect_stages(
    levels: np.ndarray,
    contributions: np.ndarray,
    medians: np.ndarray,
    main_step_up: list[int],
    main_end: int,
    floor: float,
    stage_min_ratio: float,
    step_fraction: float,
) -> list[dict]:
    """Every stage, earliest first; the last one is the main (massive) stage.

    main_step_up: the life cycle's step-up blocks (1-based); main_end: the last block of the
    main stage (the end of the model). Earlier stages are searched before the first step-up block.
    """
    n_blocks = len(levels)
    if not main_step_up:
        return []
    first_up = min(main_step_up)
    stages = [stage(levels, contributions, first_up - 1, main_end, step_fraction, main=True)]
    stop = first_up - 1  # blocks before the main stage's first step-up (0-based exclusive end)
    while stop > 1:
        before = levels[:stop]
        peak_index = int(np.argmax(before))
        peak = float(before[peak_index])
        if peak < floor or peak < stage_min_ratio * float(medians[peak_index]):
            break
        found = stage(levels, contributions, 0, stop, step_fraction, main=False)
        ups = [b for b in found["step_up"] if b - 1 <= peak_index]
        if not ups:
            break
        start = min(ups) - 1
        found = stage(levels, contributions, start, stop, step_fraction, main=False)
        stages.insert(0, found)
        stop = start
    assert all(s["blocks"][1] <= n_blocks for s in stages)
    return stages
