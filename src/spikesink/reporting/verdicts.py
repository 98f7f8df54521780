"""Verdicts with uncertainty: a measured value, its 95 % bootstrap interval, and the threshold.

A claim "holds" when its whole interval lies on the threshold's passing side, "fails" when the
whole interval lies on the other side, and is "inconclusive" when the interval straddles the
threshold: a 44 % drop against a 50 % bar with an interval of 30-60 % decides nothing. Without an
interval (a single measurement), the point decides. Intervals are percentile bootstraps over the
units the measurement repeats over (prompts; seeds for Section 4), with a fixed seed so reruns
give the same interval (torch-free).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

HOLDS, FAILS, INCONCLUSIVE, NA = "holds", "fails", "inconclusive", "n/a"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NA)
N_BOOTSTRAP = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A measured value with its interval (low == high == value when there is none)."""

    value: float
    low: float
    high: float
    n: int = 1  # units resampled (prompts, seeds); 1: no interval

    @classmethod
    def point(cls, value: float) -> Estimate:
        return cls(float(value), float(value), float(value), 1)

    @property
    def has_interval(self) -> bool:
        return self.n > 1 and np.isfinite(self.low) and np.isfinite(self.high)

    def text(self, fmt: str = "{:.3g}") -> str:
        """'0.44 [0.30, 0.60]' (the interval only when there is one)."""
        value = fmt.format(self.value)
        if not self.has_interval:
            return value
        return f"{value} [{fmt.format(self.low)}, {fmt.format(self.high)}]"


def bootstrap(
    statistic: Callable[[np.ndarray], float],
    n_units: int,
    n_resamples: int = N_BOOTSTRAP,
    level: float = LEVEL,
    seed: int = 0,
) -> Estimate:
    """Percentile bootstrap of `statistic(indices)` over `n_units` resampled with replacement.

    `statistic` gets an index array into the units (all of them for the point estimate), so it
    can resample several aligned per-unit arrays at once (e.g. a ratio of two perplexities
    measured on the same prompts). Non-finite resamples are dropped.
    """
    point = float(statistic(np.arange(n_units)))
    if n_units < 2:
        return Estimate(point, point, point, n_units)
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(rng.integers(0, n_units, n_units)) for _ in range(n_resamples)], dtype=float)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return Estimate(point, float("nan"), float("nan"), n_units)
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return Estimate(point, float(low), float(high), n_units)


def mean_estimate(values: Sequence[float], seed: int = 0) -> Estimate:
    """The mean of per-unit values with its bootstrap interval."""
    values = np.asarray(values, dtype=float)
    return bootstrap(lambda idx: float(values[idx].mean()), len(values), seed=seed)


def share_estimate(hits: int, total: int) -> Estimate:
    """A share with its Wilson 95 % interval (e.g. vocabulary ids that spike)."""
    if total == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    z = 1.959963984540054
    p = hits / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), total)


def verdict(estimate: Estimate | float, threshold: float, passes: str = ">=") -> str:
    """holds / fails / inconclusive for `estimate` against `threshold`; passes: '>=', '>', '<=', '<'."""
    est = estimate if isinstance(estimate, Estimate) else Estimate.point(float(estimate))
    if not np.isfinite(est.value):
        return INCONCLUSIVE
    ok = {">=": lambda v: v >= threshold, ">": lambda v: v > threshold, "<=": lambda v: v <= threshold}
    ok["<"] = lambda v: v < threshold
    if passes not in ok:
        raise ValueError(f"passes must be one of {sorted(ok)}, got {passes!r}")
    test = ok[passes]
    if not est.has_interval:
        return HOLDS if test(est.value) else FAILS
    low_ok, high_ok = test(est.low), test(est.high)
    if low_ok and high_ok:
        return HOLDS
    if not low_ok and not high_ok:
        return FAILS
    return INCONCLUSIVE


def combine(verdicts: Sequence[str]) -> str:
    """Several conditions that must all hold: any fail fails, else any inconclusive is inconclusive."""
    verdicts = list(verdicts)
    if not verdicts or NA in verdicts:
        return NA
    if FAILS in verdicts:
        return FAILS
    if INCONCLUSIVE in verdicts:
        return INCONCLUSIVE
    return HOLDS
