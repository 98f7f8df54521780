"""Beyond the paper: the first tokens a sliding-window cache must keep (StreamingLLM).

The default run has one long text, so there are no prompts to resample: the 95 % intervals come
from resampling blocks of `bin` positions beyond the window (every condition on the same blocks,
jointly), and each row says so. Every claim always yields a row: n/a with the reason when the
window without the first tokens (keep 0) or a window keeping some (keep > 0) was not measured.
A result without per-block measurements is judged on its point values, and says so. Thresholds
come from the `claims:` section (schema.yaml).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spikesink.analyses.kv_cache import ANALYSIS
from spikesink.analyses.kv_cache.result import KVCache
from spikesink.analyses.unit import Job
from spikesink.config import analysis_settings
from spikesink.reporting.scorecard import ClaimSpec
from spikesink.reporting.verdicts import Estimate, bootstrap

SECTION = ANALYSIS.section
COSTS = ClaimSpec(
    SECTION,
    "dropping the first tokens from a sliding-window cache raises perplexity",
    "StreamingLLM: window attention collapses once the first tokens leave the window",
)
RESTORE_PAPER = "StreamingLLM: 1-4 attention sinks restore it"


def _restores(kept: int | str) -> ClaimSpec:
    return ClaimSpec(SECTION, f"keeping {kept} first token(s) in the window restores perplexity", RESTORE_PAPER)


def claims(result: KVCache, job: Job) -> list:
    c = job.settings.claims
    return kv_cache_claims(
        job.model_name,
        result.summary,
        c.min_cost,
        c.min_restore,
        result.per_block,
        reason=result.not_applicable,
        keep=job.settings.keep,
    )


def window_estimates(per_block: pd.DataFrame, kept: list[int]) -> tuple[dict[str, Estimate], str]:
    """Over the blocks of positions beyond the window (resampled jointly across conditions): the
    relative cost of the window without the first tokens (its perplexity / full - 1), and for each
    k in `kept` the share of that gap keeping k first tokens restores. Returns them and a phrase
    naming what was resampled."""
    full = per_block[per_block["condition"] == "full"].set_index(["text", "block"]).sort_index()
    window = per_block[per_block["condition"] != "full"]

    def column(k):
        return window[window["kept"] == k].set_index(["text", "block"])["nll_sum"].reindex(full.index).to_numpy(float)

    nll_full, nll_none = full["nll_sum"].to_numpy(float), column(0)
    count = full["n_tokens"].to_numpy(float)
    others = {k: column(k) for k in kept}

    def ppl(nll, idx):
        return np.exp(nll[idx].sum() / count[idx].sum())

    def cost(idx):
        return ppl(nll_none, idx) / ppl(nll_full, idx) - 1

    def restore(nll_k):
        def statistic(idx):
            none, base = ppl(nll_none, idx), ppl(nll_full, idx)
            return (none - ppl(nll_k, idx)) / (none - base) if none > base else np.nan

        return statistic

    n = len(full)
    out = {"cost": bootstrap(cost, n)} | {k: bootstrap(restore(nll), n) for k, nll in others.items()}
    texts = full.index.get_level_values("text").nunique()
    size = int(np.median(count)) if n else 0
    return out, f"{n} blocks of {size} positions of {texts} text(s), resampled (not prompts)"


def _point_estimates(windowed: pd.DataFrame, kept: list[int], full: float, none: float) -> dict[str, Estimate]:
    """The cost and restore shares from the summary's perplexities alone (a result from before the
    per-block measurements were kept): point values, no interval."""
    return {"cost": Estimate.point(none / full - 1)} | {
        k: Estimate.point(
            (none - float(windowed.loc[k, "perplexity_evicted"])) / (none - full) if none > full else np.nan
        )
        for k in kept
    }


def _restore_claim(model, k, windowed, window, full, restored, min_cost, cost, min_restore, over):
    """The row "keeping k first tokens restores perplexity"; n/a when dropping them costs too little."""
    spec = _restores(k)
    if cost.value < min_cost:  # nothing to restore: a ratio of two tiny gaps is noise
        return spec.na(model, f"dropping the first tokens costs less than {100 * min_cost:g}% here")
    return spec.judge(
        model,
        f"perplexity beyond position {window}: {float(windowed.loc[k, 'perplexity_evicted']):.4g} "
        f"(restores {restored.text('{:.0%}')} of the gap to full attention {full:.4g}); {over}",
        restored,
        min_restore,
        ">=",
        f">= {100 * min_restore:.0f}% of the gap restored, 95% interval on that side",
    )


def kv_cache_claims(
    model: str,
    summary: pd.DataFrame,
    min_cost: float | None = None,
    min_restore: float | None = None,
    per_block: pd.DataFrame | None = None,
    reason: str | None = None,
    keep=None,
) -> list:
    """Dropping the first tokens from a sliding window raises perplexity by >= `min_cost`; keeping
    k of them restores >= `min_restore` of the gap (one row per k > 0 in keep). Thresholds left
    None are the schema's (a workflow job passes its settings')."""
    defaults = analysis_settings("kv_cache").claims
    min_cost = defaults.min_cost if min_cost is None else min_cost
    min_restore = defaults.min_restore if min_restore is None else min_restore
    if reason or summary is None or summary.empty:
        return [spec.na(model, reason or "no window was measured") for spec in (COSTS, _restores("the"))]
    windowed = summary[summary["window"].notna()].set_index("kept")
    kept = [int(k) for k in (keep if keep is not None else windowed.index) if int(k) > 0 and int(k) in windowed.index]
    restore_specs = [_restores(k) for k in kept] or [_restores("the")]
    if 0 not in windowed.index:
        why = "kv_cache.keep has no 0: the window without the first tokens was not measured"
        return [COSTS.na(model, why)] + [spec.na(model, why) for spec in restore_specs]
    full = float(summary.loc[summary["condition"] == "full", "perplexity_evicted"].iloc[0])
    none, window = float(windowed.loc[0, "perplexity_evicted"]), int(windowed.loc[0, "window"])
    if per_block is None or per_block.empty:
        estimates = _point_estimates(windowed, kept, full, none)
        over = "no per-block measurements: point values, no interval"
    else:
        estimates, units = window_estimates(per_block, kept)
        over = f"95% interval over {units}"
    if "windowed_layers" in summary and int(summary["windowed_layers"].iloc[0]) < int(summary["n_layers"].iloc[0]):
        over += (
            f"; the window applies to the {int(summary['windowed_layers'].iloc[0])} softmax attention layers of "
            f"{int(summary['n_layers'].iloc[0])} (linear attention keeps its recurrent state: no keys to evict)"
        )
    cost = estimates["cost"]
    claims = [
        COSTS.judge(
            model,
            f"perplexity beyond position {window}: full {full:.4g}, window {window} without the first tokens {none:.4g} "
            f"(+{cost.text('{:.0%}')}); {over}",
            cost,
            min_cost,
            ">=",
            f"window without them >= {1 + min_cost:g} x full attention, 95% interval on that side",
        )
    ]
    if not kept:
        claims.append(_restores("the").na(model, "kv_cache.keep has no count above 0: no kept first token measured"))
        return claims
    return claims + [
        _restore_claim(model, k, windowed, window, full, estimates[k], min_cost, cost, min_restore, over) for k in kept
    ]
