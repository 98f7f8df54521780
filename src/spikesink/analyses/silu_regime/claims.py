"""Fig. 2 claims: SiLU (or the family's gate activation) is near identity on spike tokens."""

from __future__ import annotations

import numpy as np
import pandas as pd

from spikesink.analyses.silu_regime import ANALYSIS
from spikesink.analyses.silu_regime.result import SiluRegime
from spikesink.analyses.unit import Job
from spikesink.reporting.scorecard import ClaimSpec

SECTION = ANALYSIS.section


def claims(result: SiluRegime, job: Job) -> list:
    c = job.settings.claims
    return silu_claims(
        job.model_name, result.frame, result.not_applicable, result.activation, c.min_cos, c.min_norm_ratio
    )


def summarize_silu(frame: pd.DataFrame) -> pd.DataFrame:
    """Per block and spike flag: token count and the median / 5th percentile of cos and ratio."""
    grouped = frame.groupby(["block", "is_spike"])
    return grouped.agg(
        n=("cos", "size"),
        cos_median=("cos", "median"),
        cos_p05=("cos", lambda v: float(np.quantile(v, 0.05))),
        norm_ratio_median=("norm_ratio", "median"),
        out_peak_median=("out_peak", "median"),
    ).reset_index()


IDENTITY = ClaimSpec(
    SECTION,
    "SiLU acts as the identity on spike tokens in step-up/step-down blocks",
    "cos(SiLU(x), x) ~ 1 and ||SiLU(x)|| ~ ||x|| (Fig 2)",
)
CLOSER = ClaimSpec(
    SECTION,
    "spike tokens sit closer to the SiLU identity regime than ordinary tokens",
    "spike tokens in the linear regime, others not (Fig 2)",
)


def silu_claims(
    model: str,
    frame: pd.DataFrame,
    reason: str | None = None,
    activation: str = "silu",
    min_cos: float = 0.9,
    min_norm_ratio: float = 0.8,
) -> list:
    """Near-identity SiLU for spike tokens in every step block, and closer to identity than others.

    A gated FFN with another activation (Gemma's GeGLU) answers the same two questions for its
    own activation in rows marked "beyond the paper"; the SiLU rows read n/a for it.
    """
    if reason is None and frame.empty:
        reason = "no token was measured"
    if reason:
        return [IDENTITY.na(model, reason), CLOSER.na(model, reason)]
    summary = summarize_silu(frame)
    spikes = summary[summary["is_spike"]].set_index("block")
    others = summary[~summary["is_spike"]].set_index("block")
    blocks = sorted(frame["block"].unique())
    identity, closer, claims = IDENTITY, CLOSER, []
    if activation != "silu":
        claims = [spec.na(model, f"the gate activation is {activation}, not SiLU") for spec in (IDENTITY, CLOSER)]
        identity = ClaimSpec(
            SECTION,
            f"beyond the paper: {activation} acts as the identity on spike tokens in step blocks",
            IDENTITY.paper,
        )
        closer = ClaimSpec(
            SECTION, f"beyond the paper: spike tokens sit closer to the {activation} identity regime", CLOSER.paper
        )
    if spikes.empty:
        return claims + [identity(model, "no spike token in the sample", False, "needs spike tokens")]
    text = "; ".join(
        f"block {b}: cos {spikes.loc[b, 'cos_median']:.3f}, norm ratio {spikes.loc[b, 'norm_ratio_median']:.3f}"
        f" (n={int(spikes.loc[b, 'n'])}; others {others.loc[b, 'cos_median']:.3f} / "
        f"{others.loc[b, 'norm_ratio_median']:.3f})"
        if b in spikes.index and b in others.index
        else f"block {b}: -"
        for b in blocks
    )
    near = all(
        b in spikes.index
        and spikes.loc[b, "cos_median"] >= min_cos
        and spikes.loc[b, "norm_ratio_median"] >= min_norm_ratio
        for b in blocks
    )
    close = all(
        b in spikes.index
        and b in others.index
        and spikes.loc[b, "norm_ratio_median"] > others.loc[b, "norm_ratio_median"]
        and spikes.loc[b, "cos_median"] > others.loc[b, "cos_median"]
        for b in blocks
    )
    return claims + [
        identity(
            model, text, near, f"median cos >= {min_cos} and median norm ratio >= {min_norm_ratio} in every step block"
        ),
        closer(
            model,
            text,
            close,
            "median cos and norm ratio of spike tokens above those of other tokens in every step block",
        ),
    ]
