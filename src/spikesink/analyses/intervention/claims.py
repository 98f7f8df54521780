"""Removing the spike at the step-up block: does the sink go?"""

from __future__ import annotations

import pandas as pd

from spikesink.analyses.intervention import ANALYSIS
from spikesink.analyses.intervention.result import Intervention
from spikesink.analyses.unit import Job
from spikesink.reporting.scorecard import Claim, not_applicable

SECTION = ANALYSIS.section


def claims(result: Intervention, job: Job) -> list[Claim]:
    return intervention_claims(job.model_name, result.table, result.not_applicable, job.settings.claims.min_ratio_drop)


def intervention_claims(
    model: str, intervention: pd.DataFrame | None, reason: str | None = None, min_ratio_drop: float = 0.5
) -> list[Claim]:
    """Removing the spike at the step-up block: does the sink go (n/a without a detected spike)?"""
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
