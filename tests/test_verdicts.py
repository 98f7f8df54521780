"""Verdicts with intervals: holds / fails / inconclusive from a bootstrap interval and a threshold."""

import numpy as np
import pytest

from spikesink.reporting.verdicts import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    NA,
    Estimate,
    bootstrap,
    combine,
    mean_estimate,
    share_estimate,
    verdict,
)


def test_an_interval_straddling_the_threshold_is_inconclusive():
    assert verdict(Estimate(0.44, 0.30, 0.60, 16), 0.5) == INCONCLUSIVE
    assert verdict(Estimate(0.70, 0.55, 0.80, 16), 0.5) == HOLDS
    assert verdict(Estimate(0.20, 0.10, 0.40, 16), 0.5) == FAILS
    # the direction of the comparison counts
    assert verdict(Estimate(0.20, 0.10, 0.40, 16), 0.5, "<=") == HOLDS
    # a single measurement: the point decides
    assert verdict(0.44, 0.5) == FAILS and verdict(Estimate.point(0.51), 0.5) == HOLDS
    assert verdict(float("nan"), 0.5) == INCONCLUSIVE


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_more_units():
    rng = np.random.default_rng(0)
    small, large = rng.normal(1.0, 1.0, 16), rng.normal(1.0, 1.0, 1024)
    a, b = mean_estimate(small), mean_estimate(large)
    assert a.low < a.value < a.high and b.low < b.value < b.high
    assert (b.high - b.low) < (a.high - a.low) / 4
    assert b.low < 1.0 < b.high
    # deterministic: the same seed gives the same interval
    assert mean_estimate(small) == a


def test_bootstrap_resamples_aligned_units_together():
    base = np.array([10.0, 20.0, 30.0, 40.0])
    edited = 2 * base  # every unit exactly doubled: the ratio has no spread
    est = bootstrap(lambda i: edited[i].sum() / base[i].sum(), len(base))
    assert est.value == pytest.approx(2.0) and est.low == pytest.approx(2.0) and est.high == pytest.approx(2.0)
    assert est.text() == "2 [2, 2]" and Estimate.point(2).text() == "2"


def test_share_interval_is_wilson():
    est = share_estimate(98, 100)
    assert (
        est.value == 0.98 and est.low == pytest.approx(0.9300, abs=1e-3) and est.high == pytest.approx(0.9945, abs=1e-3)
    )
    assert share_estimate(0, 10).low == 0.0


def test_combined_conditions():
    assert combine([HOLDS, HOLDS]) == HOLDS
    assert combine([HOLDS, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine([INCONCLUSIVE, FAILS]) == FAILS
    assert combine([HOLDS, NA]) == NA and combine([]) == NA
