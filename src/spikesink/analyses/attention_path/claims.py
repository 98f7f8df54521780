"""Does the sink come from the spike through token 0's attention input?

Judged on the held-out prompts with 95 % bootstrap intervals over prompts, the unedited model and
both edits resampled together (the same prompts in numerator and denominator): the spike edit
must remove at least `min_drop` of the edited layers' sinks and the control edit must change them
by less than `max_control_change` (spikesink.reporting.verdicts). A result without per-prompt
measurements is judged on its point values, and says so. Thresholds come from the `claims:`
section (schema.yaml).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spikesink.analyses.attention_path import ANALYSIS
from spikesink.analyses.attention_path.result import AttentionPath
from spikesink.analyses.unit import Job
from spikesink.config import analysis_settings
from spikesink.reporting.scorecard import ClaimSpec
from spikesink.reporting.verdicts import Estimate, bootstrap, combine, verdict

SECTION = ANALYSIS.section
CLAIM = "the sink comes from the spike through token 0's attention input (spike -> norm -> sparse key -> sink)"
PAPER = "Sec. 3: the normalised spike is a near-constant sparse key that later queries align with"
SPEC = ClaimSpec(SECTION, CLAIM, PAPER)


def claims(result: AttentionPath, job: Job) -> list:
    c = job.settings.claims
    return attention_path_claims(
        job.model_name, result.table, result.not_applicable, c.min_drop, c.max_control_change, result.per_prompt
    )


def path_estimates(per_prompt: pd.DataFrame, metric: str) -> dict[str, Estimate]:
    """The relative drop of `metric` under the spike edit and the relative change under the control
    edit, each with its bootstrap interval over held-out prompts (all conditions resampled jointly)."""
    frames = {c: rows.set_index("prompt").sort_index()[metric] for c, rows in per_prompt.groupby("condition")}
    base = frames["none"].to_numpy(float)
    spike = frames["spike channels"].reindex(frames["none"].index).to_numpy(float)
    control = frames["control channels"].reindex(frames["none"].index).to_numpy(float)

    def drop(idx):
        before = base[idx].mean()
        return 1 - spike[idx].mean() / before if before > 0 else np.nan

    def change(idx):
        before = base[idx].mean()
        return abs(control[idx].mean() / before - 1) if before > 0 else np.nan

    return {"drop": bootstrap(drop, len(base)), "control_change": bootstrap(change, len(base))}


def attention_path_claims(
    model: str,
    table: pd.DataFrame | None,
    reason: str | None = None,
    min_drop: float | None = None,
    max_control_change: float | None = None,
    per_prompt: pd.DataFrame | None = None,
) -> list:
    """Holds when the spike edit removes at least `min_drop` of the edited layers' sink ratio (or
    key-0 mass when no head sinks there) and the control edit changes it by less than
    `max_control_change`, relatively: both with their 95 % interval over prompts on that side.
    Thresholds left None are the schema's (a workflow job passes its settings')."""
    defaults = analysis_settings("attention_path").claims
    min_drop = defaults.min_drop if min_drop is None else min_drop
    max_control_change = defaults.max_control_change if max_control_change is None else max_control_change
    if reason or table is None or table.empty:
        return [SPEC.na(model, reason or "no plateau attention block to edit")]
    rows = table.set_index("condition")
    metric = (
        "sink_ratio_edited_layers" if rows.loc["none", "sink_ratio_edited_layers"] > 0 else "key0_mass_edited_layers"
    )
    base, spike, control = (float(rows.loc[c, metric]) for c in ("none", "spike channels", "control channels"))
    name = "sink ratio" if metric.startswith("sink") else "key-0 mass"
    if np.isnan(base):  # every edited layer is a hybrid's linear attention: NaN statistics
        return [
            SPEC.na(
                model,
                f"no softmax attention among the edited blocks {table['blocks'].iloc[0]}: linear attention has no "
                "softmax, no attention map",
            )
        ]
    if not base > 0:
        return [SPEC.na(model, f"no attention on key 0 in the edited layers (blocks {table['blocks'].iloc[0]})")]
    if per_prompt is None or per_prompt.empty:  # a result from before they were kept: the points decide
        drop, change = Estimate.point(1 - spike / base), Estimate.point(abs(control / base - 1))
        over = "no per-prompt measurements: point values, no interval"
    else:
        est = path_estimates(per_prompt, metric)
        drop, change = est["drop"], est["control_change"]
        over = f"95% intervals over {drop.n} held-out prompts"
    verdicts = [verdict(drop, min_drop, ">="), verdict(change, max_control_change, "<")]
    return [
        SPEC(
            model,
            f"blocks {table['blocks'].iloc[0]}: {name} {base:.3g} -> {spike:.3g} without the spike in token 0's attention "
            f"input (drop {drop.text('{:.2f}')}; control channels: {control:.3g}, change {change.text('{:.2f}')}); "
            f"perplexity {rows.loc['none', 'perplexity']:.4g} -> {rows.loc['spike channels', 'perplexity']:.4g} "
            f"(control {rows.loc['control channels', 'perplexity']:.4g}); {over}",
            combine(verdicts),
            f"{name} of the edited layers falls by >= {100 * min_drop:.0f}%, control changes it by < "
            f"{100 * max_control_change:.0f}%, both 95% intervals on that side",
            drop,
        )
    ]
