"""Sec. 3.2: attention sinks form on the spike token (from the extraction's sink statistics)."""

from __future__ import annotations

from spikesink.analyses.sinks import ANALYSIS
from spikesink.analyses.sinks.result import Sinks
from spikesink.analyses.unit import Job
from spikesink.reporting.scorecard import Claim

SECTION = ANALYSIS.section


def claims(result: Sinks, job: Job) -> list[Claim]:
    lc = job["lifecycle"]
    ratio, key0, eps = result.sink_ratio, result.key0_mass_mean, result.eps
    return [
        Claim(
            SECTION,
            "attention sinks form on the spike token (key 0)",
            job.model_name,
            "sink heads put most attention on the first token, the spike token",
            f"sink ratio {ratio:.1f}% (eps {eps}), mean attention on key 0 {key0:.3f}; sinking heads give "
            f"{result.share_on_spikes:.3f} of their attention to spike tokens (key 0 included)",
            ratio > 0 and bool(lc.massive_blocks) and lc.position0_spike_fraction >= 0.5,
            "sink ratio > 0 and position 0 is a spike token in most prompts",
        )
    ]
