"""One analysis outside the workflow: its Job built from the schema's defaults, and the two files
every figure writes.

A Job is what an analysis's measure / claims / figure functions see in a workflow job and in a
notebook (spikesink.analyses.unit.Job); here its settings are the analysis's schema defaults with
`settings` as overrides (spikesink.config.analysis_settings), its shared settings the schema's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from spikesink.analyses import get
from spikesink.analyses.unit import Job
from spikesink.config import analysis_settings, default_shared


def make_job(
    name: str,
    inputs: Mapping | None = None,
    model=None,
    settings: Mapping | None = None,
    model_name: str = "m",
    paper_model: str | None = None,
) -> Job:
    """The job of analysis `name` on `inputs` (read key -> value); `model` a Hugging Face model
    (wrapped as an InstrumentedModel with the default spike rule) or an InstrumentedModel."""
    if model is not None and not hasattr(model, "layout"):
        from spikesink.instrumentation.model import InstrumentedModel

        model = InstrumentedModel.wrap(model, name=model_name)
    return Job(
        get(name),
        model_name,
        analysis_settings(name, settings),
        default_shared(),
        dict(inputs or {}),
        model,
        paper_model,
    )


def figure_files(stem: str | Path) -> list[Path]:
    """The PDF and PNG a figure function wrote at `stem`, checked to be those formats."""
    stem = Path(stem)
    stem = stem.with_suffix("") if stem.suffix in (".pdf", ".png") else stem
    pdf, png = stem.with_name(stem.name + ".pdf"), stem.with_name(stem.name + ".png")
    assert pdf.read_bytes()[:5] == b"%PDF-", f"{pdf} is not a PDF"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{png} is not a PNG"
    return [pdf, png]


def capture_figures(monkeypatch) -> list:
    """The matplotlib figures saved while the test runs (spikesink.reporting.plotting.save_figure),
    for figure functions that return their paths rather than what they drew (Section 4's)."""
    from spikesink.reporting import plotting

    figures, save = [], plotting.save_figure

    def capture(fig, path):
        figures.append(fig)
        return save(fig, path)

    monkeypatch.setattr(plotting, "save_figure", capture)
    return figures
