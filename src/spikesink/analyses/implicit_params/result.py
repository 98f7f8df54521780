"""Held-out perplexity per edit of the massive activations, and the calibrated sites (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from spikesink.analyses.unit import Result, stored

COLUMNS = ["block", "roles", "mode", "perplexity", "ratio", "edited_tokens", "spread"]
PER_PROMPT = ["block", "mode", "prompt", "n_tokens", "nll_sum"]


@dataclass(kw_only=True)
class ImplicitParams(Result):
    table: object = stored("parquet")  # one row per (site, mode) and the unedited model: COLUMNS
    # the calibrated sites (means, spread and its per-calibration-prompt sums) and the candidates skipped
    sites: dict = stored("json")
    # the same forwards per held-out prompt: one row per (site, mode, prompt), PER_PROMPT (nll_sum:
    # summed next-token loss over n_tokens; the unedited model is block 0, mode "none")
    per_prompt: object = stored("parquet")
