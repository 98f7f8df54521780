"""Beyond the paper: what per-tensor INT8 costs and what keeping the spike tokens recovers.

The recovery share and the share of tokens kept in full precision are judged with their 95 %
bootstrap intervals over the held-out prompts, every condition resampled together (the same
prompts in numerator and denominator; spikesink.reporting.verdicts). A result without per-prompt
measurements is judged on its point values, and says so. Thresholds come from the `claims:`
section (schema.yaml).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from spikesink.analyses.quantization import ANALYSIS
from spikesink.analyses.quantization.result import Quantization
from spikesink.analyses.unit import Job
from spikesink.config import analysis_settings
from spikesink.reporting.scorecard import ClaimSpec
from spikesink.reporting.verdicts import Estimate, bootstrap, combine, verdict

SECTION = ANALYSIS.section
RECOVERS = ClaimSpec(
    SECTION,
    "keeping the spike tokens in full precision recovers per-tensor INT8 activations",
    "spikes break low-bit activation quantization (paper's motivation)",
)
LARGEST = ClaimSpec(
    SECTION,
    "the step-up block's down-projection input has the largest activation scale",
    "the step-up FFN writes the spike",
)
DOWN_ROLES = ("down", "fc_out", "shared_down")


def claims(result: Quantization, job: Job) -> list:
    c = job.settings.claims
    return quantization_claims(
        job.model_name,
        result.table,
        job["act_scales"].summary,
        job["lifecycle"].step_up,
        c.min_recovery,
        c.min_cost,
        c.max_kept_share,
        result.per_prompt,
        reason=result.not_applicable,
    )


def int8_estimates(per_prompt: pd.DataFrame) -> dict[str, Estimate]:
    """Over the held-out prompts, resampled jointly across conditions: the relative cost of
    per-tensor INT8 (its perplexity / full precision - 1), the share of that cost keeping the
    clipping tokens recovers, and the share of tokens kept in full precision."""
    frames = {c: rows.set_index("prompt").sort_index() for c, rows in per_prompt.groupby("condition")}
    index = frames["fp"].index
    nll = {c: frames[c]["nll_sum"].reindex(index).to_numpy(float) for c in ("fp", "per_tensor", "per_tensor_keep")}
    count = frames["fp"]["n_tokens"].to_numpy(float)
    keep = frames["per_tensor_keep"].reindex(index)
    kept, seen = keep["kept_tokens"].to_numpy(float), keep["seen_tokens"].to_numpy(float)

    def ppl(condition, idx):
        return np.exp(nll[condition][idx].sum() / count[idx].sum())

    def cost(idx):
        return ppl("per_tensor", idx) / ppl("fp", idx) - 1

    def recovered(idx):
        fp, tensor = ppl("fp", idx), ppl("per_tensor", idx)
        return (tensor - ppl("per_tensor_keep", idx)) / (tensor - fp) if tensor > fp else np.nan

    def share(idx):
        total = seen[idx].sum()
        return kept[idx].sum() / total if total > 0 else np.nan

    n = len(index)
    return {"cost": bootstrap(cost, n), "recovered": bootstrap(recovered, n), "kept_share": bootstrap(share, n)}


def quantization_claims(
    model: str,
    table: pd.DataFrame,
    scales: pd.DataFrame,
    step_up: Sequence[int],
    min_recovery: float | None = None,
    min_cost: float | None = None,
    max_kept_share: float | None = None,
    per_prompt: pd.DataFrame | None = None,
    reason: str | None = None,
) -> list:
    """Rows beyond the paper: what per-tensor A8 costs, how much keeping the spike tokens in full
    precision recovers, and whether the step-up block's down-projection input has the largest scale.
    Thresholds left None are the schema's (a workflow job passes its settings')."""
    defaults = analysis_settings("quantization").claims
    min_recovery = defaults.min_recovery if min_recovery is None else min_recovery
    min_cost = defaults.min_cost if min_cost is None else min_cost
    max_kept_share = defaults.max_kept_share if max_kept_share is None else max_kept_share
    if reason or table is None or table.empty:
        return [spec.na(model, reason or "no quantization was run") for spec in (RECOVERS, LARGEST)]
    claims = [recovery_claim(model, table, per_prompt, min_recovery, min_cost, max_kept_share)]
    if not step_up:
        claims.append(LARGEST.na(model, "no step-up block was detected"))
    elif scales is None or scales.empty:
        claims.append(LARGEST.na(model, "no activation scales"))
    else:
        down = scales[scales["role"].isin(DOWN_ROLES)]
        best = scales.loc[scales["max_scale"].idxmax()]
        claims.append(
            LARGEST(
                model,
                f"largest scale {best['max_scale']:.4g} at {best['module']} (block {best['block']}); "
                f"down-projection inputs of step-up blocks {list(step_up)}: "
                + ", ".join(f"{r.max_scale:.4g}" for r in down[down["block"].isin(step_up)].itertuples())
                + " (maxima over the calibration prompts: no interval)",
                bool(best["role"] in DOWN_ROLES and int(best["block"]) in set(step_up)),
                "argmax over every Linear input is a step-up block's down projection",
            )
        )
    return claims


def recovery_claim(
    model: str,
    table: pd.DataFrame,
    per_prompt: pd.DataFrame | None,
    min_recovery: float,
    min_cost: float,
    max_kept_share: float,
):
    rows = table.set_index("condition")
    fp, tensor, keep = (float(rows.loc[c, "perplexity"]) for c in ("fp", "per_tensor", "per_tensor_keep"))
    if per_prompt is None or per_prompt.empty:  # a result from before they were kept: the points decide
        cost = Estimate.point(tensor / fp - 1)
        recovered = Estimate.point((tensor - keep) / (tensor - fp) if tensor > fp else np.nan)
        kept = Estimate.point(float(rows.loc["per_tensor_keep", "kept_fp_share"]))
        over = "no per-prompt measurements: point values, no interval"
    else:
        est = int8_estimates(per_prompt)
        cost, recovered, kept = est["cost"], est["recovered"], est["kept_share"]
        over = f"95% intervals over {recovered.n} held-out prompts"
    if cost.value < min_cost:  # a recovery share of a negligible cost is noise
        return RECOVERS.na(
            model,
            f"per-tensor INT8 costs less than {100 * min_cost:g}% here ({fp:.4g} -> {tensor:.4g}, "
            f"+{cost.text('{:.2%}')})",
        )
    # an outlier split keeps a few tokens: when most tokens would clip (a model whose every token
    # carries a massive channel, e.g. Gemma 3) keeping them is no split at all, however much it recovers
    split = (
        "" if kept.value <= max_kept_share else f"; not an outlier split: {100 * kept.value:.0f}% of tokens would clip"
    )
    verdicts = [verdict(recovered, min_recovery, ">="), verdict(kept, max_kept_share, "<=")]
    return RECOVERS(
        model,
        f"perplexity {fp:.4g} (fp) -> {tensor:.4g} (per-tensor A8, +{tensor - fp:.4g}) -> {keep:.4g} with "
        f"{kept.text('{:.2%}')} of tokens in full precision (recovers {recovered.text('{:.0%}')} of the cost); "
        f"per-token A8 {float(rows.loc['per_token', 'perplexity']):.4g}; {over}" + split,
        combine(verdicts),
        f">= {100 * min_recovery:.0f}% of the per-tensor cost recovered, keeping <= {100 * max_kept_share:g}% of "
        f"tokens, both 95% intervals on that side (n/a below a {100 * min_cost:g}% cost)",
        recovered,
    )
