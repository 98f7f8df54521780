"""The reproduction scorecard: every paper claim per model, the paper's value, ours, the verdict.

A claim's verdict is "holds", "fails", "inconclusive" (its interval straddles the threshold:
spikesink.reporting.verdicts) or "n/a" (it does not apply to this model; `ours` says why). Rows
of kind "check" are identities the code must satisfy (the RMSNorm bound, the position-0 fixed map):
they are shown apart and never counted as reproduced findings. Each analysis's report job writes
its rows (results/<model>/claims/<analysis>.json); the scorecard rule gathers them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import pandas as pd

from spikesink.io import output_stem, read_json, with_extension, write_json, write_text
from spikesink.reporting.tables import to_markdown, write_table
from spikesink.reporting.verdicts import FAILS, HOLDS, INCONCLUSIVE, NA, VERDICTS, Estimate, verdict

FINDING, CHECK = "finding", "check"
COLUMNS = ["section", "claim", "model", "paper", "ours", "verdict", "tolerance", "kind", "value", "low", "high"]
SHOWN = ["section", "claim", "model", "paper", "ours", "verdict", "tolerance"]


@dataclass
class Claim:
    section: str  # e.g. "3.1 life cycle"
    claim: str  # one sentence, as the paper states it
    model: str
    paper: str  # the paper's value or statement
    ours: str  # what we measured, with numbers (and the interval, where there is one)
    verdict: str  # holds, fails, inconclusive, n/a (a bool or None given here becomes holds / fails / n/a)
    tolerance: str  # the threshold and how the verdict was decided
    kind: str = FINDING  # CHECK: an identity of the code, shown apart, not counted
    value: float | None = None  # the measured value the threshold is applied to
    low: float | None = None  # its 95 % interval (bootstrap over prompts or seeds)
    high: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.verdict, str):
            self.verdict = NA if self.verdict is None else (HOLDS if self.verdict else FAILS)
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    @property
    def holds(self) -> bool | None:
        """True when it holds, False when it fails, None when inconclusive or n/a."""
        return {HOLDS: True, FAILS: False}.get(self.verdict)

    def to_dict(self) -> dict:
        out = {key: plain_notation(value) if isinstance(value, str) else value for key, value in asdict(self).items()}
        for key in ("value", "low", "high"):
            out[key] = None if out[key] is None else float(out[key])
        return out

    @classmethod
    def from_dict(cls, row: dict) -> Claim:
        return cls(**{k: row.get(k) for k in COLUMNS if k in row})


def not_applicable(section: str, claim: str, model: str, paper: str, reason: str, kind: str = FINDING) -> Claim:
    """A scorecard row for a claim that does not apply to a model: 'n/a' with the reason, never a zero."""
    return Claim(section, claim, model, paper, f"n/a: {reason}", None, "-", kind)


@dataclass(frozen=True)
class ClaimSpec:
    """One claim as the paper states it; call it with a model's measurement for its row.

    kind CHECK marks an identity (it cannot fail on a correct implementation): shown, not counted.
    """

    section: str
    claim: str
    paper: str
    kind: str = FINDING

    def __call__(self, model: str, ours: str, holds, tolerance: str, estimate: Estimate | None = None) -> Claim:
        held = holds if isinstance(holds, str) else bool(holds)
        est = estimate or Estimate(float("nan"), float("nan"), float("nan"), 0)
        value = None if estimate is None else est.value
        low, high = (est.low, est.high) if estimate is not None and est.has_interval else (None, None)
        return Claim(self.section, self.claim, model, self.paper, ours, held, tolerance, self.kind, value, low, high)

    def judge(
        self, model: str, ours: str, estimate: Estimate | float, threshold: float, passes: str, tolerance: str
    ) -> Claim:
        """The row whose verdict compares `estimate` (and its interval) with `threshold`."""
        est = estimate if isinstance(estimate, Estimate) else Estimate.point(float(estimate))
        return self(model, ours, verdict(est, threshold, passes), tolerance, est)

    def na(self, model: str, reason: str) -> Claim:
        return not_applicable(self.section, self.claim, model, self.paper, reason, self.kind)


def plain_notation(text: str) -> str:
    """||x|| -> norm(x), |x| -> abs(x): the scorecard is also an RST table in the HTML report,
    where a pair of bars is markup (a substitution reference), not a norm."""
    text = re.sub(r"\|\|([^|]+)\|\|", r"norm(\1)", text)
    return re.sub(r"\|([^|\s][^|]*?)\|", r"abs(\1)", text)


def write_claims(path: str | os.PathLike, claims: Iterable[Claim]) -> None:
    write_json(path, [claim.to_dict() for claim in claims])


def read_claims(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    rows = []
    for path in paths:
        rows.extend(read_json(path))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["kind"] = frame["kind"].fillna(FINDING)
    return frame.sort_values(["kind", "section", "claim", "model"], kind="stable", key=_findings_first).reset_index(
        drop=True
    )


def _findings_first(column: pd.Series) -> pd.Series:
    return column.map({FINDING: 0, CHECK: 1}) if column.name == "kind" else column


def counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model: findings that hold / fail / are inconclusive / are n/a, and the checks apart."""
    findings = frame[frame["kind"] == FINDING]
    table = findings.groupby("model")["verdict"].value_counts().unstack(fill_value=0)
    table = table.reindex(columns=[HOLDS, FAILS, INCONCLUSIVE, NA], fill_value=0)
    checks = frame[frame["kind"] == CHECK].groupby("model")["verdict"]
    table["checks passed"] = checks.apply(lambda v: f"{int((v == HOLDS).sum())}/{int((v != NA).sum())}")
    table["checks passed"] = table["checks passed"].fillna("-")
    return table.reset_index()


def caption(frame: pd.DataFrame) -> str:
    findings = frame[frame["kind"] == FINDING]
    tally = findings["verdict"].value_counts()
    n_checks = int((frame["kind"] == CHECK).sum())
    return (
        f"Reproduction scorecard: of {len(findings)} claim rows, {tally.get(HOLDS, 0)} hold, {tally.get(FAILS, 0)} fail, "
        f"{tally.get(INCONCLUSIVE, 0)} are inconclusive (the 95 % interval straddles the threshold) and "
        f"{tally.get(NA, 0)} are n/a (the claim does not apply to that model); {n_checks} checks of the code's "
        "identities are listed apart and not counted. 'paper' is the paper's value or statement, 'ours' what this "
        "run measured."
    )


def write_scorecard(frame: pd.DataFrame, stem: str | os.PathLike) -> None:
    """The scorecard: CSV with every row and column; Markdown with the findings, then the checks
    apart; and the verdicts per model (<stem>_counts.{csv,md})."""
    stem = output_stem(stem)
    write_table(frame, stem, formats=("csv",))
    findings, checks = (frame[frame["kind"] == kind][SHOWN] for kind in (FINDING, CHECK))
    text = f"{caption(frame)}\n\n{to_markdown(findings)}"
    if len(checks):
        text += "\nChecks (identities the implementation must satisfy; not counted above):\n\n" + to_markdown(checks)
    write_text(with_extension(stem, ".md"), text)
    counted = counts(frame)
    write_table(counted, f"{stem}_counts", "Verdicts per model (findings only; checks apart).", ("csv", "md"))


VERDICT_COLORS = {HOLDS: "#1a9850", FAILS: "#d73027", INCONCLUSIVE: "#fee08b", NA: "#e0e0e0"}


def plot_scorecard(frame: pd.DataFrame, path: str | os.PathLike) -> pd.DataFrame:
    """The report's at-a-glance page: claims (rows) x models (columns), coloured by verdict
    (findings only; a claim with several rows for one model, e.g. one per edited block, shows
    its worst verdict). Returns the verdict grid it drew."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from spikesink.reporting.plotting import apply_style, save_figure

    findings = frame[frame["kind"] == FINDING]
    order = {NA: 0, HOLDS: 1, INCONCLUSIVE: 2, FAILS: 3}  # worst verdict wins a cell
    labels = findings["section"] + ": " + findings["claim"].str.slice(0, 70)
    grid = (
        findings.assign(label=labels, rank=findings["verdict"].map(order))
        .groupby(["label", "model"])["rank"]
        .max()
        .unstack("model")
    )
    apply_style()
    n_rows, n_cols = grid.shape
    fig, ax = plt.subplots(figsize=(4.5 + 1.1 * n_cols, 1.2 + 0.24 * n_rows))
    colors = [VERDICT_COLORS[v] for v in (NA, HOLDS, INCONCLUSIVE, FAILS)]
    ax.imshow(grid.fillna(0).to_numpy(), cmap=ListedColormap(colors), vmin=0, vmax=3, aspect="auto")
    ax.set_xticks(range(n_cols), grid.columns, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(n_rows), grid.index, fontsize=7)
    ax.set_xlabel("model")
    ax.grid(False)
    ax.legend(
        handles=[Patch(color=VERDICT_COLORS[v], label=v) for v in (HOLDS, FAILS, INCONCLUSIVE, NA)],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12 - 0.4 / max(n_rows, 1)),
        ncol=4,
        frameon=False,
        fontsize=8,
    )
    ax.set_title("Reproduction scorecard: claims x models")
    save_figure(fig, path)
    ranks = {rank: name for name, rank in order.items()}
    return grid.apply(lambda column: column.map(lambda r: ranks.get(r, NA) if r == r else NA))
