"""Fig. 6 claims: sink keys span 1-2 dimensions; non-sink queries sit closer to the sink key.

Both claims are about a head that sinks: when the most sinking head of the middle layers does not
(its mean attention on key 0 is at most sinks.eps), they read n/a. The subspace claim needs keys of
*different* first tokens: with a BOS every prompt's key 0 is the same vector and rank one says
nothing (n/a). Intervals are 95 % bootstraps over prompts: of the sink keys' effective rank and
top-2 energy (one key per prompt), of the sink head's mean cosine gap and of its excess over the
non-sink head's (the same prompts, paired).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spikesink.analyses.sink_geometry import ANALYSIS
from spikesink.analyses.sink_geometry.result import SinkGeometry
from spikesink.analyses.unit import Job
from spikesink.reporting.scorecard import Claim, ClaimSpec
from spikesink.reporting.verdicts import Estimate, bootstrap, combine, verdict

SECTION = ANALYSIS.section
SUBSPACE = ClaimSpec(SECTION, "sink keys live in a 1-2 dimensional subspace", "1-2 dimensions")
CLOSER = ClaimSpec(
    SECTION,
    "in sink heads non-sink queries sit closer to the sink key than to non-sink keys",
    "closer to k(s) than to k(n) in sink heads (Fig 6)",
)
CLAIMS = (SUBSPACE, CLOSER)


def claims(result: SinkGeometry, job: Job) -> list[Claim]:
    c = job.settings.claims
    if result.not_applicable:
        return [spec.na(job.model_name, result.not_applicable) for spec in CLAIMS]
    return geometry_claims(
        job.model_name,
        result.subspace,
        result.gaps,
        eps=job.shared.sink_eps,
        bos_added=result.bos_added,
        max_rank=c.max_rank,
        min_top2_share=c.min_top2_share,
        min_cos_gap=c.min_cos_gap,
        min_gap_over_non_sink=c.min_gap_over_non_sink,
        per_prompt=result.per_prompt,
    )


def _interval(row: pd.Series, name: str) -> Estimate:
    """A subspace statistic with its bootstrap interval (stored by measure), or the point alone."""
    value, low, high = (float(row.get(key, np.nan)) for key in (name, f"{name}_low", f"{name}_high"))
    if np.isfinite(low) and np.isfinite(high):
        return Estimate(value, low, high, int(row.get("n_vectors", 2)))
    return Estimate.point(value)


def geometry_claims(
    model: str,
    subspace: pd.DataFrame,
    gaps: pd.DataFrame,
    eps: float,
    bos_added: bool,
    max_rank: float,
    min_top2_share: float,
    min_cos_gap: float,
    min_gap_over_non_sink: float,
    per_prompt: pd.DataFrame | None = None,
) -> list[Claim]:
    if gaps is None or gaps.empty or subspace is None or subspace.empty:
        return [spec.na(model, "no head was measured (empty geometry tables)") for spec in CLAIMS]
    by_role = gaps.set_index("role")
    sink, non = by_role.loc["sink"], by_role.loc["non_sink"]
    head = f"L{int(sink['layer'])}H{int(sink['head'])}"
    if not float(sink["key0_mass"]) > eps:
        reason = f"no head sinks: the most sinking head of the middle layers ({head}) gives key 0 {float(sink['key0_mass']):.3f} <= eps {eps}"
        return [spec.na(model, reason) for spec in CLAIMS]
    return [
        _subspace_row(model, subspace, head, bos_added, max_rank, min_top2_share),
        _closer_row(model, sink, non, per_prompt, head, min_cos_gap, min_gap_over_non_sink),
    ]


def _subspace_row(model, subspace, head, bos_added, max_rank, min_top2_share) -> Claim:
    if bos_added:
        return SUBSPACE.na(model, "a BOS makes every prompt's key 0 the same vector: rank one says nothing")
    uncentred = subspace[(subspace["role"] == "sink") & (~subspace["centered"].astype(bool))].set_index("keys")
    sink_keys, other_keys = uncentred.loc["k(s)"], uncentred.loc["k(n)"]
    rank, top2 = _interval(sink_keys, "effective_rank"), _interval(sink_keys, "top2_share")
    held = combine(
        [
            verdict(rank, max_rank, "<="),
            verdict(top2, min_top2_share, ">="),
            verdict(rank.value, float(other_keys["effective_rank"]), "<"),
        ]
    )
    return SUBSPACE(
        model,
        f"sink head {head}: k(s) effective rank {rank.text('{:.2f}')}, top-2 energy {top2.text('{:.3f}')}; "
        f"k(n) effective rank {float(other_keys['effective_rank']):.2f}"
        + (f" (95% intervals over {rank.n} prompts)" if rank.has_interval else ""),
        held,
        f"effective rank <= {max_rank:g} and top-2 energy >= {min_top2_share:g} (intervals), rank below the "
        "non-sink keys'",
        rank,
    )


def _closer_row(model, sink, non, per_prompt, head, min_cos_gap, min_gap_over_non_sink) -> Claim:
    if per_prompt is not None and not per_prompt.empty:
        table = per_prompt.pivot(index="prompt", columns="role", values="cos_gap")
        gap_s, gap_n = table["sink"].to_numpy(float), table["non_sink"].to_numpy(float)
        gap = bootstrap(lambda idx: float(gap_s[idx].mean()), len(gap_s))
        excess = bootstrap(lambda idx: float((gap_s[idx] - gap_n[idx]).mean()), len(gap_s))
    else:  # results measured before the per-prompt table: points only
        gap = Estimate.point(float(sink["cos_gap"]))
        excess = Estimate.point(float(sink["cos_gap"]) - float(non["cos_gap"]))
    held = combine([verdict(gap, min_cos_gap, ">"), verdict(excess, min_gap_over_non_sink, ">")])
    return CLOSER(
        model,
        f"sink head {head}: cos gap {gap.text('{:+.3f}')}, {100 * float(sink['share_closer_to_sink']):.0f}% of queries "
        f"closest to k(s); non-sink head: cos gap {float(non['cos_gap']):+.3f}, "
        f"{100 * float(non['share_closer_to_sink']):.0f}%; excess over it {excess.text('{:+.3f}')} (95% intervals over "
        f"{gap.n} prompts)",
        held,
        f"cosine gap > {min_cos_gap:g} and above the non-sink head's by > {min_gap_over_non_sink:g} (intervals)",
        gap,
    )
