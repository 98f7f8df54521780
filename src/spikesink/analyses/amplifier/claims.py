"""Fig. 3, 4 and 8 claims, and the position-0 fixed-map check.

Every claim yields a row: n/a with the reason when its blocks or measurements are missing (no
step-up block, no step-down block, no gated FFN, no s*). The S_k claims are read in the step-up
and in the step-down blocks (the paper: one dominant eigenvalue, shared s*, in both). Weight
statistics have no interval (nothing repeats); the position-0 alignment with s* is a median over
first tokens, with its 95 % bootstrap interval over them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from spikesink.analyses.amplifier import ANALYSIS
from spikesink.analyses.amplifier.result import Amplifier
from spikesink.analyses.unit import Job
from spikesink.reporting.scorecard import CHECK, Claim, ClaimSpec
from spikesink.reporting.verdicts import FAILS, HOLDS, Estimate, bootstrap, combine, verdict

SECTION = ANALYSIS.section


def claims(result: Amplifier, job: Job) -> list[Claim]:
    if result.not_applicable:
        return [spec.na(job.model_name, result.not_applicable) for spec in CLAIMS]
    return amplifier_claims(job.model_name, result.summary, job.settings.claims)


UK_OUTLIERS = ClaimSpec(
    SECTION,
    "spike channels have outlying ||U_k|| in the step-up/step-down blocks",
    "outlying ||U_k||_F only in step-up/step-down blocks (Fig 3, 8)",
)
DOMINANT_UP = ClaimSpec(
    SECTION,
    "S_k of spike channels has one dominant eigenvalue in the step-up blocks",
    "one dominant eigenvalue (Fig 4)",
)
DOMINANT_DOWN = ClaimSpec(
    SECTION,
    "S_k of spike channels has one dominant eigenvalue in the step-down blocks",
    "one dominant eigenvalue (Fig 4)",
)
SHARED_UP = ClaimSpec(SECTION, "spike channels share the top eigenvector s* in the step-up blocks", "shared s* (Fig 4)")
SHARED_DOWN = ClaimSpec(
    SECTION, "spike channels share the top eigenvector s* in the step-down blocks", "shared s* (Fig 4)"
)
# an identity (softmax over one key is 1): a check of the extraction, not a finding
FIXED_MAP = ClaimSpec(
    SECTION,
    "attention at position 0 is a fixed linear map W_VO of the token",
    "position 0 attends only to itself",
    kind=CHECK,
)
ALIGNED = ClaimSpec(
    SECTION,
    "the position-0 input of the step-up block is aligned with s*",
    "the fixed position-0 map steers the first token towards s*",
)
UK_CLAIMS = (UK_OUTLIERS, DOMINANT_UP, SHARED_UP, DOMINANT_DOWN, SHARED_DOWN)
CLAIMS = (*UK_CLAIMS, FIXED_MAP, ALIGNED)


def amplifier_claims(model: str, summary: Mapping, thresholds=None) -> list[Claim]:
    """Fig 3/4/8 claims plus the position-0 fixed-map check (U_k rows n/a without a gated FFN).

    thresholds: the `claims:` settings (job.settings.claims; None: the schema's defaults).
    """
    from spikesink.config import analysis_settings

    c = thresholds if thresholds is not None else analysis_settings("amplifier").claims
    if not summary.get("step_up"):
        return [spec.na(model, "no step-up block was detected") for spec in CLAIMS]
    if summary.get("not_applicable"):
        rows = [spec.na(model, summary["not_applicable"]) for spec in UK_CLAIMS]
    else:
        rows = [_outliers(model, summary, c.min_ratio)]
        for specs, kind in (((DOMINANT_UP, SHARED_UP), "step_up"), ((DOMINANT_DOWN, SHARED_DOWN), "step_down")):
            rows += _spectra_rows(model, summary, kind, specs, c.min_dominance, c.min_shared_cos)
    return rows + _position0_rows(model, summary.get("position0"), c.max_rel_error, c.min_alignment)


def _outliers(model: str, summary: Mapping, min_ratio: float) -> Claim:
    ratios = summary.get("uk_ratio_to_median") or {}
    if not ratios:
        return UK_OUTLIERS.na(model, "no spike channel was detected: no ||U_k|| to compare")
    step_blocks = set(summary["step_up"]) | set(summary["step_down"])
    parts, verdicts = [], []
    for channel, by_block in ratios.items():
        best = max(by_block, key=by_block.get)
        outside = max((v for b, v in by_block.items() if b not in step_blocks), default=float("nan"))
        verdicts.append(HOLDS if best in step_blocks else FAILS)
        verdicts += [verdict(by_block.get(b, 0.0), min_ratio, ">=") for b in summary["step_up"]]
        parts.append(
            f"ch {channel}: max {by_block[best]:.1f}x median at block {best}; step-up "
            + ", ".join(f"{b}: {by_block.get(b, float('nan')):.1f}x" for b in summary["step_up"])
            + "; step-down "
            + (", ".join(f"{b}: {by_block.get(b, float('nan')):.1f}x" for b in summary["step_down"]) or "none")
            + f"; elsewhere at most {outside:.1f}x"
        )
    weakest = min(min(by_block.get(b, 0.0) for b in summary["step_up"]) for by_block in ratios.values())
    return UK_OUTLIERS(
        model,
        "; ".join(parts),
        combine(verdicts),
        f"largest ratio in a step block and >= {min_ratio:g}x the block median in every step-up block",
        Estimate.point(weakest),
    )


def _spectra_rows(model, summary, kind, specs, min_dominance, min_shared_cos) -> list[Claim]:
    dominant, shared = specs
    label = kind.replace("_", "-")
    blocks = summary.get("blocks") or {}
    measured = [b for b in summary[kind] if b in blocks]
    if not summary[kind]:
        reason = f"no {label} block was detected"
        return [dominant.na(model, reason), shared.na(model, reason)]
    if not measured:
        reason = f"no S_k spectra of the {label} blocks {summary[kind]} were computed"
        return [dominant.na(model, reason), shared.na(model, reason)]
    spike_channels = [int(c) for c in summary.get("spike_channels", [])]
    texts, verdicts, weakest = [], [], None
    for b in measured:
        ratios = blocks[b]["top_over_second"]
        channels = [ch for ch in spike_channels if ch in ratios] or list(ratios)
        dominance = min(ratios[ch] for ch in channels)  # every spike channel
        control = blocks[b]["control_top_over_second_median"]
        verdicts += [verdict(dominance, min_dominance, ">="), verdict(dominance, control, ">")]
        weakest = dominance if weakest is None else min(weakest, dominance)
        texts.append(f"block {b}: abs(l1)/abs(l2) = {dominance:.2f} on ch {channels} (random channels {control:.2f})")
    rows = [
        dominant(
            model,
            "; ".join(texts),
            combine(verdicts),
            f"abs(l1)/abs(l2) of every spike channel >= {min_dominance:g} and above random channels', in every "
            f"{label} block",
            Estimate.point(weakest),
        )
    ]
    cosines = {b: blocks[b]["top_vector_abs_cos_min"] for b in measured}
    sharing = summary.get("sharing_channels", spike_channels)
    rows.append(
        shared(
            model,
            "; ".join(f"block {b}: min abs(cos) = {v:.3f}" for b, v in cosines.items())
            + f" over channels {sharing} ({summary.get('sharing_from', 'spike channels')})",
            combine([verdict(v, min_shared_cos, ">=") for v in cosines.values()]),
            f"min abs(cos) between top eigenvectors >= {min_shared_cos:g} in every {label} block",
            Estimate.point(min(cosines.values())),
        )
    )
    return rows


def _position0_rows(model, pos0, max_rel_error, min_alignment) -> list[Claim]:
    if pos0 and not pos0.get("attention_blocks") and pos0.get("no_softmax_blocks"):
        reason = (
            f"every attention block before the step-up ({pos0['no_softmax_blocks']}) is "
            f"{pos0['no_softmax_reason']}: no softmax attention to reduce to key 0 at position 0"
        )
        rows = [FIXED_MAP.na(model, reason)]
    elif not pos0 or not pos0.get("attention_blocks"):
        reason = "the step-up block is the first FFN block: no attention block before it to check"
        rows = [FIXED_MAP.na(model, reason if pos0 else "the position-0 check was not run")]
    elif pos0.get("output_gate"):
        reason = (
            "an output gate sigmoid(W_G n_0) multiplies position 0's attention output per head and channel, a factor "
            f"that depends on the token: not a fixed map (gated so, the q/k/v/o split reproduces it to "
            f"{pos0['rel_error_max']:.2g} in blocks {pos0['attention_blocks']})"
        )
        rows = [FIXED_MAP.na(model, reason)]
    elif pos0.get("learned_sinks"):
        reason = (
            "a learned sink logit takes 1 - p(key 0) of position 0's softmax per head, a share that depends on "
            f"the token: not a fixed map (weighted by that share, the q/k/v/o split reproduces it to "
            f"{pos0['rel_error_max']:.2g})"
        )
        rows = [FIXED_MAP.na(model, reason)]
    else:
        rows = [
            FIXED_MAP.judge(
                model,
                f"max relative error {pos0['rel_error_max']:.2g} over attention blocks {pos0['attention_blocks'][0]}-"
                f"{pos0['attention_blocks'][-1]}, {pos0['n_sequences']} first tokens",
                pos0["rel_error_max"],
                max_rel_error,
                "<=",
                f"relative error <= {max_rel_error:g}",
            )
        ]
    align = (pos0 or {}).get("step_up_input_cos_s_star")
    if not align:
        rows.append(ALIGNED.na(model, "no s* of the step-up block (no gated FFN, or no spectra)"))
        return rows
    values = np.asarray(align.get("abs_values") or [], dtype=float)
    estimate = (
        bootstrap(lambda idx: float(np.median(values[idx])), len(values))
        if values.size
        else Estimate.point(align["abs_median"])
    )
    rows.append(
        ALIGNED.judge(
            model,
            f"median abs(cos) = {estimate.text('{:.2f}')} over {pos0['n_sequences']} first tokens "
            f"(random: ~{pos0['random_abs_cos_scale']:.3f})",
            estimate,
            min_alignment,
            ">=",
            f"median abs(cos) >= {min_alignment:g} (95% interval over first tokens)",
        )
    )
    return rows
