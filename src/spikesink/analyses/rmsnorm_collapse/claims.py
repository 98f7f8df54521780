"""Fig. 5 claims: collapse, the RMSNorm bound, sparsity, delimiters, their self-attention and why they spike.

Every claim yields a row. The delimiter claims (what the non-initial spike tokens are, that they
attend to themselves, that their embeddings align with the first norm's gain) read n/a when no token
after position 0 spikes. The delimiter share carries a Wilson 95 % interval over the non-initial
spike tokens, the gain ratio a bootstrap interval resampling each group's token ids.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from spikesink.analyses.rmsnorm_collapse import ANALYSIS
from spikesink.analyses.rmsnorm_collapse.result import Collapse
from spikesink.analyses.unit import Job
from spikesink.reporting.scorecard import CHECK, Claim, ClaimSpec
from spikesink.reporting.verdicts import FAILS, HOLDS, LEVEL, N_BOOTSTRAP, Estimate, share_estimate

SECTION = ANALYSIS.section

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
GAIN = ClaimSpec(
    SECTION,
    "delimiter embeddings align with the first norm's gain, which gives them an outsized magnitude",
    "delimiters align with the norm gain, are amplified, then self-attend",
)
CLAIMS = (COLLAPSE, BOUND, SPARSE, DELIMITERS, SELF_ATTENTION, GAIN)


def claims(result: Collapse, job: Job) -> list[Claim]:
    if result.not_applicable:
        return [spec.na(job.model_name, result.not_applicable) for spec in CLAIMS]
    return collapse_claims(job.model_name, result.summary, result.self_attention, job.settings.claims)


def gain_ratio_estimate(delimiter, ordinary, seed: int = 0, n_resamples: int = N_BOOTSTRAP) -> Estimate:
    """median a(x) of the delimiter ids / that of the ordinary ids, with a 95 % bootstrap interval
    resampling the ids of each group apart."""
    d, o = np.asarray(delimiter, dtype=float), np.asarray(ordinary, dtype=float)
    value = float(np.median(d) / np.median(o))
    if d.size < 2 or o.size < 2:
        return Estimate.point(value)
    rng = np.random.default_rng(seed)
    draws = np.median(d[rng.integers(0, d.size, (n_resamples, d.size))], axis=1) / np.median(
        o[rng.integers(0, o.size, (n_resamples, o.size))], axis=1
    )
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return Estimate(value, float(low), float(high), int(d.size + o.size))


def collapse_claims(
    model: str, summary: Mapping, self_attention: pd.DataFrame | None = None, thresholds=None
) -> list[Claim]:
    """Fig 5 claims: collapse, the RMSNorm bound, sparsity; the delimiter claims (n/a when none spikes).

    thresholds: the `claims:` settings (job.settings.claims; None: the schema's defaults). Where no
    norm reads the state (OLMo 2) the rows about the normalised state say so and report the
    weightless normalisation only.
    """
    from spikesink.config import analysis_settings

    c = thresholds if thresholds is not None else analysis_settings("rmsnorm_collapse").claims
    rows = [_collapse(model, summary, c.min_cos_after), _bound(model, summary), _sparse(model, summary, c)]
    n_later = int(summary.get("n_nonfirst_spike", 0))
    if not n_later:
        reason = (
            f"no token after position 0 spikes ({summary.get('n_tokens_total', 0)} tokens): no delimiter spike token"
        )
        return rows + [spec.na(model, reason) for spec in (DELIMITERS, SELF_ATTENTION, GAIN)]
    return rows + [
        _delimiters(model, summary, c.min_delimiter_share),
        _self_attention(model, self_attention, c.min_self_attention_gap, summary),
        _gain(model, summary.get("gain_alignment"), c.min_gain_ratio),
    ]


def _collapse(model, summary, min_cos_after) -> Claim:
    before, after = summary["cos_before"]["median"], summary["cos_after"]["median"]
    normed = summary.get("cos_after_normed_weight")
    if not summary.get("n_spike_sampled", 0) >= 2:
        return COLLAPSE.na(model, "fewer than two spike tokens were sampled: no pairwise cosine")
    held = HOLDS if after >= min_cos_after and after > before else FAILS
    return COLLAPSE(
        model,
        f"median pairwise cosine {before:.3f} before -> {after:.5f} after ({summary['n_spike_sampled']} spike tokens"
        + (f"; after the next norm with its weight {normed['median']:.5f})" if normed else ")"),
        held,
        f"median after >= {min_cos_after:g} and above before",
        Estimate.point(after),
    )


def _bound(model, summary) -> Claim:
    bound = summary["rmsnorm_bound"]
    unread = " (no norm reads this state in this family: weightless RMSNorm applied for the bound)"
    weighted = (
        f"; with weight {bound['max_abs_weight']:.3f} <= {bound['bound_weight']:.3f}" if "bound_weight" in bound else ""
    )
    return BOUND(
        model,
        f"max |N(x)_i| = {bound['max_abs_no_weight']:.3f} <= sqrt(d) = {bound['sqrt_d']:.3f}{weighted}"
        + (unread if summary.get("no_norm_reads_state") else ""),
        bound["holds"],
        "exact inequality",
    )


def _sparse(model, summary, c) -> Claim:
    if "energy_share_spike" not in summary:
        return SPARSE.na(model, "no spike channel was detected")
    if summary.get("no_norm_reads_state"):
        return SPARSE.na(
            model,
            "no norm reads the residual stream in this family (norms sit on block outputs); "
            f"weightless share would be {summary['energy_share_spike']:.3f}",
        )
    return SPARSE.judge(
        model,
        f"median share of ||RMSNorm(x)||^2 on spike channels {summary['energy_share_spike']:.3f} "
        f"(with weight {summary.get('energy_share_spike_weighted', float('nan')):.3f}; ordinary tokens "
        f"{summary['energy_share_other']:.3f})",
        summary["energy_share_spike"],
        c.min_energy_share,
        ">=",
        f"share >= {c.min_energy_share:g}",
    )


def _delimiters(model, summary, min_share) -> Claim:
    n_later = int(summary["n_nonfirst_spike"])
    counted = summary.get("nonfirst_spike_counted", n_later)  # the listed (most frequent) ones
    share = float(summary.get("nonfirst_spike_delimiter_share", float("nan")))
    estimate = (
        share_estimate(round(share * counted), counted) if np.isfinite(share) and counted else Estimate.point(share)
    )
    return DELIMITERS.judge(
        model,
        f"{n_later} non-initial spike tokens in {summary['n_tokens_total']} tokens; "
        f"{100 * estimate.value:.0f}% [{100 * estimate.low:.0f}, {100 * estimate.high:.0f}] punctuation/whitespace",
        estimate,
        min_share,
        ">=",
        f"share of punctuation/whitespace >= {100 * min_share:g}% (Wilson 95% interval)",
    )


def _self_attention(model, self_attention, min_gap, summary: Mapping | None = None) -> Claim:
    skipped = (summary or {}).get("self_attention_skipped")
    if skipped and not (summary or {}).get("self_attention_layers"):
        return SELF_ATTENTION.na(model, f"no softmax attention layer up to the step-up ({skipped})")
    if self_attention is None or self_attention.empty or not (self_attention["kind"] == "spike").any():
        return SELF_ATTENTION.na(model, "no non-initial spike token in the prompts whose self-attention was measured")
    pivot = self_attention.pivot(index="layer", columns="kind", values="self_share_mean")
    if "other" not in pivot:
        return SELF_ATTENTION.na(model, "no ordinary token to compare with")
    gaps = (pivot["spike"] - pivot["other"]).dropna()
    layer = int(gaps.idxmax())
    return SELF_ATTENTION.judge(
        model,
        f"largest gap at layer {layer}: self share {pivot.loc[layer, 'spike']:.2f} vs {pivot.loc[layer, 'other']:.2f}",
        float(gaps.max()),
        min_gap,
        ">",
        f"spike - other self share > {min_gap:g} in some early layer",
    )


def _gain(model, alignment, min_ratio) -> Claim:
    if not alignment:
        return GAIN.na(model, "the gain alignment was not measured (rerun rmsnorm_collapse)")
    if alignment.get("not_applicable"):
        return GAIN.na(model, alignment["not_applicable"])
    if not alignment["delimiter"] or not alignment["ordinary"]:
        return GAIN.na(model, "no ordinary token id to compare the delimiter ids with")
    ratio = gain_ratio_estimate(alignment["delimiter"], alignment["ordinary"])
    return GAIN.judge(
        model,
        f"median a(x) = ||g * x / rms(x)|| / ||g|| of {len(alignment['delimiter'])} delimiter ids "
        f"{np.median(alignment['delimiter']):.3f} vs {np.median(alignment['ordinary']):.3f} of "
        f"{len(alignment['ordinary'])} ordinary ids: ratio {ratio.text('{:.3f}')} (95% interval over ids)",
        ratio,
        min_ratio,
        ">=",
        f"ratio >= {min_ratio:g} (interval)",
    )
