"""Fig. 2 claims: SiLU (or the family's gate activation) is near identity on spike tokens.

Per step block, the median cos(act(x), x) and norm ratio ||act(x)|| / ||x|| of the spike tokens
(and of the ordinary tokens) carry 95 % bootstrap intervals over sentences: a resample draws
sentences with replacement and takes every token of each (`median_estimates`). The identity claim
needs both medians above their thresholds in every step block; the "closer" claim needs the spike
tokens' medians above the ordinary tokens' (the difference, on the same resamples) in every block.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spikesink.analyses.silu_regime import ANALYSIS
from spikesink.analyses.silu_regime.result import SiluRegime
from spikesink.analyses.unit import Job
from spikesink.reporting.scorecard import Claim, ClaimSpec
from spikesink.reporting.verdicts import INCONCLUSIVE, LEVEL, N_BOOTSTRAP, Estimate, combine, verdict

SECTION = ANALYSIS.section
METRICS = ("cos", "norm_ratio")


def claims(result: SiluRegime, job: Job) -> list[Claim]:
    return silu_claims(job.model_name, result.frame, result.not_applicable, result.activation, job.settings.claims)


def summarize_silu(frame: pd.DataFrame) -> pd.DataFrame:
    """Per block and spike flag: token count and the median / 5th percentile of cos and ratio."""
    grouped = frame.groupby(["block", "is_spike"])
    return grouped.agg(
        n=("cos", "size"),
        cos_median=("cos", "median"),
        cos_p05=("cos", lambda v: float(np.quantile(v, 0.05))),
        norm_ratio_median=("norm_ratio", "median"),
        out_peak_median=("out_peak", "median"),
    ).reset_index()


def _weighted_median_draws(values: np.ndarray, units: np.ndarray, counts: np.ndarray, chunk: int = 128) -> np.ndarray:
    """Median of `values` in each resample; a row's weight is its unit's count in that resample
    (counts: (R, n_units)). NaN where a resample holds none of the rows.

    Exact, and cheap on many rows: the cumulative weight is formed only over a window of the sorted
    rows around the unweighted median (the weight below it from per-unit row counts); resamples
    whose median falls outside the window are redone over all rows.
    """
    n_rows, n_units = values.size, counts.shape[1]
    if n_rows == 0:
        return np.full(counts.shape[0], np.nan)
    order = np.argsort(values, kind="stable")
    sorted_values, sorted_units = values[order], units[order]
    total = counts @ np.bincount(sorted_units, minlength=n_units)
    lo, hi = (0, n_rows) if n_rows < 4096 else (int(0.45 * n_rows), int(0.55 * n_rows) + 1)
    below = counts @ np.bincount(sorted_units[:lo], minlength=n_units)
    out = _median_in_window(sorted_values, sorted_units, counts, below, total, lo, hi, chunk)
    outside = np.isnan(out) & (total > 0)
    if outside.any():
        out[outside] = _median_in_window(
            sorted_values, sorted_units, counts[outside], np.zeros(int(outside.sum())), total[outside], 0, n_rows, chunk
        )
    return out


def _median_in_window(sorted_values, sorted_units, counts, below, total, lo, hi, chunk) -> np.ndarray:
    """The first sorted row in [lo, hi) whose cumulative weight reaches half the total, per resample;
    NaN where that row lies outside the window (or the resample is empty)."""
    out = np.full(counts.shape[0], np.nan)
    half = total / 2
    for start in range(0, counts.shape[0], chunk):
        rows = slice(start, start + chunk)
        cumulative = below[rows, None] + np.cumsum(counts[rows][:, sorted_units[lo:hi]], axis=1)
        inside = (below[rows] < half[rows]) & (cumulative[:, -1] >= half[rows]) & (total[rows] > 0)
        index = lo + (cumulative < half[rows, None]).sum(axis=1)
        out[rows] = np.where(inside, sorted_values[np.minimum(index, sorted_values.size - 1)], np.nan)
    return out


def _estimate(value: float, draws: np.ndarray, n_units: int) -> Estimate:
    draws = draws[np.isfinite(draws)]
    if not np.isfinite(value) or n_units < 2 or draws.size == 0:
        return Estimate(float(value), float(value), float(value), 1)
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return Estimate(float(value), float(low), float(high), n_units)


def median_estimates(frame: pd.DataFrame, seed: int = 0, n_resamples: int = N_BOOTSTRAP) -> dict[int, dict]:
    """Per block: {metric: Estimate} of the spike tokens' medians, `<metric>_other` of the ordinary
    tokens' and `<metric>_gap` of their difference, bootstrapped over sentences (the `sample`
    column); `n_spike`, `n_other` token counts."""
    frame = frame.reset_index(drop=True)
    samples, units = np.unique(frame["sample"].to_numpy(), return_inverse=True)
    n = len(samples)
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_resamples) if n > 1 else None
    out = {}
    for block, rows in frame.groupby("block"):
        spike = rows["is_spike"].to_numpy(bool)
        block_units = units[rows.index.to_numpy()]
        entry = {"n_spike": int(spike.sum()), "n_other": int((~spike).sum())}
        for metric in METRICS:
            values = rows[metric].to_numpy(np.float64)
            point = {
                part: float(np.median(values[mask])) if mask.any() else float("nan")
                for part, mask in (("spike", spike), ("other", ~spike))
            }
            if counts is None:
                draws = {part: np.zeros(0) for part in point}
            else:
                draws = {
                    part: _weighted_median_draws(values[mask], block_units[mask], counts)
                    for part, mask in (("spike", spike), ("other", ~spike))
                }
            entry[metric] = _estimate(point["spike"], draws["spike"], n)
            entry[f"{metric}_other"] = _estimate(point["other"], draws["other"], n)
            gap_draws = draws["spike"] - draws["other"] if counts is not None else np.zeros(0)
            entry[f"{metric}_gap"] = _estimate(point["spike"] - point["other"], gap_draws, n)
        out[int(block)] = entry
    return out


IDENTITY = ClaimSpec(
    SECTION,
    "SiLU acts as the identity on spike tokens in step-up/step-down blocks",
    "cos(SiLU(x), x) ~ 1 and ||SiLU(x)|| ~ ||x|| (Fig 2)",
)
CLOSER = ClaimSpec(
    SECTION,
    "spike tokens sit closer to the SiLU identity regime than ordinary tokens",
    "spike tokens in the linear regime, others not (Fig 2)",
)


def _weakest(candidates: list[tuple[Estimate, float, str]]) -> Estimate | None:
    """The estimate nearest to failing: the smallest (bound on the passing side - threshold)."""
    scored = [
        (est.low - threshold if passes.startswith(">") else threshold - est.high, est)
        for est, threshold, passes in candidates
        if np.isfinite(est.value)
    ]
    return min(scored, key=lambda pair: pair[0])[1] if scored else None


def _specs_for(model: str, activation: str) -> tuple[list[Claim], ClaimSpec, ClaimSpec]:
    """(n/a rows, identity spec, closer spec): the paper's SiLU rows, or, for another gate
    activation, n/a SiLU rows and the same two questions about that activation, beyond the paper."""
    if activation == "silu":
        return [], IDENTITY, CLOSER
    rows = [spec.na(model, f"the gate activation is {activation}, not SiLU") for spec in (IDENTITY, CLOSER)]
    identity = ClaimSpec(
        SECTION, f"beyond the paper: {activation} acts as the identity on spike tokens in step blocks", IDENTITY.paper
    )
    closer = ClaimSpec(
        SECTION, f"beyond the paper: spike tokens sit closer to the {activation} identity regime", CLOSER.paper
    )
    return rows, identity, closer


def _block_verdicts(estimates: dict[int, dict], c):
    """Per step block, the identity and closer verdicts, the estimates each was judged on (to show
    the weakest) and the block's text."""
    near, close, near_candidates, close_candidates, parts = [], [], [], [], []
    for block, e in estimates.items():
        if not e["n_spike"]:
            near.append(INCONCLUSIVE)
            close.append(INCONCLUSIVE)
            parts.append(f"block {block}: no spike token")
            continue
        for metric, threshold in (("cos", c.min_cos), ("norm_ratio", c.min_norm_ratio)):
            near.append(verdict(e[metric], threshold, ">="))
            near_candidates.append((e[metric], threshold, ">="))
            if e["n_other"]:
                close.append(verdict(e[f"{metric}_gap"], c.min_gap_over_others, ">"))
                close_candidates.append((e[f"{metric}_gap"], c.min_gap_over_others, ">"))
            else:
                close.append(INCONCLUSIVE)
        parts.append(
            f"block {block}: cos {e['cos'].text('{:.3f}')}, norm ratio {e['norm_ratio'].text('{:.3f}')} "
            f"(n={e['n_spike']}; others {e['cos_other'].value:.3f} / {e['norm_ratio_other'].value:.3f})"
        )
    return near, close, near_candidates, close_candidates, parts


def silu_claims(
    model: str,
    frame: pd.DataFrame,
    reason: str | None = None,
    activation: str = "silu",
    thresholds=None,
) -> list[Claim]:
    """Near-identity SiLU for spike tokens in every step block, and closer to identity than others.

    thresholds: the `claims:` settings (job.settings.claims; None: the schema's defaults). A gated
    FFN with another activation (Gemma's GeGLU) answers the same two questions for its own
    activation in rows marked "beyond the paper"; the SiLU rows read n/a for it.
    """
    from spikesink.config import analysis_settings

    c = thresholds if thresholds is not None else analysis_settings("silu_regime").claims
    if reason is None and (frame is None or frame.empty):
        reason = "no token was measured"
    if reason:
        return [IDENTITY.na(model, reason), CLOSER.na(model, reason)]
    rows, identity, closer = _specs_for(model, activation)
    if not frame["is_spike"].any():
        why = "no spike token among the measured sentences"
        return rows + [identity.na(model, why), closer.na(model, why)]
    near, close, near_candidates, close_candidates, parts = _block_verdicts(median_estimates(frame), c)
    n_sentences = frame["sample"].nunique()
    ours = "; ".join(parts) + f" (medians of spike tokens, 95% intervals over {n_sentences} sentences)"
    return rows + [
        identity(
            model,
            ours,
            combine(near),
            f"median cos >= {c.min_cos:g} and median norm ratio >= {c.min_norm_ratio:g} in every step block (intervals)",
            _weakest(near_candidates),
        ),
        closer(
            model,
            ours,
            combine(close),
            f"spike tokens' median cos and norm ratio above the other tokens' by > {c.min_gap_over_others:g} in every "
            "step block (intervals of the differences)",
            _weakest(close_candidates),
        ),
    ]
