"""The reproduction scorecard: every checked claim, the paper's value, ours, and whether it holds.

Each analysis writes its own claims file (a JSON list of Claim dicts) next to its results; the
scorecard rule only concatenates them. A new analysis adds rows by writing such a file and
listing it in workflow/rules/common.smk (claim_files).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import pandas as pd

from spikesink.io import read_json, write_json
from spikesink.reporting.tables import write_table

COLUMNS = ["section", "claim", "model", "paper", "ours", "holds", "tolerance"]


@dataclass
class Claim:
    section: str  # e.g. "3.1 life cycle"
    claim: str  # one sentence, as the paper states it
    model: str
    paper: str  # the paper's value or statement
    ours: str  # what we measured, with numbers
    holds: bool | None  # None: the claim does not apply to this model ("n/a", reason in `ours`)
    tolerance: str  # how 'holds' was decided

    def to_dict(self) -> dict:
        out = {key: plain_notation(value) if isinstance(value, str) else value for key, value in asdict(self).items()}
        out["holds"] = None if out["holds"] is None else bool(out["holds"])
        return out


def not_applicable(section: str, claim: str, model: str, paper: str, reason: str) -> Claim:
    """A scorecard row for a claim that does not apply to a model: 'n/a' with the reason, never a zero."""
    return Claim(section, claim, model, paper, f"n/a: {reason}", None, "-")


@dataclass(frozen=True)
class ClaimSpec:
    """One checked claim as the paper states it; call it with a model's measurement for its row."""

    section: str
    claim: str
    paper: str

    def __call__(self, model: str, ours: str, holds: bool, tolerance: str) -> Claim:
        return Claim(self.section, self.claim, model, self.paper, ours, bool(holds), tolerance)

    def na(self, model: str, reason: str) -> Claim:
        return not_applicable(self.section, self.claim, model, self.paper, reason)


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
    return frame.sort_values(["section", "claim", "model"], kind="stable").reset_index(drop=True)


HOLDS_TEXT = {True: "yes", False: "NO"}


def write_scorecard(frame: pd.DataFrame, stem: str | os.PathLike) -> None:
    checked = frame["holds"].notna()
    held = int((frame["holds"][checked] == True).sum())  # noqa: E712 (object column: True/False/None)
    n_na = int((~checked).sum())
    caption = (
        f"Reproduction scorecard: {held} of {int(checked.sum())} checked claims hold"
        + (f" ({n_na} rows n/a: the claim does not apply to that model)" if n_na else "")
        + ". 'paper' is the paper's value or statement, 'ours' what this run measured."
    )
    shown = frame["holds"].map(lambda v: "n/a" if v is None or v != v else HOLDS_TEXT[bool(v)])
    write_table(frame.assign(holds=shown), stem, caption=caption, formats=("csv", "md"))
