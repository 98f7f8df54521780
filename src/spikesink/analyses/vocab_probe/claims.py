"""The vocabulary-probe claims (Table 2), from the probe's summary.

Shares of probed ids carry Wilson 95 % intervals (every id is one trial); the exceptions' AUROC
carries the Hanley-McNeil 95 % interval. A model without a spike (no massive block in the corpus,
so no plateau to probe) reads n/a on every claim, as do the later-position contrast when position
0 itself rarely spikes and the exceptions claim when there are no exceptions or no spike tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from spikesink.analyses.unit import Job
from spikesink.analyses.vocab_probe import ANALYSIS
from spikesink.analyses.vocab_probe.result import VocabProbe
from spikesink.reporting.scorecard import Claim, ClaimSpec
from spikesink.reporting.verdicts import Estimate, share_estimate

SECTION = ANALYSIS.section
POSITION0 = ClaimSpec(
    SECTION,
    "almost every vocabulary item is a spike token at position 0",
    "98.40% - 99.93% of the vocabulary (7 models)",
)  # the paper model's own row replaces the range where it has one
LATER = ClaimSpec(SECTION, "the same items rarely spike at a later position", "rarely")
EXCEPTIONS = ClaimSpec(
    SECTION,
    "exceptions are tokens whose embeddings stay near initialisation",
    "mostly rare-script tokens near initialisation",
)
CLAIMS = (POSITION0, LATER, EXCEPTIONS)


def claims(result: VocabProbe, job: Job) -> list[Claim]:
    lifecycle = job.inputs.get("lifecycle")
    if result.not_applicable:
        return [spec.na(job.model_name, result.not_applicable) for spec in CLAIMS]
    return vocab_probe_claims(job.model_name, result.summary, job.paper_model, job.settings.claims, lifecycle)


def auroc_estimate(auroc: float, n_positive: int, n_negative: int) -> Estimate:
    """An AUROC with its Hanley-McNeil (1982) 95 % interval (n_positive, n_negative: the two classes)."""
    a = float(auroc)
    if not np.isfinite(a) or n_positive < 1 or n_negative < 1:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    variance = (a * (1 - a) + (n_positive - 1) * (q1 - a * a) + (n_negative - 1) * (q2 - a * a)) / (
        n_positive * n_negative
    )
    half = 1.959963984540054 * np.sqrt(max(variance, 0.0))
    return Estimate(a, max(0.0, a - half), min(1.0, a + half), n_positive + n_negative)


def vocab_probe_claims(
    model: str,
    summary: Mapping,
    paper_model: str | None = None,
    thresholds=None,
    lifecycle=None,
) -> list[Claim]:
    """Table 2 claims: nearly every id spikes at position 0, rarely later; exceptions sit near init.

    thresholds: the `claims:` settings (job.settings.claims; None: the schema's defaults);
    lifecycle: the model's life cycle (None: not consulted), n/a everywhere without a plateau.
    """
    from spikesink.config import analysis_settings
    from spikesink.reporting import paper

    c = thresholds if thresholds is not None else analysis_settings("vocab_probe").claims
    if lifecycle is not None and lifecycle.plateau is None:
        reason = "the model has no spike (no massive block in the corpus): no plateau to probe, no spike token to find"
        return [spec.na(model, reason) for spec in CLAIMS]
    ref = paper.TABLE2.get(paper_model or "")
    paper_text = (
        f"{ref['spike_tokens']:,}/{ref['vocab']:,} ({100 * ref['spike_tokens'] / ref['vocab']:.2f}%)"
        if ref
        else POSITION0.paper
    )
    n = int(summary["n_probed"])
    scope = "" if not summary.get("limit") else f" (first {n:,} ids only)"
    pos0 = share_estimate(int(summary["n_spike_pos0"]), n)
    rows = [
        dataclasses.replace(POSITION0, paper=paper_text).judge(
            model,
            f"{summary['n_spike_pos0']:,}/{n:,} = {_percent(pos0)}{scope}; own-state median criterion: "
            f"{summary['n_spike_pos0_own_median']:,}",
            pos0,
            c.min_ratio_pos0,
            ">=",
            f"share >= {100 * c.min_ratio_pos0:g}% (Wilson 95% interval)",
        )
    ]
    if "ratio_later" not in summary:
        rows.append(LATER.na(model, "the later-position control was not run"))
    elif not pos0.value >= c.min_contrast_pos0:
        rows.append(
            LATER.na(model, f"only {100 * pos0.value:.1f}% of the ids spike at position 0: no contrast to draw")
        )
    else:
        later = share_estimate(int(summary["n_spike_later"]), n)
        rows.append(
            LATER.judge(
                model,
                f"{summary['n_spike_later']:,}/{n:,} = {_percent(later)} after the prefix{scope}",
                later,
                c.max_ratio_later,
                "<=",
                f"share <= {100 * c.max_ratio_later:g}% (Wilson 95% interval) while >= "
                f"{100 * c.min_contrast_pos0:g}% spike at position 0",
            )
        )
    rows.append(_exceptions_row(model, summary, c.min_auroc))
    return rows


def _percent(share: Estimate) -> str:
    return f"{100 * share.value:.2f}% [{100 * share.low:.2f}, {100 * share.high:.2f}]"


def _exceptions_row(model: str, summary: Mapping, min_auroc: float) -> Claim:
    n_exceptions, n = int(summary["n_exceptions"]), int(summary["n_probed"])
    if not n_exceptions:
        return EXCEPTIONS.na(model, f"no exceptions: every one of the {n:,} probed ids spikes at position 0")
    if n_exceptions == n:
        return EXCEPTIONS.na(model, f"no probed id spikes at position 0: nothing to compare the {n:,} exceptions with")
    correlation = summary["exception_vs_distance"]
    auroc = auroc_estimate(correlation["auroc_smaller"], n_exceptions, n - n_exceptions)
    if not np.isfinite(auroc.value):
        return EXCEPTIONS.na(model, "the AUROC is undefined (the embedding distances do not separate the classes)")
    return EXCEPTIONS.judge(
        model,
        f"{n_exceptions} exceptions; P(exception closer to the mean embedding than a spike token) = "
        f"{auroc.text('{:.2f}')}, Spearman(is exception, distance) = {correlation['spearman']:.2f}",
        auroc,
        min_auroc,
        ">=",
        f"AUROC >= {min_auroc:g} (Hanley-McNeil 95% interval)",
    )
