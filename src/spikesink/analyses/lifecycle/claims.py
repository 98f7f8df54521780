"""Life-cycle claims for the scorecard, from a detected Lifecycle."""

from __future__ import annotations

from spikesink.analyses.lifecycle import ANALYSIS
from spikesink.analyses.lifecycle.result import Lifecycle
from spikesink.analyses.unit import Job
from spikesink.instrumentation.blocks import block_kind
from spikesink.reporting.scorecard import Claim

SECTION = ANALYSIS.section


def claims(result: Lifecycle, job: Job) -> list[Claim]:
    c = job.settings.claims
    return lifecycle_claims(
        job.model_name, result, c.max_channels, c.max_token_fraction, c.early_fraction, c.late_fraction
    )


def _blocks(blocks) -> str:
    return ", ".join(map(str, blocks)) if blocks else "none"


def lifecycle_claims(
    model: str,
    lc: Lifecycle,
    max_channels: int = 10,
    max_token_fraction: float = 0.05,
    early_fraction: float = 1 / 3,
    late_fraction: float = 2 / 3,
) -> list[Claim]:
    n = lc.n_blocks
    plateau = lc.plateau
    claims = []

    def add(claim, paper_value, ours, holds, tolerance):
        claims.append(Claim(SECTION, claim, model, paper_value, ours, bool(holds), tolerance))

    has_plateau = plateau is not None
    add(
        "massive activations appear (rise - plateau - fall)",
        "top magnitudes rise in 1-2 blocks, stay flat, then fall",
        f"massive blocks {plateau[0]}-{plateau[1]} of {n}, contiguous={lc.contiguous}, peak {lc.peak_magnitude:.4g} "
        f"= {lc.peak_median_ratio:.3g}x median"
        if has_plateau
        else "no massive block",
        has_plateau and lc.contiguous and plateau[0] > 1 and plateau[1] < n,
        "one contiguous run of massive blocks, not touching block 1 or the last block",
    )
    add(
        "property (i): massive activations only in intermediate layers",
        "absent in the first layer and after the last layer",
        f"first massive block {plateau[0]}, last {plateau[1]}, of {n}" if has_plateau else "no massive block",
        has_plateau and plateau[0] > 2 and plateau[1] < n,
        "no massive block in layer 1 (blocks 1-2) nor at block 2L",
    )
    add(
        "property (ii): massive activations live in few channels",
        "a handful of fixed channels (e.g. 3 in Llama-3-8B)",
        f"{len(lc.spike_channels)} channel(s): {_blocks(lc.spike_channels)}",
        0 < len(lc.spike_channels) <= max_channels,
        f"1 to {max_channels} spike channels",
    )
    add(
        "property (v): massive activations sit on few tokens",
        "the first token and a few delimiters",
        f"{100 * lc.spike_token_fraction:.2f}% of tokens; position 0 spikes in {100 * lc.position0_spike_fraction:.0f}% of prompts",
        0 < lc.spike_token_fraction <= max_token_fraction,
        f"0 < share of massive tokens <= {100 * max_token_fraction:.0f}%",
    )
    up = lc.step_up
    add(
        "the spike is injected by one or two early FFN blocks (step-up)",
        "1-2 FFN blocks in the first layers (Table 1)",
        f"step-up {_blocks(up)} ({', '.join(block_kind(b) for b in up) or '-'}), carrying "
        + ", ".join(f"{lc.contributions[b - 1]:.2f}" for b in up)
        + " of the spike"
        if up
        else "no step-up block",
        1 <= len(up) <= 2 and all(block_kind(b) == "ffn" and b <= round(early_fraction * n) for b in up),
        f"1-2 step-up blocks, all FFN, all in the first {early_fraction:.0%} of blocks",
    )
    down = lc.step_down
    cancelled = -sum(lc.contributions[b - 1] for b in down)
    add(
        "late blocks cancel the spike with the opposite sign (step-down)",
        "late blocks write the opposite sign on the spike channels (Table 1)",
        f"step-down {_blocks(down)}, cancelling {cancelled:.2f} of the spike" if down else "no step-down block",
        bool(down) and all(b >= round(late_fraction * n) for b in down) and cancelled >= 0.5,
        f"step-down blocks in the last {1 - late_fraction:.0%} of blocks, together cancelling >= 50%",
    )
    return claims
