"""Beyond the paper: the first tokens a sliding-window cache must keep (StreamingLLM)."""

from __future__ import annotations

import pandas as pd

from spikesink.analyses.kv_cache import ANALYSIS
from spikesink.analyses.kv_cache.result import KVCache
from spikesink.analyses.unit import Job
from spikesink.reporting.scorecard import Claim, not_applicable

SECTION = ANALYSIS.section


def claims(result: KVCache, job: Job) -> list:
    c = job.settings.claims
    return kv_cache_claims(job.model_name, result.summary, c.min_cost, c.min_restore)


def kv_cache_claims(model: str, summary: pd.DataFrame, min_cost: float = 0.1, min_restore: float = 0.5) -> list:
    """Dropping the first tokens from a sliding window raises perplexity; keeping one restores it."""
    full = float(summary.loc[summary["condition"] == "full", "perplexity_evicted"].iloc[0])
    windowed = summary[summary["window"].notna()].set_index("kept")
    if 0 not in windowed.index:
        return []
    none, window = float(windowed.loc[0, "perplexity_evicted"]), int(windowed.loc[0, "window"])
    claims = [
        Claim(
            SECTION,
            "dropping the first tokens from a sliding-window cache raises perplexity",
            model,
            "StreamingLLM: window attention collapses once the first tokens leave the window",
            f"perplexity beyond position {window}: full {full:.4g}, window {window} without the first tokens {none:.4g} "
            f"(+{100 * (none / full - 1):.0f}%)",
            none >= (1 + min_cost) * full,
            f"window without them >= {1 + min_cost:g} x full attention",
        )
    ]
    for kept in [k for k in windowed.index if k > 0]:
        claim = f"keeping {kept} first token(s) in the window restores perplexity"
        if none < (1 + min_cost) * full:  # nothing to restore: a ratio of two tiny gaps is noise
            claims.append(
                not_applicable(
                    SECTION,
                    claim,
                    model,
                    "StreamingLLM: 1-4 attention sinks restore it",
                    f"dropping the first tokens costs less than {100 * min_cost:g}% here",
                )
            )
            continue
        restored = (
            (none - float(windowed.loc[kept, "perplexity_evicted"])) / (none - full) if none > full else float("nan")
        )
        claims.append(
            Claim(
                SECTION,
                claim,
                model,
                "StreamingLLM: 1-4 attention sinks restore it",
                f"perplexity beyond position {window}: {float(windowed.loc[kept, 'perplexity_evicted']):.4g} "
                f"(restores {100 * restored:.0f}% of the gap to full attention {full:.4g})",
                bool(restored >= min_restore),
                f">= {100 * min_restore:.0f}% of the gap restored",
            )
        )
    return claims
