"""Properties (iii) and (iv): the spike channels spike together, with nearly fixed ratios.

Co-occurrence: the share of spike tokens (over every block read) on which every spike channel is
on, i.e. its |h| reaches `channel_fraction` of the token's largest |h|. Ratios: for each spike
channel i other than the reference (the largest of the life cycle's spike vector), r_i = c_i / c_ref
on every spike token whose reference channel is on; its spread is the coefficient of variation
std(r_i) / |mean(r_i)| over the spike tokens of all prompts, per block; the claim reads the largest
over channels and blocks. Both carry 95 % bootstrap intervals over prompts (a resample draws
prompts with replacement and keeps all their spike tokens).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spikesink.analyses.spike_channels import ANALYSIS
from spikesink.analyses.spike_channels.result import SpikeChannels, channel_column
from spikesink.analyses.unit import Job
from spikesink.reporting.scorecard import Claim, ClaimSpec
from spikesink.reporting.verdicts import LEVEL, N_BOOTSTRAP, Estimate

SECTION = ANALYSIS.section
TOGETHER = ClaimSpec(
    SECTION,
    "property (iii): the spike channels spike together, on the same tokens",
    "the massive channels of a token spike together",
)
FIXED_RATIOS = ClaimSpec(
    SECTION,
    "property (iv): the ratios between the spike channels stay nearly fixed across tokens and prompts",
    "nearly fixed ratios between the spike channels",
)
CLAIMS = (TOGETHER, FIXED_RATIOS)


def claims(result: SpikeChannels, job: Job) -> list[Claim]:
    if result.not_applicable:
        return [spec.na(job.model_name, result.not_applicable) for spec in CLAIMS]
    c = job.settings.claims
    return spike_channel_claims(job.model_name, result, c.channel_fraction, c.min_cooccurrence, c.max_ratio_cv)


def _draws(n_units: int, n_resamples: int = N_BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """(R, n_units) counts: how often each prompt is drawn in each resample."""
    return np.random.default_rng(seed).multinomial(n_units, np.full(n_units, 1.0 / n_units), size=n_resamples)


def _estimate(value: float, draws: np.ndarray, n_units: int) -> Estimate:
    draws = draws[np.isfinite(draws)]
    if n_units < 2 or draws.size == 0 or not np.isfinite(value):
        return Estimate(float(value), float(value), float(value), 1)
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return Estimate(float(value), float(low), float(high), n_units)


def cooccurrence(result: SpikeChannels, channel_fraction: float) -> tuple[Estimate, np.ndarray]:
    """Share of spike tokens with every spike channel on, with its interval over prompts; and the
    per-token flags."""
    tokens = result.tokens
    values = np.abs(tokens[[channel_column(c) for c in result.spike_channels]].to_numpy(np.float64))
    on = (values >= channel_fraction * tokens["token_max"].to_numpy(np.float64)[:, None]).all(axis=1)
    prompts, units = np.unique(tokens["prompt"].to_numpy(), return_inverse=True)
    n = len(prompts)
    if not n:
        return Estimate(float("nan"), float("nan"), float("nan"), 0), on
    total = np.bincount(units, minlength=n).astype(float)
    together = np.bincount(units, weights=on.astype(float), minlength=n)
    counts = _draws(n) if n > 1 else np.ones((1, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = (counts @ together) / (counts @ total)
    return _estimate(float(together.sum() / total.sum()), draws, n), on


def ratio_spread(result: SpikeChannels, channel_fraction: float) -> tuple[Estimate, pd.DataFrame]:
    """The largest coefficient of variation of c_i / c_ref (over channels i != ref and blocks), with
    its interval over prompts; and per (block, channel) the mean ratio, its CV and the token count."""
    tokens, ref = result.tokens, result.reference_channel
    others = [c for c in result.spike_channels if c != ref]
    reference = tokens[channel_column(ref)].to_numpy(np.float64)
    usable = np.abs(reference) >= channel_fraction * tokens["token_max"].to_numpy(np.float64)
    prompts, units = np.unique(tokens["prompt"].to_numpy(), return_inverse=True)
    n = len(prompts)
    counts = _draws(n) if n > 1 else np.ones((1, max(n, 1)))
    rows, draws = [], []
    for block in sorted(tokens["block"].unique()):
        keep = usable & (tokens["block"].to_numpy() == block)
        weights = counts[:, units[keep]]  # (R, tokens of this block)
        for channel in others:
            ratio = tokens[channel_column(channel)].to_numpy(np.float64)[keep] / reference[keep]
            mean, cv = _cv(ratio[None, :], np.ones((1, ratio.size)))
            rows.append(
                {"block": int(block), "channel": int(channel), "mean_ratio": mean[0], "cv": cv[0], "n": ratio.size}
            )
            draws.append(_cv(ratio[None, :], weights)[1])
    table = pd.DataFrame(rows, columns=["block", "channel", "mean_ratio", "cv", "n"])
    if table.empty or not table["cv"].notna().any():
        return Estimate(float("nan"), float("nan"), float("nan"), 0), table
    with np.errstate(invalid="ignore"):
        worst = np.nanmax(np.stack(draws), axis=0) if draws else np.zeros(0)
    return _estimate(float(table["cv"].max()), worst, n), table


def _cv(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and coefficient of variation std / |mean| of `values` (1, m) under each row of
    `weights` (R, m); NaN where a row has no weight."""
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (weights * values).sum(axis=1) / total
        var = (weights * (values - mean[:, None]) ** 2).sum(axis=1) / total
        return mean, np.sqrt(np.maximum(var, 0.0)) / np.abs(mean)


def spike_channel_claims(
    model: str, result: SpikeChannels, channel_fraction: float, min_cooccurrence: float, max_ratio_cv: float
) -> list[Claim]:
    tokens = result.tokens
    if tokens is None or tokens.empty:
        reason = f"no spike token in {result.n_prompts} prompts at blocks {result.blocks}"
        return [spec.na(model, reason) for spec in CLAIMS]
    channels = ", ".join(map(str, result.spike_channels))
    where = f"{len(tokens)} spike tokens of {result.n_prompts} prompts at blocks {_blocks(result.blocks)}"
    share, _ = cooccurrence(result, channel_fraction)
    rows = [
        TOGETHER.judge(
            model,
            f"every spike channel ({channels}) on in {share.text('{:.3f}')} of {where} (95% interval over prompts)",
            share,
            min_cooccurrence,
            ">=",
            f"share >= {min_cooccurrence:g}; a channel is on at >= {channel_fraction:g} of the token's largest |h|",
        )
    ]
    spread, table = ratio_spread(result, channel_fraction)
    if table.empty or not np.isfinite(spread.value):
        rows.append(FIXED_RATIOS.na(model, f"no spike token carries the reference channel {result.reference_channel}"))
        return rows
    by_channel = table.groupby("channel").agg(mean_ratio=("mean_ratio", "mean"), cv=("cv", "max"))
    ratios = "; ".join(
        f"c_{ch} / c_{result.reference_channel} = {r.mean_ratio:+.3f} (CV {r.cv:.3g})"
        for ch, r in by_channel.iterrows()
    )
    rows.append(
        FIXED_RATIOS.judge(
            model,
            f"{ratios}; largest CV over channels and blocks {spread.text('{:.3g}')} (95% interval over prompts); {where}",
            spread,
            max_ratio_cv,
            "<=",
            f"CV of every c_i / c_ref <= {max_ratio_cv:g} at every block read (interval)",
        )
    )
    return rows


def _blocks(blocks) -> str:
    blocks = list(blocks)
    return (
        f"{blocks[0]}-{blocks[-1]}"
        if len(blocks) > 1 and blocks == list(range(blocks[0], blocks[-1] + 1))
        else ", ".join(map(str, blocks))
    )
