"""Massive activations as implicit parameters: own mean keeps perplexity, zero destroys it.

Every ratio is judged with its 95 % bootstrap interval over the held-out prompts, the unedited and
the edited model resampled together (the same prompts in numerator and denominator); the spread
with its interval over the calibration prompts. A claim over several sites holds when it holds at
every site (spikesink.reporting.verdicts.combine); its row shows the site furthest from passing.
A result without per-prompt measurements is judged on its point values, and says so. Thresholds
come from the `claims:` section (schema.yaml).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spikesink.analyses.implicit_params import ANALYSIS
from spikesink.analyses.implicit_params.result import ImplicitParams
from spikesink.analyses.unit import Job
from spikesink.config import analysis_settings
from spikesink.reporting.scorecard import ClaimSpec
from spikesink.reporting.verdicts import FAILS, HOLDS, INCONCLUSIVE, Estimate, bootstrap, combine, verdict

SECTION = ANALYSIS.section


def claims(result: ImplicitParams, job: Job) -> list:
    c = job.settings.claims
    return implicit_claims(
        job.model_name,
        result.table,
        result.not_applicable,
        c.mean_tolerance,
        c.zero_factor,
        c.max_spread,
        result.per_prompt,
        (result.sites or {}).get("sites"),
    )


OWN_MEAN = ClaimSpec(
    SECTION,
    "setting the massive activations to their own mean keeps perplexity",
    "unchanged perplexity (Sun et al. 2024: massive activations act as fixed biases)",
)
ZERO = ClaimSpec(
    SECTION, "setting the massive activations to zero destroys the model", "perplexity explodes (Sun et al. 2024)"
)
CONSTANT = ClaimSpec(
    SECTION,
    "massive activations are nearly constant across prompts",
    "near-constant hidden states (Sec. 3, Sun et al. 2024)",
)
_ORDER = {HOLDS: 0, INCONCLUSIVE: 1, FAILS: 2}


def ratio_estimate(per_prompt: pd.DataFrame, block: int, mode: str) -> Estimate:
    """Held-out perplexity with the edit over the unedited model's, with its bootstrap interval
    over prompts (both measured on the same resampled prompts)."""
    base = per_prompt[per_prompt["mode"] == "none"].set_index("prompt").sort_index()
    edit = per_prompt[(per_prompt["mode"] == mode) & (per_prompt["block"] == block)].set_index("prompt")
    edit = edit.reindex(base.index)
    nll0, nll1 = base["nll_sum"].to_numpy(float), edit["nll_sum"].to_numpy(float)
    count = base["n_tokens"].to_numpy(float)
    return bootstrap(lambda idx: np.exp((nll1[idx].sum() - nll0[idx].sum()) / count[idx].sum()), len(base))


def spread_estimate(site: dict) -> Estimate:
    """The site's relative spread (mean over its spike tokens of ||v - own mean|| / ||own mean||)
    with its bootstrap interval over the calibration prompts."""
    distance = np.asarray(site.get("distance_by_prompt") or [], dtype=float)
    tokens = np.asarray(site.get("spike_tokens_by_prompt") or [], dtype=float)
    if not distance.size:
        return Estimate.point(float(site["spread"]))

    def spread(idx):
        n = tokens[idx].sum()
        return distance[idx].sum() / n if n > 0 else np.nan

    return bootstrap(spread, len(distance))


def _worst(judged: list[tuple[str, Estimate, int]], badness) -> Estimate:
    """The estimate of the site furthest from passing: the worst verdict, then the largest
    `badness(value)`."""
    return max(judged, key=lambda item: (_ORDER[item[0]], badness(item[1].value)))[1]


def implicit_claims(
    model: str,
    table: pd.DataFrame,
    reason: str | None = None,
    mean_tolerance: float | None = None,
    zero_factor: float | None = None,
    max_spread: float | None = None,
    per_prompt: pd.DataFrame | None = None,
    sites: list | None = None,
) -> list:
    """Own mean keeps perplexity within `mean_tolerance` (the ratio's interval inside 1 +- it) at
    every site; zero multiplies it by at least `zero_factor` at every site; the relative spread of
    the massive activations is at most `max_spread` at every site. Each always yields a row.
    Thresholds left None are the schema's (a workflow job passes its settings')."""
    defaults = analysis_settings("implicit_params").claims
    mean_tolerance = defaults.mean_tolerance if mean_tolerance is None else mean_tolerance
    zero_factor = defaults.zero_factor if zero_factor is None else zero_factor
    max_spread = defaults.max_spread if max_spread is None else max_spread
    if reason:
        return [spec.na(model, reason) for spec in (OWN_MEAN, ZERO, CONSTANT)]
    base = float(table.loc[table["mode"] == "none", "perplexity"].iloc[0])
    edits = table[table["mode"] != "none"]
    per_prompt = per_prompt if per_prompt is not None and not per_prompt.empty else None
    claims = []
    for spec, mode, threshold in ((OWN_MEAN, "own_mean", mean_tolerance), (ZERO, "zero", zero_factor)):
        rows = edits[edits["mode"] == mode]
        if rows.empty:
            claims.append(spec.na(model, f"the edit {mode} was not run (analyses.implicit_params.modes)"))
        else:
            claims.append(_edit_claim(spec, model, mode, rows, base, threshold, per_prompt))
    return claims + [_constant_claim(model, edits.drop_duplicates("block"), sites, max_spread)]


def _edit_claim(spec, model, mode, rows, base, threshold, per_prompt):
    """One edit's row: own_mean within `threshold` of 1, or zero at least `threshold` x, at every site."""
    judged, parts = [], []
    for r in rows.itertuples():
        # without per-prompt measurements (a result from before they were kept) the point decides
        est = ratio_estimate(per_prompt, int(r.block), mode) if per_prompt is not None else Estimate.point(r.ratio)
        if mode == "own_mean":
            v = combine([verdict(est, 1 + threshold, "<="), verdict(est, 1 - threshold, ">=")])
        else:
            v = verdict(est, threshold, ">=")
        judged.append((v, est, int(r.block)))
        fmt = "{:.4f}" if mode == "own_mean" else "{:.4g}"
        parts.append(f"block {int(r.block)} ({r.roles}): {r.perplexity:.4g} ({est.text(fmt)}x)")
    tolerance = (
        f"ratio within {100 * threshold:g}% of 1 at every site"
        if mode == "own_mean"
        else f"ratio >= {threshold:g}x at every site"
    ) + (
        f", 95% interval over {judged[0][1].n} held-out prompts on that side"
        if per_prompt is not None
        else " (no per-prompt measurements: point values, no interval)"
    )
    return spec(
        model,
        f"held-out perplexity {base:.4g}; {mode.replace('_', ' ')}: {'; '.join(parts)}",
        combine([v for v, _, _ in judged]),
        tolerance,
        _worst(judged, (lambda v: abs(v - 1)) if mode == "own_mean" else (lambda v: -v)),
    )


def _constant_claim(model, spreads, sites, max_spread):
    """The massive activations' relative spread at most `max_spread` at every edited site."""
    if spreads.empty:
        return CONSTANT.na(model, "no edited site")
    by_block = {int(site["block"]): site for site in sites or []}
    judged, parts = [], []
    for r in spreads.itertuples():
        est = spread_estimate(by_block.get(int(r.block), {"spread": r.spread}))
        judged.append((verdict(est, max_spread, "<="), est, int(r.block)))
        parts.append(f"block {int(r.block)}: {est.text('{:.3g}')}")
    n = max(est.n for _, est, _ in judged)
    return CONSTANT(
        model,
        f"relative spread ||v - mean|| / ||mean|| over spike tokens: {'; '.join(parts)}"
        + (f" (95% interval over {n} calibration prompts)" if n > 1 else ""),
        combine([v for v, _, _ in judged]),
        f"spread <= {max_spread:g} at every site" + (", 95% interval on that side" if n > 1 else ""),
        _worst(judged, lambda v: v),
    )
