"""Massive activations as implicit parameters: own mean keeps perplexity, zero destroys it."""

from __future__ import annotations

import pandas as pd

from spikesink.analyses.implicit_params import ANALYSIS
from spikesink.analyses.implicit_params.result import ImplicitParams
from spikesink.analyses.unit import Job
from spikesink.reporting.scorecard import ClaimSpec

SECTION = ANALYSIS.section


def claims(result: ImplicitParams, job: Job) -> list:
    c = job.settings.claims
    return implicit_claims(
        job.model_name, result.table, result.not_applicable, c.mean_tolerance, c.zero_factor, c.max_spread
    )


OWN_MEAN = ClaimSpec(
    SECTION,
    "setting the massive activations to their own mean keeps perplexity",
    "unchanged perplexity (Sun et al. 2024: massive activations act as fixed biases)",
)
ZERO = ClaimSpec(
    SECTION, "setting the massive activations to zero destroys the model", "perplexity explodes (Sun et al. 2024)"
)
CONSTANT = ClaimSpec(
    SECTION,
    "massive activations are nearly constant across prompts",
    "near-constant hidden states (Sec. 3, Sun et al. 2024)",
)


def implicit_claims(
    model: str,
    table: pd.DataFrame,
    reason: str | None = None,
    mean_tolerance: float = 0.05,
    zero_factor: float = 2.0,
    max_spread: float = 0.1,
) -> list:
    if reason:
        return [spec.na(model, reason) for spec in (OWN_MEAN, ZERO, CONSTANT)]
    base = float(table.loc[table["mode"] == "none", "perplexity"].iloc[0])
    edits = table[table["mode"] != "none"]

    def listing(mode):
        rows = edits[edits["mode"] == mode]
        return "; ".join(
            f"block {int(r.block)} ({r.roles}): {r.perplexity:.4g} ({r.ratio:.3g}x)" for r in rows.itertuples()
        )

    own = edits[edits["mode"] == "own_mean"]
    zero = edits[edits["mode"] == "zero"]
    spreads = edits.drop_duplicates("block")
    claims = []
    if not own.empty:
        claims.append(
            OWN_MEAN(
                model,
                f"held-out perplexity {base:.4g}; own mean: {listing('own_mean')}",
                (abs(own["ratio"] - 1) <= mean_tolerance).all(),
                f"within {100 * mean_tolerance:g}% at every site",
            )
        )
    if not zero.empty:
        claims.append(
            ZERO(
                model,
                f"held-out perplexity {base:.4g}; zero: {listing('zero')}",
                (zero["ratio"] >= zero_factor).all(),
                f">= {zero_factor:g}x at every site",
            )
        )
    spread_text = "; ".join(f"block {int(r.block)}: {r.spread:.3g}" for r in spreads.itertuples())
    claims.append(
        CONSTANT(
            model,
            f"relative spread ||v - mean|| / ||mean|| over spike tokens: {spread_text}",
            (spreads["spread"] <= max_spread).all(),
            f"spread <= {max_spread:g} at every site",
        )
    )
    return claims
