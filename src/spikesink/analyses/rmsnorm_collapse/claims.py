"""Fig. 5 claims: collapse, the RMSNorm bound, sparsity, delimiters and their self-attention."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from spikesink.analyses.rmsnorm_collapse import ANALYSIS
from spikesink.analyses.rmsnorm_collapse.result import Collapse
from spikesink.analyses.unit import Job
from spikesink.reporting.scorecard import CHECK, ClaimSpec

SECTION = ANALYSIS.section


def claims(result: Collapse, job: Job) -> list:
    if result.not_applicable:
        return [spec.na(job.model_name, result.not_applicable) for spec in (COLLAPSE, BOUND, SPARSE, DELIMITERS)]
    return collapse_claims(job.model_name, result.summary, result.self_attention)


COLLAPSE = ClaimSpec(
    SECTION,
    "spike tokens become nearly identical after the step-up block",
    "pairwise cosine varied before, ~1.0 after (Fig 5)",
)
# an inequality every normalised vector satisfies: a check of the implementation, not a finding
BOUND = ClaimSpec(
    SECTION,
    "after RMSNorm every coordinate obeys |h_i| <= sqrt(d) (max|g| sqrt(d) with weight g)",
    "Eq. 23",
    kind=CHECK,
)
SPARSE = ClaimSpec(
    SECTION, "normalised spike states are sparse: the spike channels carry the energy", "mass on the spike channels"
)
DELIMITERS = ClaimSpec(SECTION, "non-initial spike tokens are delimiters", "periods, newlines, ...")
SELF_ATTENTION = ClaimSpec(
    SECTION, "delimiter spike tokens attend strongly to themselves in early layers", "strong self-attention"
)


def collapse_claims(
    model: str,
    summary: Mapping,
    self_attention: pd.DataFrame | None = None,
    min_cos_after: float = 0.95,
    min_energy_share: float = 0.5,
) -> list:
    """Fig 5 claims: collapse, the RMSNorm bound, sparsity; delimiters when any spike.

    Where no norm reads the state (OLMo 2) the rows about the normalised state say so and report
    the weightless normalisation only.
    """
    before, after = summary["cos_before"]["median"], summary["cos_after"]["median"]
    normed = summary.get("cos_after_normed_weight")
    bound = summary["rmsnorm_bound"]
    unread = " (no norm reads this state in this family: weightless RMSNorm applied for the bound)"
    weighted = (
        f"; with weight {bound['max_abs_weight']:.3f} <= {bound['bound_weight']:.3f}" if "bound_weight" in bound else ""
    )
    claims = [
        COLLAPSE(
            model,
            f"median pairwise cosine {before:.3f} before -> {after:.5f} after ({summary['n_spike_sampled']} spike "
            "tokens" + (f"; after the next norm with its weight {normed['median']:.5f})" if normed else ")"),
            after >= min_cos_after and after > before,
            f"median after >= {min_cos_after} and above before",
        ),
        BOUND(
            model,
            f"max |N(x)_i| = {bound['max_abs_no_weight']:.3f} <= sqrt(d) = {bound['sqrt_d']:.3f}{weighted}"
            + (unread if summary.get("no_norm_reads_state") else ""),
            bound["holds"],
            "exact inequality",
        ),
    ]
    if "energy_share_spike" in summary and summary.get("no_norm_reads_state"):
        claims.append(
            SPARSE.na(
                model,
                "no norm reads the residual stream in this family (norms sit on block outputs); "
                f"weightless share would be {summary['energy_share_spike']:.3f}",
            )
        )
    elif "energy_share_spike" in summary:
        claims.append(
            SPARSE(
                model,
                f"median share of ||RMSNorm(x)||^2 on spike channels {summary['energy_share_spike']:.3f} "
                f"(with weight {summary['energy_share_spike_weighted']:.3f}; ordinary tokens "
                f"{summary['energy_share_other']:.3f})",
                summary["energy_share_spike"] >= min_energy_share,
                f"share >= {min_energy_share}",
            )
        )
    n_later = summary.get("n_nonfirst_spike", 0)
    share = summary.get("nonfirst_spike_delimiter_share", float("nan"))
    claims.append(
        DELIMITERS(
            model,
            f"{n_later} non-initial spike tokens in {summary['n_tokens_total']} tokens"
            + (f"; {100 * share:.0f}% punctuation/whitespace" if n_later else ""),
            bool(n_later) and share >= 0.5,
            ">= 1 non-initial spike token, >= 50% punctuation/whitespace",
        )
    )
    if self_attention is not None and not self_attention.empty and (self_attention["kind"] == "spike").any():
        pivot = self_attention.pivot(index="layer", columns="kind", values="self_share_mean")
        best = pivot["spike"] - pivot["other"]
        layer = best.idxmax()
        claims.append(
            SELF_ATTENTION(
                model,
                f"largest gap at layer {int(layer)}: self share {pivot.loc[layer, 'spike']:.2f} "
                f"vs {pivot.loc[layer, 'other']:.2f}",
                best.max() > 0.1,
                "spike - other self share > 0.1 in some early layer",
            )
        )
    return claims
