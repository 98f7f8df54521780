"""The scorecard: verdicts counted per model, checks apart, the at-a-glance figure."""

import pandas as pd

from spikesink.reporting.scorecard import (
    CHECK,
    Claim,
    ClaimSpec,
    plot_scorecard,
    read_claims,
    write_claims,
    write_scorecard,
)
from spikesink.reporting.verdicts import Estimate

FINDING = ClaimSpec("3.1 life cycle", "massive activations appear", "rise, plateau, fall")
BOUND = ClaimSpec("3.4 normalization", "the RMSNorm bound", "Eq. 23", kind=CHECK)


def claims_file(tmp_path):
    rows = [
        FINDING("a", "plateau 4-9", True, "contiguous"),
        FINDING.judge("b", "drop 0.44 [0.30, 0.60]", Estimate(0.44, 0.30, 0.60, 16), 0.5, ">=", "drop >= 50 %"),
        FINDING.na("c", "no massive block"),
        BOUND("a", "7.2 <= 8", True, "exact inequality"),
        Claim("3.2 sinks", "sinks form", "a", "46 %", "0 %", False, "> 0"),
    ]
    path = tmp_path / "claims.json"
    write_claims(path, rows)
    return path


def test_verdicts_counted_per_model_with_checks_apart(tmp_path):
    frame = read_claims([claims_file(tmp_path)])
    assert list(frame["kind"]) == ["finding"] * 4 + ["check"]  # findings first
    write_scorecard(frame, tmp_path / "scorecard")
    counts = pd.read_csv(tmp_path / "scorecard_counts.csv", keep_default_na=False).set_index("model")
    assert counts.loc["a", ["holds", "fails", "inconclusive", "n/a"]].tolist() == [1, 1, 0, 0]
    assert counts.loc["b", "inconclusive"] == 1 and counts.loc["c", "n/a"] == 1
    assert counts.loc["a", "checks passed"] == "1/1"
    md = (tmp_path / "scorecard.md").read_text()
    assert "of 4 claim rows, 1 hold, 1 fail, 1 are inconclusive" in md
    findings, checks = md.split("Checks (identities")
    assert "the RMSNorm bound" in checks and "the RMSNorm bound" not in findings
    csv = pd.read_csv(tmp_path / "scorecard.csv")
    row = csv[csv["model"] == "b"].iloc[0]
    assert (row["verdict"], row["low"], row["high"]) == ("inconclusive", 0.30, 0.60)


def test_the_overview_draws_every_verdict(tmp_path):
    frame = read_claims([claims_file(tmp_path)])
    grid = plot_scorecard(frame, tmp_path / "overview")
    assert (tmp_path / "overview.png").is_file() and (tmp_path / "overview.pdf").is_file()
    appear = grid.loc["3.1 life cycle: massive activations appear"]
    assert appear.to_dict() == {"a": "holds", "b": "inconclusive", "c": "n/a"}
    assert grid.loc["3.2 sinks: sinks form", "a"] == "fails"
    assert not any("RMSNorm bound" in label for label in grid.index)  # checks are not drawn


def test_every_threshold_has_a_reason_and_config_readme_lists_them():
    from pathlib import Path

    from spikesink.config import claim_thresholds, thresholds_markdown

    missing = [row["key"] for row in claim_thresholds() if not row["reason"].strip()]
    assert not missing, f"thresholds without a reason (their schema description): {missing}"
    readme = (Path(__file__).resolve().parents[1] / "config" / "README.md").read_text()
    listed = readme.split("<!-- thresholds: begin -->\n")[1].split("<!-- thresholds: end -->")[0]
    assert listed == thresholds_markdown(), "config/README.md's threshold table is stale: paste `spikesink thresholds`"
