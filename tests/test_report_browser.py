"""The HTML report in a real browser: headless Chromium opens `snakemake --report`'s file and the page
itself says that the scorecard comes first, every embedded figure decodes as the report's own
result view shows it, and no link points at a file that is not inside the report."""

import json
import re

import pytest
from workflow_helpers import baseline_run, snakemake

from spikesink.rehearsal.browser import Chromium, check_report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """(work dir, report file, the check of it) for the session's tiny run."""
    try:
        with Chromium():
            pass
    except Exception as error:  # chromium missing or unable to start here
        pytest.skip(f"no headless Chromium: {error} (apt-get install -y chromium)")
    work = baseline_run(tmp_path_factory)
    folder = tmp_path_factory.mktemp("browser")
    snakemake(work, "--report", str(folder / "report.html"))
    return work, folder / "report.html", check_report(folder / "report.html", folder / "report.png")


def test_scorecard_first_every_figure_loads_no_broken_link(checked):
    work, _, check = checked
    assert check.ok, check.problems()
    assert check.scorecard_first and check.scorecard_rows > 0
    figures = sorted(str(p.relative_to(work)) for p in work.glob("figures/**/*.png"))
    loaded = {r["path"]: r for r in check.results}
    assert set(figures) <= set(loaded), "every figure is in the report"
    for path in figures:
        assert loaded[path]["kind"] == "img" and loaded[path]["width"] > 100, loaded[path]
    assert check.screenshot_colours > 16


def test_the_check_fails_on_a_broken_report(checked, tmp_path):
    """The same report with one figure's bytes cut short and a link to a file beside it: both caught."""
    _, source, _ = checked
    text = source.read_text(encoding="utf-8")
    script = re.search(r'(<script id="results">\s*var \w+ = )(.*?)(;\s*</script>)', text, re.S)
    figure = "figures/lifecycle/planted.png"
    data_uri = json.loads(script.group(2))[figure]["data_uri"]
    assert text.count(data_uri) == 1
    text = text.replace(data_uri, data_uri[: 22 + 4000])  # the PNG cut after its first 3,000 bytes
    end = text.rindex("</body>")  # the page's own (bundled scripts hold the string too)
    text = text[:end] + '<a href="figures/lifecycle/planted.pdf">beside the report</a>' + text[end:]
    broken = tmp_path / "report.html"
    broken.write_text(text, encoding="utf-8")
    check = check_report(broken, tmp_path / "broken.png")
    assert not check.ok
    assert [r["path"] for r in check.failed_results] == [figure]
    assert [link["href"] for link in check.broken_links] == ["figures/lifecycle/planted.pdf"]
