"""The vocabulary-probe claims, from the probe's summary."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from spikesink.analyses.unit import Job
from spikesink.analyses.vocab_probe import ANALYSIS
from spikesink.analyses.vocab_probe.result import VocabProbe

SECTION = ANALYSIS.section


def claims(result: VocabProbe, job: Job) -> list:
    c = job.settings.claims
    return vocab_probe_claims(
        job.model_name, result.summary, job.paper_model, c.min_ratio_pos0, c.max_ratio_later, c.min_auroc
    )


def vocab_probe_claims(
    model: str,
    summary: Mapping,
    paper_model: str | None = None,
    min_ratio_pos0: float = 0.95,
    max_ratio_later: float = 0.05,
    min_auroc: float = 0.7,
) -> list:
    """Table 2 claims: nearly every id spikes at position 0, rarely later; exceptions sit near init."""
    from spikesink.reporting import paper
    from spikesink.reporting.scorecard import Claim

    ref = paper.TABLE2.get(paper_model or "")
    paper_text = (
        f"{ref['spike_tokens']:,}/{ref['vocab']:,} ({100 * ref['spike_tokens'] / ref['vocab']:.2f}%)"
        if ref
        else "98.40% - 99.93% of the vocabulary (7 models)"
    )
    scope = "" if not summary.get("limit") else f" (first {summary['n_probed']:,} ids only)"
    claims = [
        Claim(
            SECTION,
            "almost every vocabulary item is a spike token at position 0",
            model,
            paper_text,
            f"{summary['n_spike_pos0']:,}/{summary['n_probed']:,} ({100 * summary['ratio_pos0']:.2f}%){scope}; "
            f"own-state median criterion: {summary['n_spike_pos0_own_median']:,}",
            summary["ratio_pos0"] >= min_ratio_pos0,
            f"ratio >= {100 * min_ratio_pos0:.0f}%",
        )
    ]
    if "ratio_later" in summary:
        claims.append(
            Claim(
                SECTION,
                "the same items rarely spike at a later position",
                model,
                "rarely",
                f"{summary['n_spike_later']:,}/{summary['n_probed']:,} ({100 * summary['ratio_later']:.2f}%) after the prefix",
                # the contrast only means something when position 0 does spike
                summary["ratio_later"] <= max_ratio_later and summary["ratio_pos0"] >= 0.5,
                f"ratio <= {100 * max_ratio_later:.0f}% while >= 50% spike at position 0",
            )
        )
    auroc = summary["exception_vs_distance"]["auroc_smaller"]
    if summary["n_exceptions"] and np.isfinite(auroc):
        claims.append(
            Claim(
                SECTION,
                "exceptions are tokens whose embeddings stay near initialisation",
                model,
                "mostly rare-script tokens near initialisation",
                f"{summary['n_exceptions']} exceptions; P(exception closer to the mean embedding than a spike token) = "
                f"{auroc:.2f}, Spearman(is exception, distance) = {summary['exception_vs_distance']['spearman']:.2f}",
                auroc >= min_auroc,
                f"AUROC >= {min_auroc}",
            )
        )
    return claims
