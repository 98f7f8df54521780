"""Section 4 claims as data: a few definitions per paper table (CLAIMS), evaluated over seeds.

Five kinds of definition, each evaluated by one short function:

- `Forms`: the baseline forms a first-token spike / a sink, what the table's spike-side / sink-side
  claims need (without it they read n/a with that reason);
- `Versus`: a variant (or every variant of a prefix) against the baseline: the ratio of their
  seed means, below or above a factor;
- `Trend`: a column rises with a setting over a sweep of variants (Spearman rho);
- `RankAgreement`: our column orders the table's rows as the paper's (Spearman rho);
- `PaperDecides` (Tables 7, 8): the paper's own row says whether a change removes the sink (below
  change_factor x its baseline) or keeps it (above); ours is held to the same side;
- `Removes` (the remedies table): each variant removes the sink / the first-token spike (below the
  threshold at which the baseline's is said to form) and keeps perplexity within a factor of the
  baseline's; both must hold, and the row is reported whichever way it falls.

Uncertainty over seeds: each variant's seeds are resampled with replacement, every variant on its
own (N_BOOTSTRAP times, fixed seed), the statistic recomputed from the resampled means, and the
verdict compares its 95 % percentile interval with the threshold (spikesink.reporting.verdicts):
inside on the passing side holds, on the other side fails, straddling it is inconclusive. When a
compared variant has one seed, the point decides and the row says so. With 2-3 seeds the interval
is about the range of the seeds' values, so "holds" there says every seed agrees, not more.

Rank claims (Trend, RankAgreement) need `rank_min_points` variants (else n/a), the interval of rho
above their threshold, and an order unlikely by chance: a one-sided permutation p of rho on the
seed means (exact over every order up to 8 points, else 20,000 random orders) of at most
`rank_max_p`, else inconclusive. Every definition yields rows: n/a with the reason when a variant
was not run, the baseline is missing, the side did not form, or a sweep has too few points.
Thresholds come from the config (`ablations.claims`, schema.yaml: each default with its reason).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..reporting.scorecard import Claim, ClaimSpec
from ..reporting.verdicts import HOLDS, INCONCLUSIVE, LEVEL, N_BOOTSTRAP, Estimate, combine, verdict
from .variants import PAPER_BASELINE, REGISTRY

SECTION = "4 ablations (CPU scale)"
N_PERMUTATIONS = 20000  # random orders for a permutation p beyond 8 points (8! = 40320 are enumerated)


@dataclass(frozen=True)
class Thresholds:
    """`ablations.claims`: every threshold of the Section 4 claims (schema.yaml: defaults and reasons)."""

    spike_min_to_median: float
    sink_min_ratio: float
    change_factor: float
    trend_min_rho: float
    rank_min_rho: float
    rank_min_points: int
    rank_max_p: float


def claim_thresholds(values: Mapping | None = None) -> Thresholds:
    """`ablations.claims` (the configured keys in `values`) with the schema's defaults filled, checked."""
    import yaml
    from jsonschema import ValidationError

    from ..config import SCHEMA, ConfigError, _validator_with_defaults

    section = copy.deepcopy(dict(values or {}))
    spec = yaml.safe_load(SCHEMA.read_text())["properties"]["ablations"]["properties"]["claims"]
    try:
        _validator_with_defaults()(spec).validate(section)
    except ValidationError as error:
        where = ".".join(str(p) for p in error.absolute_path)
        raise ConfigError(f"ablations.claims{'.' + where if where else ''}: {error.message}") from None
    return Thresholds(**section)


# ----------------------------------------------------------------------------------------------
# the definitions


@dataclass(frozen=True)
class Forms:
    """The baseline forms a first-token spike (side 'spike') or a sink (side 'sink')."""

    side: str


@dataclass(frozen=True)
class Versus:
    """`match` against the baseline: variant / baseline of `column`'s seed means `direction` ('below' /
    'above') `factor` (a number, or the name of a Thresholds field). `match` is a variant, or, ending in
    '-', every variant of the table starting with it (the registered ones too, n/a when not run).
    `paper` may name the variant's paper columns, e.g. '{spike_paper}'."""

    match: str
    column: str
    factor: float | str
    direction: str
    text: str
    paper: str


@dataclass(frozen=True)
class Trend:
    """`y` rises with `x` over a sweep: the baseline and the variants starting with `prefix` (one per x,
    the baseline first; `fixed_width`: only those of the baseline's n_heads x d_head), x read from the
    column `x`; or the variants named in `x_of` with their x (then `x` is only the setting's label)."""

    y: str
    x: str
    text: str
    paper: str
    prefix: str = ""
    x_of: tuple[tuple[str, float], ...] = ()
    fixed_width: bool = False


@dataclass(frozen=True)
class RankAgreement:
    """Our `column` orders the table's rows with a paper value (the baseline's included) as the paper's."""

    column: str


@dataclass(frozen=True)
class PaperDecides:
    """Each variant of the table with a paper sink ratio, held to its paper row's side (Versus with
    change_factor). `cases`: (prefix, text when the paper removes the sink, text when it keeps it);
    the first prefix a variant starts with gives its claim."""

    cases: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True)
class Removes:
    """Each variant of the table removes `side` ('sink': sink ratio below sink_min_ratio; 'spike':
    first-token max abs(h) below spike_min_to_median x the median, the thresholds at which the
    baseline's is said to form) while its perplexity stays below `ppl_factor` x the baseline's."""

    side: str
    text: str
    ppl_factor: float = 1.05


RANKS = (RankAgreement("sink_ratio"), RankAgreement("spike"))
SPIKE, SINK = Forms("spike"), Forms("sink")
LR = (("lr-025x", 0.25), ("lr-05x", 0.5), ("baseline", 1.0), ("lr-2x", 2.0))
DHEAD_PAPER = "rises (Table 6: sink 4.1 -> 46.0 %, spike 291 -> 3818 for d_head 8 -> 128)"
LOW_LR = "too small a learning rate suppresses sinks"
SMALLER = "the spike is smaller without the gated (SwiGLU) amplifier"

CLAIMS: dict[str, tuple] = {
    "3": (
        *RANKS,
        SPIKE,
        SINK,
        Versus(
            "wd-0",
            "sink_ratio",
            1.0,
            "below",
            "weight decay raises sinks (none: fewer)",
            "sink 33.8 vs 46.0 (wd 0 vs 0.1)",
        ),
        Versus(
            "wd-5x",
            "sink_ratio",
            1.0,
            "above",
            "weight decay raises sinks (5x: more)",
            "Gu et al. 2025: 41 % vs 18 % (wd 0.5 vs 0.1)",
        ),
        Versus("wd-0", "spike", 1.0, "above", "no weight decay gives a bigger spike", "spike 12275 vs 3818"),
        Versus("lr-025x", "sink_ratio", 1.0, "below", LOW_LR, "sink 18.6 vs 46.0"),
        Versus("lr-05x", "sink_ratio", 1.0, "below", LOW_LR, "sink 31.8 vs 46.0"),
        Trend(
            "sink_ratio",
            "lr",
            "sink ratio rises with the learning rate up to 2x the baseline's",
            "18.6 / 31.8 / 46.0 / 51.5 % for lr x0.25 / x0.5 / x1 / x2",
            x_of=LR,
        ),
    ),
    "4": (
        *RANKS,
        SPIKE,
        SINK,
        Versus("ffn-gelu", "spike", 1.0, "below", SMALLER, "spike 3369 vs 3818"),
        Versus("ffn-linear", "spike", "change_factor", "below", SMALLER, "spike 688 vs 3818"),
        Versus("ffn-attn-only", "spike", "change_factor", "below", SMALLER, "spike 637 vs 3818"),
    ),
    "5": (
        *RANKS,
        SPIKE,
        SINK,
        Versus(
            "norm-",
            "spike",
            "change_factor",
            "below",
            "changing normalization removes the spike",
            "spike {spike_paper} vs 3818",
        ),
        Versus(
            "norm-",
            "sink_ratio",
            "change_factor",
            "above",
            "changing normalization keeps the sinks",
            "sink {sink_ratio_paper} vs 46.0",
        ),
    ),
    "6": (
        *RANKS,
        SPIKE,
        SINK,
        Trend("sink_ratio", "d_head", "sink ratio rises with d_head at fixed N_head", DHEAD_PAPER, prefix="dhead-"),
        Trend("spike", "d_head", "spike rises with d_head at fixed N_head", DHEAD_PAPER, prefix="dhead-"),
        # below the sink threshold the ratio is flat at 0; the mean attention on key 0 still moves
        Trend(
            "key0_mass_mean",
            "d_head",
            "attention on key 0 rises with d_head at fixed N_head (sink proxy)",
            "sink ratio rises with d_head (Table 6)",
            prefix="dhead-",
        ),
        Trend(
            "sink_ratio",
            "n_heads",
            "sink ratio rises with N_head at fixed d_head",
            "rises (Table 6: 37.1 / 41.7 / 46.0 % for N_head 8 / 16 / 32)",
            prefix="nhead-",
        ),
        Trend(
            "sink_ratio",
            "n_heads",
            "at fixed width, sink ratio rises with N_head (smaller heads)",
            "rises (Table 6, width 4096: 11.0 / 30.8 / 41.1 / 44.1 / 52.1 % for N_head 8 / 16 / 32 / 64 / 256)",
            prefix="heads-",
            fixed_width=True,
        ),
    ),
    "7": (
        *RANKS,
        SINK,
        PaperDecides(
            (
                (
                    "gate-cond-",
                    "conditional gating removes the sink",
                    "a conditional single gate keeps most of the sink",
                ),
                ("", "the gate removes the sink", "the gate keeps the sink"),
            )
        ),
    ),
    "8": (*RANKS, SINK, PaperDecides((("", "loss only on late positions collapses the sink", "the sink stays"),))),
    # not a paper table: the literature's numbers come from different models, so no rank claims
    "remedies": (
        SPIKE,
        SINK,
        Removes("sink", "removes the sink (keeps perplexity within 5 %)"),
        Removes("spike", "removes the first-token spike (keeps perplexity within 5 %)"),
    ),
}

FORMS = {  # side: (column, threshold field, claim, paper)
    "spike": (
        "first_token_to_median",
        "spike_min_to_median",
        "a first-token spike forms at the baseline (what the spike-side claims of this table need)",
        "spike 3818 at the baseline (massive: > 100 and ~1000x the median)",
    ),
    "sink": (
        "sink_ratio",
        "sink_min_ratio",
        "a sink forms at the baseline (what the sink-side claims of this table need)",
        "sink ratio 46.0 % at the baseline",
    ),
}
SIDE = {"spike": "spike", "sink_ratio": "sink"}  # the columns whose claims need the baseline's spike / sink
LABEL = {"spike": "spike", "sink_ratio": "sink ratio"}


# ----------------------------------------------------------------------------------------------
# statistics over seeds


def seed_estimate(groups: list[np.ndarray], statistic) -> Estimate:
    """`statistic` (an (m, len(groups)) array of group means -> m values) on the seed means, with its 95 %
    bootstrap interval resampling each group's seeds on their own; without one (a group of one seed,
    n = 1) the point decides."""
    point = float(statistic(np.array([[g.mean() for g in groups]]))[0])
    n = min(len(g) for g in groups)
    if n < 2:
        return Estimate(point, point, point, 1)
    rng = np.random.default_rng(0)
    draws = np.column_stack([g[rng.integers(0, len(g), (N_BOOTSTRAP, len(g)))].mean(axis=1) for g in groups])
    values = statistic(draws)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Estimate(point, float("nan"), float("nan"), n)
    low, high = np.quantile(values, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return Estimate(point, float(low), float(high), n)


def spearman_rows(x, ys) -> np.ndarray:
    """Spearman rho of x with each row of ys (ties get their average rank); 0 for a flat row (no order)."""
    from scipy.stats import rankdata

    rx = rankdata(np.asarray(x, float))
    ry = rankdata(np.atleast_2d(np.asarray(ys, float)), axis=1)
    rx, ry = rx - rx.mean(), ry - ry.mean(axis=1, keepdims=True)
    denom = np.sqrt((rx**2).sum() * (ry**2).sum(axis=1))
    safe = np.where(denom > 0, denom, 1.0)
    return np.where(denom > 0, (ry @ rx) / safe, 0.0)


def permutation_p(x, y) -> float:
    """One-sided p of Spearman(x, y) under random orders of y: exact over every order up to 8 points,
    else N_PERMUTATIONS random orders (fixed seed)."""
    y = np.asarray(y, float)
    observed = spearman_rows(x, y)[0] - 1e-9
    if len(y) <= 8:
        orders = np.array(list(itertools.permutations(range(len(y)))))
        return float(np.mean(spearman_rows(x, y[orders]) >= observed))
    orders = np.random.default_rng(0).permuted(np.tile(np.arange(len(y)), (N_PERMUTATIONS, 1)), axis=1)
    return float((1 + np.sum(spearman_rows(x, y[orders]) >= observed)) / (1 + N_PERMUTATIONS))


def _note(est: Estimate) -> str:
    return "95 % bootstrap over seeds" if est.n > 1 else "a variant has 1 seed: the point decides"


def _seeds_text(values: np.ndarray) -> str:
    return " / ".join(f"{v:.3g}" for v in values)


# ----------------------------------------------------------------------------------------------
# what the definitions are evaluated on


class Runs:
    """One table's runs (and the baseline's): each variant's settings, paper row and per-seed values,
    and whether the baseline formed a spike / a sink."""

    def __init__(self, runs: pd.DataFrame, table: str, model: str, thresholds: Thresholds):
        tables = runs["table"].fillna("").astype(str) if "table" in runs else pd.Series("", index=runs.index)
        runs = runs[(tables == table) | (runs["variant"] == "baseline")]
        runs = runs.sort_values("seed", kind="stable") if "seed" in runs else runs
        self.table, self.model, self.thresholds = table, model, thresholds
        self.groups = {name: group for name, group in runs.groupby("variant", sort=True)}
        self.has_base = "baseline" in self.groups
        self.sides = {side: self._side(side) for side in FORMS}

    def seeds(self, name: str, column: str) -> np.ndarray:
        group = self.groups.get(name)
        if group is None or column not in group:
            return np.array([])
        return pd.to_numeric(group[column], errors="coerce").dropna().to_numpy(float)

    def setting(self, name: str, column: str):
        return self.groups[name][column].iloc[0]

    def paper(self, name: str) -> dict:
        """The paper's row of a variant: from its runs, else from the registry (all None if neither)."""
        if name in self.groups:
            return {c: _number(self.setting(name, c)) for c in ("ppl_paper", "sink_ratio_paper", "spike_paper")}
        row = (REGISTRY[name].paper if name in REGISTRY else None) or {}
        return {f"{c}_paper": row.get(c) for c in ("ppl", "sink_ratio", "spike")}

    def table_variants(self, prefix: str) -> list[str]:
        """The variants starting with `prefix`: those run, and the table's registered ones (n/a when not run)."""
        registered = {v.name for v in REGISTRY.values() if v.table == self.table}
        return sorted(n for n in set(self.groups) | registered if n.startswith(prefix) and n != "baseline")

    def _side(self, side: str) -> tuple[bool, str]:
        """Whether the side formed at the baseline (or, without one, in some variant), and why not."""
        column, field, _, _ = FORMS[side]
        threshold = getattr(self.thresholds, field)
        names = ["baseline"] if self.has_base else list(self.groups)
        means = [v.mean() for v in (self.seeds(n, column) for n in names) if len(v)]
        reference = max(means) if means else float("nan")
        where = "at the baseline" if self.has_base else "in any variant (no baseline run)"
        if np.isfinite(reference) and reference >= threshold:
            return True, ""
        if side == "spike":
            measured = f"{reference:.3g}x its block's median < {threshold:g}x" if means else "not measured"
            return False, f"no first-token spike {where} (position 0's largest abs(h) {measured})"
        return False, f"no sink {where} (sink ratio {reference:.3g} % < {threshold:g} %)"

    def untested(self, column: str) -> str:
        """Why claims on `column` are not tested ('' when they are)."""
        side = SIDE.get(column)
        return "" if side is None or self.sides[side][0] else self.sides[side][1]


def _number(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


# ----------------------------------------------------------------------------------------------
# one short function per kind of definition


def _spec(runs: Runs, text: str, paper: str) -> ClaimSpec:
    return ClaimSpec(SECTION, f"Table {runs.table}: {text}", paper)


def forms(d: Forms, runs: Runs) -> list[Claim]:
    column, field, text, paper = FORMS[d.side]
    spec, threshold = _spec(runs, text, paper), getattr(runs.thresholds, field)
    values = runs.seeds("baseline", column)
    if not runs.has_base:
        return [spec.na(runs.model, "no baseline run in this preset")]
    if not len(values):
        return [spec.na(runs.model, f"{column} not measured at the baseline")]
    est = seed_estimate([values], lambda m: m[:, 0])
    formed = runs.sides[d.side][0]
    if d.side == "spike":
        ours = f"position 0's largest abs(h) is {est.value:.3g}x its block's median"
        ours += "" if formed else ": no spike, the spike-side claims are not tested"
        tolerance = f"first-token max abs(h) >= {threshold:g}x the median"
    else:
        ours = f"sink ratio {est.value:.3g} % at the baseline"
        ours += "" if formed else ": no sink, the sink-side claims are not tested"
        tolerance = f"sink ratio >= {threshold:g} %"
    ours += f" (seeds {_seeds_text(values)}; {_interval(est)})"
    return [spec.judge(runs.model, ours, est, threshold, ">=", f"{tolerance} (whole 95 % interval over seeds)")]


def _interval(est: Estimate) -> str:
    if est.n < 2:
        return "1 seed: the point decides"
    return f"95 % bootstrap interval {est.low:.3g} to {est.high:.3g} over {est.n} seeds"


def versus(d: Versus, runs: Runs) -> list[Claim]:
    names = runs.table_variants(d.match) if d.match.endswith("-") else [d.match]
    return [_versus_one(d, runs, name) for name in names or [d.match + "*"]]


def _versus_one(d: Versus, runs: Runs, name: str) -> Claim:
    spec = _spec(runs, f"{name}: {d.text}", d.paper.format(**runs.paper(name)))
    factor = getattr(runs.thresholds, d.factor) if isinstance(d.factor, str) else float(d.factor)
    label = LABEL.get(d.column, d.column)
    ours, base = runs.seeds(name, d.column), runs.seeds("baseline", d.column)
    if not len(ours):
        return spec.na(runs.model, f"{name} not run in this preset")
    if not runs.has_base:
        return spec.na(runs.model, "no baseline run in this preset: nothing to compare with")
    if why := runs.untested(d.column):
        return spec.na(runs.model, why)
    if not base.mean() > 0:
        return spec.na(runs.model, f"the baseline's {label} is 0: no ratio to compare")
    est = seed_estimate([ours, base], lambda m: m[:, 0] / m[:, 1])
    below = d.direction == "below"
    text = (
        f"{label} {ours.mean():.3g} ({_seeds_text(ours)}) vs baseline {base.mean():.3g} ({_seeds_text(base)}): "
        f"{est.text('{:.2f}')}x the baseline's ({_note(est)})"
    )
    tolerance = f"variant / baseline {'<' if below else '>'} {factor:g} (whole 95 % interval over seeds)"
    return spec.judge(runs.model, text, est, factor, "<" if below else ">", tolerance)


def _rank(runs: Runs, spec: ClaimSpec, head: str, names, xs, column, threshold, what: str, means_text) -> Claim:
    """A Spearman claim over `names` (x values `xs`): enough points, interval above `threshold`, p small;
    `ours` starts with `head` (what rho is of)."""
    t = runs.thresholds
    groups = [runs.seeds(n, column) for n in names]
    if len(names) < t.rank_min_points:
        shown = f" ({means_text(groups)})" if names else ""
        counted = f"{len(names)} {what if len(names) != 1 else what[:-1]}{shown}"
        return spec.na(runs.model, f"{counted}; a rank claim needs at least {t.rank_min_points}")
    est = seed_estimate(groups, lambda m: spearman_rows(xs, m))
    p = permutation_p(xs, [g.mean() for g in groups])
    result = combine([verdict(est, threshold, ">"), HOLDS if p <= t.rank_max_p else INCONCLUSIVE])
    exact = "exact" if len(names) <= 8 else f"{N_PERMUTATIONS} random orders"
    ours = f"{head}{est.text('{:+.2f}')}, one-sided permutation p = {p:.3g} ({exact}) over {len(names)} {what}"
    tolerance = (
        f"Spearman > {threshold:g} (whole 95 % interval over seeds) and permutation p <= {t.rank_max_p:g} "
        f"on the seed means; at least {t.rank_min_points} {what}"
    )
    return spec(runs.model, f"{ours}; {means_text(groups)} ({_note(est)})", result, tolerance, est)


def trend(d: Trend, runs: Runs) -> list[Claim]:
    spec = _spec(runs, d.text, d.paper)
    if why := runs.untested(d.y):
        return [spec.na(runs.model, why)]
    if d.x_of:
        sweep = [(name, float(x)) for name, x in d.x_of if len(runs.seeds(name, d.y))]
    elif d.fixed_width and not runs.has_base:
        return [spec.na(runs.model, "no baseline run in this preset: the fixed width is the baseline's")]
    else:
        width = runs.setting("baseline", "n_heads") * runs.setting("baseline", "d_head") if runs.has_base else None
        sweep, seen = [], set()
        for name in ["baseline"] * runs.has_base + [n for n in runs.table_variants(d.prefix) if n in runs.groups]:
            x = float(runs.setting(name, d.x))
            fits = not d.fixed_width or runs.setting(name, "n_heads") * runs.setting(name, "d_head") == width
            if fits and x not in seen and len(runs.seeds(name, d.y)):
                sweep.append((name, x))
                seen.add(x)
    sweep.sort(key=lambda item: item[1])
    names, xs = [n for n, _ in sweep], np.array([x for _, x in sweep])
    prefix = "x" if d.x_of else ""

    def means(groups):
        return "means " + ", ".join(f"{prefix}{x:g}: {g.mean():.3g}" for x, g in zip(xs, groups))

    head = f"Spearman({d.x}, {d.y}) = "
    return [_rank(runs, spec, head, names, xs, d.y, runs.thresholds.trend_min_rho, "variants", means)]


def rank_agreement(d: RankAgreement, runs: Runs) -> list[Claim]:
    label = LABEL[d.column]
    spec = _spec(runs, f"our {label} orders the variants as the paper's", "Spearman rho = 1 with itself")
    if why := runs.untested(d.column):
        return [spec.na(runs.model, why)]
    names = [n for n in runs.groups if runs.paper(n)[f"{d.column}_paper"] is not None and len(runs.seeds(n, d.column))]
    xs = np.array([runs.paper(n)[f"{d.column}_paper"] for n in names])

    def means(groups):
        return "ours " + ", ".join(f"{n}: {g.mean():.3g}" for n, g in zip(names, groups))

    return [_rank(runs, spec, "rho = ", names, xs, d.column, runs.thresholds.rank_min_rho, "rows", means)]


def paper_decides(d: PaperDecides, runs: Runs) -> list[Claim]:
    base_paper = runs.paper("baseline")["sink_ratio_paper"] if runs.has_base else None
    paper_base = PAPER_BASELINE["sink_ratio"] if base_paper is None else base_paper
    claims = []
    for name in runs.table_variants(""):
        paper = runs.paper(name)["sink_ratio_paper"]
        if paper is None:
            continue  # no paper row: nothing decides the side
        removes = paper < runs.thresholds.change_factor * paper_base
        _, removes_text, keeps_text = next(case for case in d.cases if name.startswith(case[0]))
        rule = Versus(
            name,
            "sink_ratio",
            "change_factor",
            "below" if removes else "above",
            removes_text if removes else keeps_text,
            f"sink {paper} vs {paper_base}",
        )
        claims.append(_versus_one(rule, runs, name))
    return claims


def removes(d: Removes, runs: Runs) -> list[Claim]:
    column, field, _, _ = FORMS[d.side]
    threshold = getattr(runs.thresholds, field)
    label = {"sink": "sink ratio", "spike": "first-token max abs(h) / median"}[d.side]
    key, published = {"sink": ("sink_ratio_paper", "sink ratio {:g} %"), "spike": ("spike_paper", "max abs(h) {:g}")}[
        d.side
    ]
    claims = []
    for name in runs.table_variants(""):
        value = runs.paper(name)[key]
        spec = _spec(runs, f"{name}: {d.text}", "no published number" if value is None else published.format(value))
        ours, ppl, base_ppl = runs.seeds(name, column), runs.seeds(name, "ppl"), runs.seeds("baseline", "ppl")
        if not len(ours):
            claims.append(spec.na(runs.model, f"{name} not run in this preset"))
        elif not runs.has_base:
            claims.append(spec.na(runs.model, "no baseline run in this preset: nothing to compare with"))
        elif not runs.sides[d.side][0]:
            claims.append(spec.na(runs.model, runs.sides[d.side][1]))
        else:
            side = seed_estimate([ours], lambda m: m[:, 0])
            cost = seed_estimate([ppl, base_ppl], lambda m: m[:, 0] / m[:, 1])
            result = combine([verdict(side, threshold, "<"), verdict(cost, d.ppl_factor, "<")])
            text = (
                f"{label} {side.text('{:.3g}')} ({_seeds_text(ours)}; baseline {runs.seeds('baseline', column).mean():.3g}), "
                f"ppl {ppl.mean():.3g} ({cost.text('{:.3f}')} x the baseline's; {_note(side)})"
            )
            tolerance = (
                f"{label} < {threshold:g} and ppl / baseline's < {d.ppl_factor:g} (whole 95 % intervals over seeds)"
            )
            claims.append(spec(runs.model, text, result, tolerance, side))
    return claims


EVALUATE = {
    Forms: forms,
    Versus: versus,
    Trend: trend,
    RankAgreement: rank_agreement,
    PaperDecides: paper_decides,
    Removes: removes,
}


def evaluate(runs: pd.DataFrame, table: str, model: str, thresholds: Thresholds) -> list[Claim]:
    """The claims of paper table `table` (CLAIMS[table], in order) on one row per run (variant, seed)."""
    rows = Runs(runs, table, model, thresholds)
    return [claim for definition in CLAIMS[table] for claim in EVALUATE[type(definition)](definition, rows)]
