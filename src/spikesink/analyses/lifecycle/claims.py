"""Life-cycle claims for the scorecard, from a detected Lifecycle.

Without a massive block the model has no spike: "massive activations appear" fails and every
claim about the spike (its layers, channels, tokens, blocks, stages) reads n/a with that reason.
The step-up and step-down claims read the main stage (the massive spike); earlier stages are
named in the row and tested by the one-stage claim.
"""

from __future__ import annotations

from spikesink.analyses.lifecycle import ANALYSIS
from spikesink.analyses.lifecycle.result import Lifecycle
from spikesink.analyses.unit import Job
from spikesink.instrumentation.blocks import block_kind
from spikesink.reporting.scorecard import Claim, ClaimSpec
from spikesink.reporting.verdicts import mean_estimate

SECTION = ANALYSIS.section
APPEAR = ClaimSpec(
    SECTION,
    "massive activations appear (rise - plateau - fall)",
    "top magnitudes rise in 1-2 blocks, stay flat, then fall",
)
LAYERS = ClaimSpec(
    SECTION,
    "property (i): massive activations only in intermediate layers",
    "absent in the first layer and after the last layer",
)
CHANNELS = ClaimSpec(
    SECTION,
    "property (ii): massive activations live in few channels",
    "a handful of fixed channels (e.g. 3 in Llama-3-8B)",
)
TOKENS = ClaimSpec(
    SECTION, "property (v): massive activations sit on few tokens", "the first token and a few delimiters"
)
STEP_UP = ClaimSpec(
    SECTION,
    "the spike is injected by one or two early FFN blocks (step-up)",
    "1-2 FFN blocks in the first layers (Table 1)",
)
STEP_DOWN = ClaimSpec(
    SECTION,
    "late blocks cancel the spike with the opposite sign (step-down)",
    "late blocks write the opposite sign on the spike channels (Table 1)",
)
ONE_STAGE = ClaimSpec(
    SECTION, "the spike rises, stays and falls once (one stage)", "one rise, one plateau, one fall (Fig. 1, Table 1)"
)
SPIKE_CLAIMS = (LAYERS, CHANNELS, TOKENS, STEP_UP, STEP_DOWN, ONE_STAGE)


def claims(result: Lifecycle, job: Job) -> list[Claim]:
    c = job.settings.claims
    return lifecycle_claims(
        job.model_name, result, c.max_channels, c.max_token_fraction, c.early_fraction, c.late_fraction
    )


def _blocks(blocks) -> str:
    return ", ".join(map(str, blocks)) if blocks else "none"


def _stage_text(stage: dict) -> str:
    return (
        f"blocks {_blocks(stage['step_up'])} -> {stage['peak_level']:.3g} at block {stage['peak_block']}, "
        f"cancelled {100 * stage['cancelled_share']:.0f}% by {_blocks(stage['step_down'])}"
    )


def _extent_rows(model: str, lc: Lifecycle, max_channels: int) -> list[Claim]:
    """Where the massive blocks lie (appear, property (i)) and how many channels carry them (ii)."""
    n, plateau = lc.n_blocks, lc.plateau
    return [
        APPEAR(
            model,
            f"massive blocks {plateau[0]}-{plateau[1]} of {n}, contiguous={lc.contiguous}, peak {lc.peak_magnitude:.4g} "
            f"= {lc.peak_median_ratio:.3g}x median",
            lc.contiguous and plateau[0] > 1 and plateau[1] < n,
            "one contiguous run of massive blocks, not touching block 1 or the last block",
        ),
        LAYERS(
            model,
            f"first massive block {plateau[0]}, last {plateau[1]}, of {n}",
            plateau[0] > 2 and plateau[1] < n,
            "no massive block in layer 1 (blocks 1-2) nor at block 2L",
        ),
        CHANNELS(
            model,
            f"{len(lc.spike_channels)} channel(s): {_blocks(lc.spike_channels)}",
            0 < len(lc.spike_channels) <= max_channels,
            f"1 to {max_channels} spike channels",
        ),
    ]


def _tokens_claim(model: str, lc: Lifecycle, max_token_fraction: float) -> Claim:
    """Property (v), judged on the mean share of massive tokens over prompts with its interval."""
    share = mean_estimate(lc.spike_token_fraction_by_prompt or [lc.spike_token_fraction])
    claim = TOKENS.judge(
        model,
        f"{share.text('{:.4f}')} of tokens (mean over prompts, 95% interval); position 0 spikes in "
        f"{100 * lc.position0_spike_fraction:.0f}% of prompts",
        share,
        max_token_fraction,
        "<=",
        f"0 < share of massive tokens <= {100 * max_token_fraction:.0f}%",
    )
    if share.value <= 0:  # no spike token at all in the middle plateau block
        claim.verdict = "fails"
    return claim


def _step_up_claim(model: str, lc: Lifecycle, early_fraction: float) -> Claim:
    """The main stage's step-up blocks; earlier stages are named in the row."""
    earlier = [s for s in lc.stages if not s["main"]]
    before = f"; earlier stage(s): {'; '.join(_stage_text(s) for s in earlier)}" if earlier else ""
    up = lc.step_up
    carried = ", ".join(f"{lc.contributions[b - 1]:.2f}" for b in up)
    kinds = ", ".join(block_kind(b) for b in up)
    ours = f"main stage: step-up {_blocks(up)} ({kinds}), carrying {carried} of the spike" if up else "no step-up block"
    return STEP_UP(
        model,
        ours + before,
        1 <= len(up) <= 2 and all(block_kind(b) == "ffn" and b <= round(early_fraction * lc.n_blocks) for b in up),
        f"1-2 step-up blocks of the main (massive) stage, all FFN, all in the first {early_fraction:.0%} of blocks",
    )


def _step_down_claim(model: str, lc: Lifecycle, late_fraction: float) -> Claim:
    down = lc.step_down
    cancelled = -sum(lc.contributions[b - 1] for b in down)
    return STEP_DOWN(
        model,
        f"main stage: step-down {_blocks(down)}, cancelling {cancelled:.2f} of the spike"
        if down
        else "no step-down block",
        bool(down) and all(b >= round(late_fraction * lc.n_blocks) for b in down) and cancelled >= 0.5,
        f"step-down blocks in the last {1 - late_fraction:.0%} of blocks, together cancelling >= 50%",
    )


def _one_stage_claim(model: str, lc: Lifecycle) -> Claim:
    if not lc.stages:
        return ONE_STAGE.na(model, "no step-up block was detected: the stages cannot be told apart")
    stages = "; ".join(f"{'main' if s['main'] else 'earlier'}: {_stage_text(s)}" for s in lc.stages)
    return ONE_STAGE(
        model,
        f"{len(lc.stages)} stage(s): {stages}",
        len(lc.stages) == 1,
        "one stage: no earlier spike (>= stage_min_ratio x its block median) rises and is cancelled first",
    )


def lifecycle_claims(
    model: str,
    lc: Lifecycle,
    max_channels: int,
    max_token_fraction: float,
    early_fraction: float,
    late_fraction: float,
) -> list[Claim]:
    if lc.plateau is None:
        reason = f"no massive block (top-1 at most {max(lc.top1_by_block, default=0):.3g} = {lc.peak_median_ratio:.3g}x median)"
        return [APPEAR(model, reason, False, "one contiguous run of massive blocks")] + [
            spec.na(model, "the model has no spike: " + reason) for spec in SPIKE_CLAIMS
        ]
    return _extent_rows(model, lc, max_channels) + [
        _tokens_claim(model, lc, max_token_fraction),
        _step_up_claim(model, lc, early_fraction),
        _step_down_claim(model, lc, late_fraction),
        _one_stage_claim(model, lc),
    ]
