"""Removing the spike at the step-up block: does the sink go?

Each edit's row is judged on the held-out prompts with a 95 % bootstrap interval over prompts,
the unedited and the edited model resampled together (the same prompts in numerator and
denominator): the sink ratio must fall by at least `min_ratio_drop` of its unedited value and
perplexity must rise by more than `min_perplexity_rise`, both intervals on the passing side
(spikesink.reporting.verdicts). A result without per-prompt measurements is judged on its point
values, and says so. Thresholds come from the `claims:` section (schema.yaml).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spikesink.analyses.intervention import ANALYSIS
from spikesink.analyses.intervention.result import Intervention
from spikesink.analyses.unit import Job
from spikesink.config import analysis_settings
from spikesink.reporting.scorecard import Claim, ClaimSpec
from spikesink.reporting.verdicts import Estimate, bootstrap, combine, verdict

SECTION = ANALYSIS.section
PAPER = "spikes and sinks are coupled through the first token (beyond the paper's Section 3: Sun et al. 2024)"
REMOVES = ClaimSpec(SECTION, "removing the spike at the step-up block removes the sink", PAPER)


def claims(result: Intervention, job: Job) -> list[Claim]:
    c = job.settings.claims
    return intervention_claims(
        job.model_name, result.table, result.not_applicable, c.min_ratio_drop, c.min_perplexity_rise, result.per_prompt
    )


def _spec(condition: str, block: int) -> ClaimSpec:
    return ClaimSpec(SECTION, f"removing the spike ({condition} at block {block}) removes the sink", PAPER)


def edit_estimates(per_prompt: pd.DataFrame, block: int, condition: str) -> dict[str, Estimate]:
    """The sink ratio's relative drop and the perplexity ratio of one edit against the unedited
    model, each with its bootstrap interval over the held-out prompts (resampled jointly)."""
    rows = per_prompt[per_prompt["block"] == block]
    base = rows[rows["condition"] == "none"].set_index("prompt").sort_index()
    edit = rows[rows["condition"] == condition].set_index("prompt").reindex(base.index)
    sink0, sink1 = base["sink_ratio"].to_numpy(float), edit["sink_ratio"].to_numpy(float)
    nll0, nll1 = base["nll_sum"].to_numpy(float), edit["nll_sum"].to_numpy(float)
    count = base["n_tokens"].to_numpy(float)

    def drop(idx):
        before = sink0[idx].mean()
        return 1 - sink1[idx].mean() / before if before > 0 else np.nan

    def ratio(idx):
        return np.exp((nll1[idx].sum() - nll0[idx].sum()) / count[idx].sum())

    return {"drop": bootstrap(drop, len(base)), "perplexity_ratio": bootstrap(ratio, len(base))}


def intervention_claims(
    model: str,
    intervention: pd.DataFrame | None,
    reason: str | None = None,
    min_ratio_drop: float | None = None,
    min_perplexity_rise: float | None = None,
    per_prompt: pd.DataFrame | None = None,
) -> list[Claim]:
    """One row per edit (block, mode): does the sink go? n/a without a detected spike or without an
    edit. Thresholds left None are the schema's (a workflow job passes its settings')."""
    defaults = analysis_settings("intervention").claims
    min_ratio_drop = defaults.min_ratio_drop if min_ratio_drop is None else min_ratio_drop
    min_perplexity_rise = defaults.min_perplexity_rise if min_perplexity_rise is None else min_perplexity_rise
    if reason or intervention is None or intervention.empty:
        return [REMOVES.na(model, reason or "no intervention was run")]
    edits = intervention[intervention["condition"] != "none"]
    if edits.empty:
        return [REMOVES.na(model, "no edit was run (analyses.intervention.modes is empty)")]
    tolerance = (
        f"sink ratio falls by >= {100 * min_ratio_drop:.0f}% and perplexity rises by > {100 * min_perplexity_rise:g}%, "
        "both 95% intervals over held-out prompts on that side"
    )
    claims = []
    for _, row in edits.iterrows():
        spec = _spec(row["condition"], row["block"])
        base = intervention[(intervention["condition"] == "none") & (intervention["block"] == row["block"])].iloc[0]
        if per_prompt is None or per_prompt.empty:  # a result from before they were kept: the points decide
            before = base["sink_ratio"]
            drop = Estimate.point(1 - row["sink_ratio"] / before if before > 0 else np.nan)
            ratio = Estimate.point(row["perplexity"] / base["perplexity"])
            over = "no per-prompt measurements: point values, no interval"
        else:
            est = edit_estimates(per_prompt, row["block"], row["condition"])
            drop, ratio = est["drop"], est["perplexity_ratio"]
            over = f"95% intervals over {drop.n} held-out prompts"
        if not np.isfinite(drop.value):
            claims.append(spec.na(model, f"no sink to remove: sink ratio {base['sink_ratio']:.3g}% without the edit"))
            continue
        verdicts = [verdict(drop, min_ratio_drop, ">="), verdict(ratio, 1 + min_perplexity_rise, ">")]
        claims.append(
            spec(
                model,
                f"sink ratio {base['sink_ratio']:.1f}% -> {row['sink_ratio']:.1f}% (drop {drop.text('{:.2f}')}), "
                f"key-0 mass {base['key0_mass']:.3f} -> {row['key0_mass']:.3f}, perplexity {base['perplexity']:.2f} -> "
                f"{row['perplexity']:.2f} ({ratio.text('{:.3g}')}x); {over}",
                combine(verdicts),
                tolerance,
                drop,
            )
        )
    return claims
