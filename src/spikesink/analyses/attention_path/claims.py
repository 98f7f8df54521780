"""Does the sink come from the spike through token 0's attention input?"""

from __future__ import annotations

import pandas as pd

from spikesink.analyses.attention_path import ANALYSIS
from spikesink.analyses.attention_path.result import AttentionPath
from spikesink.analyses.unit import Job
from spikesink.reporting.scorecard import Claim, not_applicable

SECTION = ANALYSIS.section


def claims(result: AttentionPath, job: Job) -> list:
    c = job.settings.claims
    return attention_path_claims(job.model_name, result.table, result.not_applicable, c.min_drop, c.max_control_change)


CLAIM = "the sink comes from the spike through token 0's attention input (spike -> norm -> sparse key -> sink)"
PAPER = "Sec. 3: the normalised spike is a near-constant sparse key that later queries align with"


def attention_path_claims(
    model: str,
    table: pd.DataFrame | None,
    reason: str | None = None,
    min_drop: float = 0.5,
    max_control_change: float = 0.2,
) -> list:
    """Holds when the spike edit removes at least `min_drop` of the edited layers' sink ratio (or
    key-0 mass when no head sinks there) and the control edit changes it by less than
    `max_control_change`, relatively."""
    if reason or table is None or table.empty:
        return [not_applicable(SECTION, CLAIM, model, PAPER, reason or "no plateau attention block to edit")]
    rows = table.set_index("condition")
    metric = (
        "sink_ratio_edited_layers" if rows.loc["none", "sink_ratio_edited_layers"] > 0 else "key0_mass_edited_layers"
    )
    base, spike, control = (float(rows.loc[c, metric]) for c in ("none", "spike channels", "control channels"))
    drop = 1 - spike / base if base > 0 else float("nan")
    control_change = abs(control - base) / base if base > 0 else float("nan")
    name = "sink ratio" if metric.startswith("sink") else "key-0 mass"
    return [
        Claim(
            SECTION,
            CLAIM,
            model,
            PAPER,
            f"blocks {table['blocks'].iloc[0]}: {name} {base:.3g} -> {spike:.3g} without the spike in token 0's attention input "
            f"(control channels: {control:.3g}); perplexity {rows.loc['none', 'perplexity']:.4g} -> "
            f"{rows.loc['spike channels', 'perplexity']:.4g} (control {rows.loc['control channels', 'perplexity']:.4g})",
            bool(drop >= min_drop and control_change < max_control_change),
            f"{name} of the edited layers falls by >= {100 * min_drop:.0f}%, control changes it by < {100 * max_control_change:.0f}%",
        )
    ]
