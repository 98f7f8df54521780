"""Fig. 6 claims: sink keys span 1-2 dimensions; non-sink queries sit closer to the sink key."""

from __future__ import annotations

import pandas as pd

from spikesink.analyses.sink_geometry import ANALYSIS
from spikesink.analyses.sink_geometry.result import SinkGeometry
from spikesink.analyses.unit import Job
from spikesink.reporting.scorecard import Claim

SECTION = ANALYSIS.section


def claims(result: SinkGeometry, job: Job) -> list[Claim]:
    c = job.settings.claims
    return geometry_claims(
        job.model_name,
        result.subspace,
        result.gaps,
        eps=job.shared.sink_eps,
        bos_added=result.bos_added,
        max_rank=c.max_rank,
        min_top2_share=c.min_top2_share,
    )


def geometry_claims(
    model: str,
    subspace: pd.DataFrame,
    gaps: pd.DataFrame,
    eps: float,
    bos_added: bool,
    max_rank: float,
    min_top2_share: float,
) -> list[Claim]:
    claims = []
    # geometry claims are about a head that does sink, and about keys of *different* first
    # tokens: with a BOS every prompt's key 0 is the same vector and rank one says nothing
    sink_head_sinks = not gaps.empty and float(gaps.set_index("role").loc["sink", "key0_mass"]) > eps
    first_tokens_vary = not bos_added
    if not subspace.empty:
        sink_keys = subspace[
            (subspace["role"] == "sink") & (subspace["keys"] == "k(s)") & (~subspace["centered"])
        ].iloc[0]
        other_keys = subspace[
            (subspace["role"] == "sink") & (subspace["keys"] == "k(n)") & (~subspace["centered"])
        ].iloc[0]
        claims.append(
            Claim(
                SECTION,
                "sink keys live in a 1-2 dimensional subspace",
                model,
                "1-2 dimensions",
                f"sink head L{sink_keys['layer']}H{sink_keys['head']}: k(s) effective rank {sink_keys['effective_rank']:.2f}, "
                f"top-2 energy {sink_keys['top2_share']:.3f}; k(n) effective rank {other_keys['effective_rank']:.2f}",
                bool(
                    sink_head_sinks
                    and first_tokens_vary
                    and sink_keys["top2_share"] >= min_top2_share
                    and sink_keys["effective_rank"] <= max_rank
                    and sink_keys["effective_rank"] < other_keys["effective_rank"]
                ),
                f"the head sinks (key-0 mass > {eps}), first tokens vary (no BOS), top-2 energy >= {min_top2_share}, "
                f"effective rank <= {max_rank} and below the non-sink keys'",
            )
        )
    if not gaps.empty:
        by_role = gaps.set_index("role")
        sink, non = by_role.loc["sink"], by_role.loc["non_sink"]
        claims.append(
            Claim(
                SECTION,
                "in sink heads non-sink queries sit closer to the sink key than to non-sink keys",
                model,
                "closer to k(s) than to k(n) in sink heads (Fig 6)",
                f"sink head: cos gap {sink['cos_gap']:+.3f}, {100 * sink['share_closer_to_sink']:.0f}% of queries closest to k(s); "
                f"non-sink head: cos gap {non['cos_gap']:+.3f}, {100 * non['share_closer_to_sink']:.0f}%",
                bool(sink_head_sinks and sink["cos_gap"] > 0 and sink["cos_gap"] > non["cos_gap"]),
                f"the head sinks (key-0 mass > {eps}); cosine gap > 0 and larger than in the non-sink head",
            )
        )
    return claims
