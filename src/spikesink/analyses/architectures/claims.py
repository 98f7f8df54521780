"""Table 5 on released weights: do non-pre-norm models spike less and still sink?"""

from __future__ import annotations

import pandas as pd

from spikesink.analyses.architectures import ANALYSIS
from spikesink.analyses.architectures.result import Architectures
from spikesink.analyses.unit import Job
from spikesink.reporting.scorecard import Claim, not_applicable

SECTION = ANALYSIS.section


def claims(result: Architectures, job: Job) -> list:
    c = job.settings.claims
    return architecture_claims(result.table, c.min_ratio_gap, c.sink_tolerance)


def _group(frame: pd.DataFrame, pre: bool) -> pd.DataFrame:
    """Pre-norm (and parallel) models, or sandwich / output-norm ones; true post-norm (OPT-350m,
    a stream that is itself a norm's output) is neither."""
    placement = frame["norm placement"]
    return frame[placement.isin(["pre", "parallel"] if pre else ["sandwich", "post"])]


SPIKE_CLAIM = "sandwich / output-norm models have a much smaller spike relative to their median (released weights)"
SINK_CLAIM = "sandwich / output-norm models still sink (released weights)"
PAPER_SPIKE = "Table 5: sandwich 520, sandwich + QK-norm 92 vs pre-norm 3818 (trained from scratch)"
PAPER_SINK = "Table 5: sink ratio 44.7 / 42.0 vs 46.0 %: sinks stay"
CONFOUND = " Confounded by size, data, tokenizer and training length: a hint, not an ablation."


def _listing(group: pd.DataFrame, column: str, fmt: str) -> str:
    return ", ".join(f"{m} {fmt.format(v)}" for m, v in zip(group["model"], group[column]))


def _spike_claim(spiking: pd.DataFrame, other: pd.DataFrame, min_ratio_gap: float) -> Claim:
    """Compared with the pre-norm models that do spike: otherwise the claim would hold vacuously."""
    if spiking.empty:
        return not_applicable(SECTION, SPIKE_CLAIM, "all", PAPER_SPIKE, "no pre-norm model has a detected spike")
    gap = float(spiking["peak / median"].min() / max(other["peak / median"].max(), 1e-30))
    return Claim(
        SECTION,
        SPIKE_CLAIM,
        "all",
        PAPER_SPIKE,
        f"peak/median: pre-norm {_listing(spiking, 'peak / median', '{:.3g}')}; other "
        f"{_listing(other, 'peak / median', '{:.3g}')} (gap {gap:.3g}x).{CONFOUND}",
        gap >= min_ratio_gap,
        f"smallest spiking pre-norm ratio >= {min_ratio_gap:g}x the largest other ratio",
    )


def _sink_claim(sinking: pd.DataFrame, other: pd.DataFrame, sink_tolerance: float) -> Claim:
    """Compared with the pre-norm models that do sink."""
    if sinking.empty:
        return not_applicable(SECTION, SINK_CLAIM, "all", PAPER_SINK, "no pre-norm model sinks")
    floor = sink_tolerance * float(sinking["sink ratio (%)"].median())
    return Claim(
        SECTION,
        SINK_CLAIM,
        "all",
        PAPER_SINK,
        f"sink ratio: pre-norm {_listing(sinking, 'sink ratio (%)', '{:.1f} %')}; other "
        f"{_listing(other, 'sink ratio (%)', '{:.1f} %')}.{CONFOUND}",
        bool((other["sink ratio (%)"] >= floor).all()),
        f"every other model >= {sink_tolerance:g} x the median of the sinking pre-norm models ({floor:.1f} %)",
    )


def architecture_claims(frame: pd.DataFrame, min_ratio_gap: float = 10.0, sink_tolerance: float = 0.5) -> list:
    """Table 5 on released weights: non-pre-norm models spike less (relative to their median)
    than pre-norm ones while their sinks stay; reported whichever way the numbers fall.

    - spike: the largest peak/median among non-pre-norm models is at least `min_ratio_gap` times
      smaller than the smallest among pre-norm models;
    - sinks stay: every non-pre-norm model's sink ratio is at least `sink_tolerance` times the
      median sink ratio of the pre-norm models.
    """
    pre, other = _group(frame, True), _group(frame, False)
    if pre.empty or other.empty:
        reason = "needs at least one pre-norm and one sandwich/output-norm model; configured: " + (
            ", ".join(f"{m} ({p})" for m, p in zip(frame["model"], frame["norm placement"])) or "none"
        )
        return [
            not_applicable(SECTION, SPIKE_CLAIM, "all", PAPER_SPIKE, reason),
            not_applicable(SECTION, SINK_CLAIM, "all", PAPER_SINK, reason),
        ]
    return [
        _spike_claim(pre[pre["step-up"].map(len) > 0], other, min_ratio_gap),
        _sink_claim(pre[pre["sink ratio (%)"] > 0], other, sink_tolerance),
    ]
