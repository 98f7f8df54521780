"""Section 3.2 claims about attention sinks: from the extraction's sink statistics and the
geometry tables (sink_claims), and from the spike intervention (intervention_claims)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from spikesink.results import SinkStats
from spikesink.reporting.scorecard import Claim

SECTION = "3.2 sinks"


def sink_claims(
    model: str,
    sinks: SinkStats,
    lifecycle: dict,
    subspace: pd.DataFrame,
    gaps: pd.DataFrame,
    eps: float = 0.3,
    bos_added: bool = False,
    max_rank: float = 2.5,
    min_top2_share: float = 0.9,
) -> list[Claim]:
    claims = []
    ratio = float(sinks.sink_ratio)
    key0 = float(sinks.key0_mass_mean)
    spike_mass = np.asarray(sinks.spike_mass, dtype=np.float64)
    key0_all = np.asarray(sinks.key0_mass, dtype=np.float64)
    sinking = key0_all > eps
    # of the attention a sinking head gives to spike tokens, how much lands on key 0
    share_on_spikes = float(np.nanmean(spike_mass[sinking])) if sinking.any() else float("nan")
    claims.append(
        Claim(
            SECTION,
            "attention sinks form on the spike token (key 0)",
            model,
            "sink heads put most attention on the first token, the spike token",
            f"sink ratio {ratio:.1f}% (eps {eps}), mean attention on key 0 {key0:.3f}; sinking heads give "
            f"{share_on_spikes:.3f} of their attention to spike tokens (key 0 included)",
            ratio > 0 and bool(lifecycle.get("massive_blocks")) and lifecycle.get("position0_spike_fraction", 0) >= 0.5,
            "sink ratio > 0 and position 0 is a spike token in most prompts",
        )
    )
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


def intervention_claims(
    model: str, intervention: pd.DataFrame | None, reason: str | None = None, min_ratio_drop: float = 0.5
) -> list[Claim]:
    """Removing the spike at the step-up block: does the sink go (n/a without a detected spike)?"""
    from spikesink.reporting.scorecard import not_applicable

    claim = "removing the spike at the step-up block removes the sink"
    paper = "spikes and sinks are coupled through the first token (beyond the paper's Section 3: Sun et al. 2024)"
    if reason or intervention is None or intervention.empty:
        return [not_applicable(SECTION, claim, model, paper, reason or "no intervention was run")]
    claims = []
    for _, row in intervention[intervention["condition"] != "none"].iterrows():
        base = intervention[(intervention["condition"] == "none") & (intervention["block"] == row["block"])].iloc[0]
        claims.append(
            Claim(
                SECTION,
                f"removing the spike ({row['condition']} at block {row['block']}) removes the sink",
                model,
                paper,
                f"sink ratio {base['sink_ratio']:.1f}% -> {row['sink_ratio']:.1f}%, key-0 mass {base['key0_mass']:.3f} -> "
                f"{row['key0_mass']:.3f}, perplexity {base['perplexity']:.2f} -> {row['perplexity']:.2f}",
                bool(
                    row["sink_ratio"] <= (1 - min_ratio_drop) * base["sink_ratio"]
                    and row["perplexity"] > base["perplexity"]
                ),
                f"sink ratio falls by >= {100 * min_ratio_drop:.0f}% and perplexity rises",
            )
        )
    return claims
