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
    is_pre = frame["norm placement"].isin(["pre", "parallel"])
    return frame[is_pre if pre else ~is_pre]


def architecture_claims(frame: pd.DataFrame, min_ratio_gap: float = 10.0, sink_tolerance: float = 0.5) -> list:
    """Table 5 on released weights: non-pre-norm models spike less (relative to their median)
    than pre-norm ones while their sinks stay; reported whichever way the numbers fall.

    - spike: the largest peak/median among non-pre-norm models is at least `min_ratio_gap` times
      smaller than the smallest among pre-norm models;
    - sinks stay: every non-pre-norm model's sink ratio is at least `sink_tolerance` times the
      median sink ratio of the pre-norm models.
    """
    spike_claim = "sandwich / output-norm models have a much smaller spike relative to their median (released weights)"
    sink_claim = "sandwich / output-norm models still sink (released weights)"
    paper_spike = "Table 5: sandwich 520, sandwich + QK-norm 92 vs pre-norm 3818 (trained from scratch)"
    paper_sink = "Table 5: sink ratio 44.7 / 42.0 vs 46.0 %: sinks stay"
    pre, other = _group(frame, True), _group(frame, False)
    if pre.empty or other.empty:
        reason = "needs at least one pre-norm and one sandwich/output-norm model; configured: " + (
            ", ".join(f"{m} ({p})" for m, p in zip(frame["model"], frame["norm placement"])) or "none"
        )
        return [
            not_applicable(SECTION, spike_claim, "all", paper_spike, reason),
            not_applicable(SECTION, sink_claim, "all", paper_sink, reason),
        ]
    confound = " Confounded by size, data, tokenizer and training length: a hint, not an ablation."
    # compared with the pre-norm models that do spike (sink): otherwise the claims hold vacuously
    spiking = pre[pre["step-up"].map(len) > 0]
    sinking = pre[pre["sink ratio (%)"] > 0]

    def listing(group, column, fmt):
        return ", ".join(f"{m} {fmt.format(v)}" for m, v in zip(group["model"], group[column]))

    claims = []
    if spiking.empty:
        claims.append(
            not_applicable(SECTION, spike_claim, "all", paper_spike, "no pre-norm model has a detected spike")
        )
    else:
        gap = float(spiking["peak / median"].min() / max(other["peak / median"].max(), 1e-30))
        claims.append(
            Claim(
                SECTION,
                spike_claim,
                "all",
                paper_spike,
                f"peak/median: pre-norm {listing(spiking, 'peak / median', '{:.3g}')}; other "
                f"{listing(other, 'peak / median', '{:.3g}')} (gap {gap:.3g}x).{confound}",
                gap >= min_ratio_gap,
                f"smallest spiking pre-norm ratio >= {min_ratio_gap:g}x the largest other ratio",
            )
        )
    if sinking.empty:
        claims.append(not_applicable(SECTION, sink_claim, "all", paper_sink, "no pre-norm model sinks"))
    else:
        floor = sink_tolerance * float(sinking["sink ratio (%)"].median())
        claims.append(
            Claim(
                SECTION,
                sink_claim,
                "all",
                paper_sink,
                f"sink ratio: pre-norm {listing(sinking, 'sink ratio (%)', '{:.1f} %')}; other "
                f"{listing(other, 'sink ratio (%)', '{:.1f} %')}.{confound}",
                bool((other["sink ratio (%)"] >= floor).all()),
                f"every other model >= {sink_tolerance:g} x the median of the sinking pre-norm models ({floor:.1f} %)",
            )
        )
    return claims
