"""Fig. 3, 4 and 8 claims, and the position-0 fixed-map check."""

from __future__ import annotations

from collections.abc import Mapping

from spikesink.analyses.amplifier import ANALYSIS
from spikesink.analyses.amplifier.result import Amplifier
from spikesink.analyses.unit import Job
from spikesink.reporting.scorecard import CHECK, ClaimSpec

SECTION = ANALYSIS.section


def claims(result: Amplifier, job: Job) -> list:
    c = job.settings.claims
    return amplifier_claims(
        job.model_name, result.summary, c.min_ratio, c.min_dominance, c.min_shared_cos, c.max_rel_error, c.min_alignment
    )


UK_OUTLIERS = ClaimSpec(
    SECTION,
    "spike channels have outlying ||U_k|| in the step-up/step-down blocks",
    "outlying ||U_k||_F only in step-up/step-down blocks (Fig 3, 8)",
)
DOMINANT = ClaimSpec(SECTION, "S_k of spike channels has one dominant eigenvalue", "one dominant eigenvalue (Fig 4)")
SHARED = ClaimSpec(SECTION, "spike channels share the top eigenvector s*", "shared s* (Fig 4)")
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
UK_CLAIMS = (UK_OUTLIERS, DOMINANT, SHARED)


def amplifier_claims(
    model: str,
    summary: Mapping,
    min_ratio: float = 5.0,
    min_dominance: float = 2.0,
    min_shared_cos: float = 0.9,
    max_rel_error: float = 1e-3,
    min_alignment: float = 0.3,
) -> list:
    """Fig 3/4/8 claims plus the position-0 fixed-map check (U_k rows n/a without a gated FFN)."""
    if not summary["step_up"]:
        return [spec.na(model, "no step-up block was detected") for spec in (*UK_CLAIMS, FIXED_MAP, ALIGNED)]
    claims = [spec.na(model, summary["not_applicable"]) for spec in UK_CLAIMS] if summary.get("not_applicable") else []
    step_blocks = set(summary["step_up"]) | set(summary["step_down"])
    ratios = summary.get("uk_ratio_to_median", {})
    if ratios and step_blocks:
        parts, holds = [], True
        for channel, by_block in ratios.items():
            best = max(by_block, key=by_block.get)
            up_ok = all(by_block.get(b, 0) >= min_ratio for b in summary["step_up"])
            outside = max((v for b, v in by_block.items() if b not in step_blocks), default=float("nan"))
            holds &= best in step_blocks and up_ok
            parts.append(
                f"ch {channel}: max {by_block[best]:.1f}x median at block {best}; step-up "
                + ", ".join(f"{b}: {by_block.get(b, float('nan')):.1f}x" for b in summary["step_up"])
                + "; step-down "
                + ", ".join(f"{b}: {by_block.get(b, float('nan')):.1f}x" for b in summary["step_down"])
                + f"; elsewhere at most {outside:.1f}x"
            )
        claims.append(
            UK_OUTLIERS(
                model,
                "; ".join(parts),
                holds,
                f"largest ratio in a step block and >= {min_ratio}x the block median in every step-up block",
            )
        )
    blocks = summary.get("blocks", {})
    if blocks:
        up = [b for b in summary["step_up"] if b in blocks]
        dominance = {b: max(blocks[b]["top_over_second"].values()) for b in up}
        controls = {b: blocks[b]["control_top_over_second_median"] for b in up}
        claims.append(
            DOMINANT(
                model,
                "; ".join(f"block {b}: |l1|/|l2| = {dominance[b]:.2f} (random channels {controls[b]:.2f})" for b in up),
                all(dominance[b] >= min_dominance and dominance[b] > controls[b] for b in up),
                f"|l1|/|l2| >= {min_dominance} and above random channels",
            )
        )
        shared = {b: blocks[b]["top_vector_abs_cos_min"] for b in up}
        claims.append(
            SHARED(
                model,
                "; ".join(
                    f"block {b}: min |cos| = {shared[b]:.3f} over channels {summary['sharing_channels']} "
                    f"({summary['sharing_from']})"
                    for b in up
                ),
                all(v >= min_shared_cos for v in shared.values()),
                f"min |cos| >= {min_shared_cos}",
            )
        )
    pos0 = summary.get("position0")
    if pos0 and pos0["attention_blocks"]:
        claims.append(
            FIXED_MAP(
                model,
                f"max relative error {pos0['rel_error_max']:.2g} over attention blocks {pos0['attention_blocks'][0]}-"
                f"{pos0['attention_blocks'][-1]}, {pos0['n_sequences']} first tokens",
                pos0["rel_error_max"] <= max_rel_error,
                f"relative error <= {max_rel_error}",
            )
        )
    if pos0 and pos0.get("step_up_input_cos_s_star"):
        align = pos0["step_up_input_cos_s_star"]["abs_median"]
        claims.append(
            ALIGNED(
                model,
                f"median |cos| = {align:.2f} (random: ~{pos0['random_abs_cos_scale']:.3f})",
                align >= min_alignment,
                f"median |cos| >= {min_alignment}",
            )
        )
    return claims
