"""`snakemake --report` after a run: one self-contained HTML file holding every figure (the very
bytes on disk, with captions) and the reproduction scorecard."""

import base64
import html
import json
import re

import pandas as pd
import pytest
from workflow_helpers import RANDOM_MODEL, REPO, baseline_run, snakemake

from spikesink.analyses import registry

pytestmark = pytest.mark.slow


def embedded(report: str, name: str):
    """The JSON a Snakemake 9 report embeds as `<script id="name"> var name = ...; </script>`."""
    match = re.search(rf'<script id="{name}">\s*var \w+ = (.*?);\s*</script>', report, re.S)
    assert match, f"no {name} in the report"
    return json.loads(match.group(1))


def decoded(result: dict) -> bytes:
    return base64.b64decode(result["data_uri"].split("base64,", 1)[1])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    work = baseline_run(tmp_path_factory)
    path = tmp_path_factory.mktemp("report") / "report.html"
    result = snakemake(work, "--report", str(path))
    assert "Report created" in result.stdout + result.stderr
    return work, path.read_text(encoding="utf-8")


def test_report_holds_every_figure_with_its_caption(report):
    work, text = report
    results = embedded(text, "results")
    figures = sorted(str(p.relative_to(work)) for p in work.glob("figures/**/*.png"))
    assert {
        "figures/lifecycle/planted.png",
        f"figures/lifecycle/{RANDOM_MODEL}.png",
        "figures/lifecycle/all_models.png",
    } <= set(figures)
    for rel in figures:
        assert rel in results, f"{rel} missing from the report"
        assert decoded(results[rel]) == (work / rel).read_bytes(), f"{rel}: the report holds other bytes"
        assert results[rel]["mime_type"] == "image/png"  # shown inline by any browser
        caption = re.sub(r"<[^>]+>", " ", results[rel]["caption"])
        assert len(caption.split()) >= 8, f"{rel}: no caption"
        analysis = rel.split("/")[1]
        if analysis in registry():  # an analysis's figure: its caption file, naming the paper's figure or ours
            assert "Figure" in caption, f"{rel}: not its analysis's caption"
    assert "Paper Figure 1 for planted" in results["figures/lifecycle/planted.png"]["caption"]


def scorecard_in_report() -> bool:
    return "report(" in (REPO / "workflow/rules/scorecard.smk").read_text()


def test_report_holds_the_scorecard(report):
    work, text = report
    if not scorecard_in_report():
        pytest.xfail("workflow/rules/scorecard.smk does not wrap paper_tables/scorecard.csv in report() yet")
    results = embedded(text, "results")
    assert "paper_tables/scorecard.csv" in results
    assert decoded(results["paper_tables/scorecard.csv"]) == (work / "paper_tables/scorecard.csv").read_bytes()
    assert "paper_tables/scorecard.csv" in embedded(text, "categories")["Scorecard"]["Other"]


def test_scorecard_is_on_the_first_page(report):
    """The landing page (the workflow description) shows the scorecard itself, claim by claim."""
    work, text = report
    description = html.unescape(embedded(text, "workflow-desc"))
    if "<table" not in description:
        pytest.xfail("workflow/report/workflow.rst does not include the scorecard table yet")
    scorecard = pd.read_csv(work / "paper_tables/scorecard.csv", dtype=str, keep_default_na=False)
    assert len(scorecard) > 0
    for _, row in scorecard.iterrows():
        assert row["ours"] in description, f"scorecard row missing from the first page: {row['claim']} / {row['model']}"
    assert description.count("<tr>") >= len(scorecard) + 1
