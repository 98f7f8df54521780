"""Held-out perplexity per activation quantiser (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from spikesink.analyses.unit import Result, stored

PER_PROMPT = ["condition", "prompt", "n_tokens", "nll_sum", "kept_tokens", "seen_tokens"]


@dataclass(kw_only=True)
class Quantization(Result):
    table: object = stored("parquet")  # one row per condition: fp, per_tensor, per_tensor_keep, per_token
    # the same forwards per held-out prompt: one row per (condition, prompt), PER_PROMPT (nll_sum: summed
    # next-token loss over n_tokens; kept_tokens of seen_tokens: its Linear-input tokens kept in full precision)
    per_prompt: object = stored("parquet")
