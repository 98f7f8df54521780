"""The spike's life cycle (paper Table 1, Figures 1 and 7): where it rises, plateaus and falls.

Definitions (thresholds: the `analyses.lifecycle` config section, defaults in schema.yaml):

* A block is **massive** when, for at least `min_prompt_fraction` of prompts, the top-1
  magnitude of its post-residual state is massive (metrics.is_massive: above `floor` and
  `median_ratio` times that state's median magnitude). The **plateau** is the set of massive
  blocks.
* **Spike channels** are the channels whose largest residual magnitude reaches at least
  `channel_fraction` of the block's largest channel (and the floor) in at least
  `min_plateau_fraction` of the plateau blocks.
* The **spike vector** P is the median, over plateau blocks, of the mean post-residual state of
  the reference tokens restricted to the spike channels. Reference tokens are position 0 when
  position 0 is a spike token in most prompts (the paper's setting), else all spike tokens.
* The **contribution** of block b is the signed share of P that its output carries on the spike
  channels: c_b = <out_b[S], P> / <P, P>. A **step-up** block has c_b >= `step_fraction`, a
  **step-down** block has c_b <= -`step_fraction`.
"""

from __future__ import annotations

import numpy as np

from spikesink import metrics
from spikesink.analyses.lifecycle.result import Lifecycle
from spikesink.analyses.lifecycle.stages import detect_stages, spike_levels
from spikesink.analyses.unit import Job
from spikesink.results import OUTPUT, RESIDUAL, BlockStats


def measure(job: Job) -> Lifecycle:
    return detect_lifecycle(job["block_stats"], job.rule, job.settings)


def massive_prompt_fraction(stats: BlockStats, rule) -> np.ndarray:
    """(n_blocks,) share of prompts whose residual top-1 magnitude is massive at each block."""
    top1 = stats.topk_abs[RESIDUAL, :, :, 0]
    median = stats.median[RESIDUAL]
    return metrics.is_massive(top1, median, rule.floor, rule.median_ratio).mean(axis=1)


def detect_lifecycle(stats: BlockStats, rule=None, settings=None) -> Lifecycle:
    """The life cycle under a spike rule and the detector's settings (both default to the config
    schema's defaults: spikesink.config)."""
    from spikesink.config import analysis_settings, default_rule

    rule = rule or default_rule()
    s = settings or analysis_settings("lifecycle")
    n_blocks = stats.n_blocks
    top1 = stats.topk_abs[RESIDUAL, :, :, 0].mean(axis=1)
    median = stats.median[RESIDUAL].mean(axis=1)
    massive = np.flatnonzero(massive_prompt_fraction(stats, rule) >= s.min_prompt_fraction) + 1
    massive_blocks = [int(b) for b in massive]
    peak_index = int(np.argmax(top1))
    common = dict(
        n_blocks=n_blocks,
        massive_blocks=massive_blocks,
        peak_magnitude=float(top1[peak_index]),
        peak_block=peak_index + 1,
        median_at_peak=float(median[peak_index]),
        peak_median_ratio=float(top1[peak_index] / max(median[peak_index], 1e-30)),
        top1_by_block=top1.astype(float).tolist(),
        median_by_block=median.astype(float).tolist(),
    )
    if not massive_blocks:
        return Lifecycle(
            plateau=None,
            contiguous=False,
            spike_channels=[],
            spike_vector=[],
            contributions=[0.0] * n_blocks,
            step_up=[],
            step_down=[],
            reference_tokens="none",
            spike_token_fraction=0.0,
            position0_spike_fraction=0.0,
            **common,
        )
    plateau = (massive_blocks[0], massive_blocks[-1])
    contiguous = len(massive_blocks) == plateau[1] - plateau[0] + 1
    plateau_index = massive - 1

    spike_channels = spike_channels_of(stats, plateau_index, rule.floor, s)
    # which tokens carry the spike: massive tokens at the middle plateau block
    middle = int(plateau_index[len(plateau_index) // 2])
    token_threshold = metrics.massive_threshold(stats.median[RESIDUAL, middle], rule.floor, rule.median_ratio)[:, None]
    token_massive = stats.token_max[RESIDUAL, middle] > token_threshold  # (N, T)
    position0_fraction = float(token_massive[:, 0].mean())
    reference = "position 0" if position0_fraction >= 0.5 else "spike tokens"
    vectors = stats.pos0_mean if reference == "position 0" else stats.spike_mean

    spike_vector, contributions = block_contributions(vectors, plateau_index, spike_channels)
    step_up = [int(b) + 1 for b in np.flatnonzero(contributions >= s.step_fraction)]
    step_down = [int(b) + 1 for b in np.flatnonzero(contributions <= -s.step_fraction)]
    stages = []
    if spike_channels:
        levels, steps = spike_levels(vectors, spike_channels, spike_vector)
        stages = detect_stages(levels, steps, median, step_up, n_blocks, rule.floor, s.stage_min_ratio, s.step_fraction)
    return Lifecycle(
        plateau=plateau,
        contiguous=contiguous,
        spike_channels=spike_channels,
        spike_vector=spike_vector.astype(float).tolist(),
        contributions=contributions.astype(float).tolist(),
        step_up=step_up,
        step_down=step_down,
        reference_tokens=reference,
        spike_token_fraction=float(token_massive.mean()),
        spike_token_fraction_by_prompt=token_massive.mean(axis=1).astype(float).tolist(),
        position0_spike_fraction=position0_fraction,
        stages=stages,
        **common,
    )


def spike_channels_of(stats: BlockStats, plateau_index: np.ndarray, floor: float, s) -> list[int]:
    """Channels within `channel_fraction` of the block's largest channel (and above the floor) in
    enough plateau blocks, strongest first. Secondary channels of a spike are often far below the
    1000x-median bar on their own (the paper's channels spike together at fixed ratios)."""
    plateau_channels = stats.channel_max[plateau_index]  # (plateau blocks, d)
    channel_threshold = np.maximum(s.channel_fraction * plateau_channels.max(axis=1, keepdims=True), floor)
    channel_hits = (plateau_channels >= channel_threshold).mean(axis=0)
    candidates = np.flatnonzero(channel_hits >= s.min_plateau_fraction)
    strength = np.median(plateau_channels[:, candidates], axis=0)
    return [int(c) for c in candidates[np.argsort(-strength, kind="stable")][: s.max_spike_channels]]


def block_contributions(
    vectors: np.ndarray, plateau_index: np.ndarray, channels: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """(spike vector P on the channels, c_b = <out_b[S], P> / <P, P> for every block)."""
    contributions = np.zeros(vectors.shape[1])
    if not channels:
        return np.zeros(0), contributions
    spike_vector = np.median(vectors[RESIDUAL][plateau_index][:, channels], axis=0)
    norm2 = float(spike_vector @ spike_vector)
    if norm2 > 0:
        contributions = vectors[OUTPUT][:, channels] @ spike_vector / norm2
    return spike_vector, contributions
