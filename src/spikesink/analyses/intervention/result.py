"""Sinks, spike and perplexity per edit of the step-up block(s) (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from spikesink.analyses.unit import Result, stored

PER_PROMPT = ["block", "condition", "prompt", "n_tokens", "nll_sum", "sink_ratio", "key0_mass", "spike_first_token"]


@dataclass(kw_only=True)
class Intervention(Result):
    table: object = stored("parquet")  # one row per (block, condition): none first, then each edit
    # the same forwards per held-out prompt: one row per (block, condition, prompt), PER_PROMPT
    # (nll_sum: summed next-token loss over n_tokens; sink_ratio in percent of (layer, head) pairs)
    per_prompt: object = stored("parquet")
