"""Beyond the paper: what per-tensor INT8 costs and what keeping the spike tokens recovers."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from spikesink.analyses.quantization import ANALYSIS
from spikesink.analyses.quantization.result import Quantization
from spikesink.analyses.unit import Job
from spikesink.reporting.scorecard import Claim, not_applicable

SECTION = ANALYSIS.section


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
    )


def quantization_claims(
    model: str,
    table: pd.DataFrame,
    scales: pd.DataFrame,
    step_up: Sequence[int],
    min_recovery: float = 0.5,
    min_cost: float = 0.01,
    max_kept_share: float = 0.05,
) -> list:
    """Rows beyond the paper: what per-tensor A8 costs, how much keeping the spike tokens in full
    precision recovers, and whether the step-up block's down-projection input has the largest scale."""
    rows = table.set_index("condition")
    fp, tensor, keep = (float(rows.loc[c, "perplexity"]) for c in ("fp", "per_tensor", "per_tensor_keep"))
    cost = tensor - fp
    recovered = (tensor - keep) / cost if cost > 0 else float("nan")
    claim, paper = (
        "keeping the spike tokens in full precision recovers per-tensor INT8 activations",
        "spikes break low-bit activation quantization (paper's motivation)",
    )
    if cost < min_cost * fp:  # a recovery share of a negligible cost is noise
        claims = [
            not_applicable(
                SECTION,
                claim,
                model,
                paper,
                f"per-tensor INT8 costs less than {100 * min_cost:g}% here ({fp:.4g} -> {tensor:.4g})",
            )
        ]
    else:
        kept = float(rows.loc["per_tensor_keep", "kept_fp_share"])
        # an outlier split keeps a few tokens: when most tokens would clip (a model whose every token
        # carries a massive channel, e.g. Gemma 3) keeping them is no split at all, however much it recovers
        split = "" if kept <= max_kept_share else f"; not an outlier split: {100 * kept:.0f}% of tokens would clip"
        claims = [
            Claim(
                SECTION,
                claim,
                model,
                paper,
                f"perplexity {fp:.4g} (fp) -> {tensor:.4g} (per-tensor A8, +{cost:.4g}) -> {keep:.4g} with "
                f"{100 * kept:.2f}% of tokens in full precision "
                f"(recovers {100 * recovered:.0f}% of the cost); per-token A8 {float(rows.loc['per_token', 'perplexity']):.4g}"
                + split,
                bool(recovered >= min_recovery and kept <= max_kept_share),
                f">= {100 * min_recovery:.0f}% of the per-tensor cost recovered, keeping <= {100 * max_kept_share:g}% of tokens",
            )
        ]
    down = scales[scales["role"].isin(["down", "fc_out", "shared_down"])]
    if not step_up:
        claims.append(
            not_applicable(
                SECTION,
                "the step-up block's down-projection input has the largest activation scale",
                model,
                "the step-up FFN writes the spike",
                "no step-up block was detected",
            )
        )
    else:
        best = scales.loc[scales["max_scale"].idxmax()]
        claims.append(
            Claim(
                SECTION,
                "the step-up block's down-projection input has the largest activation scale",
                model,
                "the step-up FFN writes the spike",
                f"largest scale {best['max_scale']:.4g} at {best['module']} (block {best['block']}); "
                f"down-projection inputs of step-up blocks {list(step_up)}: "
                + ", ".join(f"{r.max_scale:.4g}" for r in down[down["block"].isin(step_up)].itertuples()),
                bool(best["role"] in ("down", "fc_out", "shared_down") and int(best["block"]) in set(step_up)),
                "argmax over every Linear input is a step-up block's down projection",
            )
        )
    return claims
