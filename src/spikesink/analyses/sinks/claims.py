"""Sec. 3.2: attention sinks form on the spike token (from the extraction's sink statistics).

What the claim means here: sinks form (the sink ratio, with its interval over prompts, reaches
`min_sink_ratio`) and the sinking heads put most of their attention on spike tokens (the mean
attention a sinking (prompt, layer, head) gives to spike tokens, key 0 counted only while it is a
spike token, reaches `min_share_on_spikes`, with its interval over prompts). Both must hold. A
model without a spike has no spike token to sink on: n/a.
"""

from __future__ import annotations

import numpy as np

from spikesink.analyses.sinks import ANALYSIS
from spikesink.analyses.sinks.result import Sinks
from spikesink.analyses.unit import Job
from spikesink.reporting.scorecard import Claim, ClaimSpec
from spikesink.reporting.verdicts import bootstrap, combine, mean_estimate, verdict

SECTION = ANALYSIS.section
ON_SPIKE = ClaimSpec(
    SECTION,
    "attention sinks form on the spike token (key 0)",
    "sink heads put most attention on the first token, the spike token",
)


def claims(result: Sinks, job: Job) -> list[Claim]:
    c = job.settings.claims
    return sink_claims(job.model_name, result, job["lifecycle"], c.min_sink_ratio, c.min_share_on_spikes)


def sink_claims(model: str, result: Sinks, lifecycle, min_sink_ratio: float, min_share_on_spikes: float) -> list:
    if result.not_applicable:
        return [ON_SPIKE.na(model, result.not_applicable)]
    if lifecycle is None or not lifecycle.massive_blocks:
        return [ON_SPIKE.na(model, "the model has no spike (no massive block): no spike token to sink on")]
    per = result.per_prompt or {}
    if not len(per.get("n_sinking", ())):
        return [ON_SPIKE.na(model, "no per-prompt sink statistics (rerun the sinks analysis)")]
    ratio = mean_estimate(per["sink_ratio"])
    key0 = mean_estimate(per["key0_mass"])
    on_spikes, n_sinking = np.asarray(per["on_spikes"], float), np.asarray(per["n_sinking"], float)
    share = bootstrap(
        lambda idx: on_spikes[idx].sum() / n_sinking[idx].sum() if n_sinking[idx].sum() else float("nan"),
        len(n_sinking),
    )
    spikes0 = np.asarray(per["key0_spikes"], dtype=bool)
    key0_share = float(spikes0[:, 1:].mean()) if spikes0.shape[1] > 1 else float("nan")
    held = combine([verdict(ratio, min_sink_ratio, ">="), verdict(share, min_share_on_spikes, ">=")])
    share_text = share.text("{:.3f}") if n_sinking.sum() else "- (no head sinks)"
    ours = (
        f"sink ratio {ratio.text('{:.1f}')}% (eps {result.eps}); sinking heads give {share_text} of their "
        f"attention to spike tokens; mean attention on key 0 {key0.text('{:.3f}')}; key 0 is a spike token in "
        f"{100 * key0_share:.0f}% of (prompt, layer > 0) (means over {len(n_sinking)} prompts, 95% intervals)"
    )
    if np.isfinite(result.learned_sink_share_mean):
        ours += f"; learned sink logits take {result.learned_sink_share_mean:.3f} of each softmax (mean)"
    if np.isfinite(result.output_gate_pos0_mean):
        ours += (
            f"; output gate sigmoid(g) {result.output_gate_pos0_mean:.3f} at token 0 vs "
            f"{result.output_gate_rest_mean:.3f} at the others (mean)"
        )
    if result.no_softmax_layers:
        ours += f"; layers {result.no_softmax_layers} n/a: {result.no_softmax_reason}"
    return [
        ON_SPIKE(
            model,
            ours,
            held,
            f"sink ratio >= {min_sink_ratio:g}% and sinking heads' attention on spike tokens >= {min_share_on_spikes:g} "
            "(key 0 counted only while it is a spike token), both intervals",
            share,
        )
    ]
