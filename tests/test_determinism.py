"""Determinism: two runs of the same config from scratch, in different directories, give
byte-identical tables, scorecard and JSON results, arrays with identical values, and figures
that differ at most in metadata.

The two runs are the session's uninterrupted run and the crash test's run (killed mid-extraction
and resumed): every output of the latter is still computed from scratch in its own directory, and
sharing it saves a third end-to-end run on CI. A difference here with the crash test passing
would be a determinism bug; with both failing, read the crash test first.
"""

import pytest
from workflow_helpers import (
    baseline_run,
    differing_files,
    npz_equal,
    output_files,
    pdf_without_metadata,
    png_chunks,
    resumed_run,
    safetensors_equal,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    first = baseline_run(tmp_path_factory)
    second = resumed_run(tmp_path_factory).work
    files = output_files(first)
    assert files == output_files(second), "the two runs wrote different sets of files"
    return first, second, files


def test_tables_scorecard_and_json_are_byte_identical(runs):
    first, second, files = runs
    text = [f for f in files if f.startswith("paper_tables/") or f.endswith(".json")]
    assert {
        "paper_tables/scorecard.csv",
        "paper_tables/scorecard.md",
        "paper_tables/table1_step_up_down.tex",
        "results/planted/block_stats.json",
        "results/planted/lifecycle/result.json",
        "results/planted/claims/lifecycle.json",
        "results/planted/vocab_probe/summary.json",
        "results/claims/architectures.json",
    } <= set(text)
    differ = differing_files(first, second, text)
    assert not differ, differ


def test_arrays_have_identical_values(runs):
    first, second, files = runs
    arrays = [f for f in files if f.endswith(".npz")]
    assert arrays and "results/planted/rmsnorm_collapse/matrices.npz" in arrays
    for rel in arrays:
        assert npz_equal(first / rel, second / rel), rel
    tensors = [f for f in files if f.endswith(".safetensors")]
    assert "results/planted/act_scales/scales.safetensors" in tensors
    for rel in tensors:
        assert safetensors_equal(first / rel, second / rel), rel
    # reported, not required: np.savez_compressed writes fixed zip dates, so the bytes match too
    print("npz byte-identical:", not differing_files(first, second, arrays))


def test_result_tables_are_byte_identical(runs):
    first, second, files = runs
    tables = [f for f in files if f.endswith((".parquet", ".safetensors"))]
    assert "results/planted/kv_cache/curve.parquet" in tables
    differ = differing_files(first, second, tables)
    assert not differ, differ


def test_figures_differ_at_most_in_metadata(runs):
    first, second, files = runs
    pngs = [f for f in files if f.endswith(".png")]
    pdfs = [f for f in files if f.endswith(".pdf")]
    assert pngs and pdfs
    for rel in pngs:
        a, b = png_chunks((first / rel).read_bytes()), png_chunks((second / rel).read_bytes())
        assert dict(a)[b"IHDR"] == dict(b)[b"IHDR"] and dict(a)[b"IDAT"] == dict(b)[b"IDAT"], f"{rel}: pixels differ"
    for rel in pdfs:
        a, b = (first / rel).read_bytes(), (second / rel).read_bytes()
        assert pdf_without_metadata(a) == pdf_without_metadata(b), f"{rel}: PDF content differs"


def test_figures_are_byte_identical(runs):
    """spikesink.reporting.plotting.save_figure fixes the PDF dates and drops the PNG Software tag, so
    re-running a plot gives the same bytes: caching and checksums downstream can rely on it."""
    first, second, files = runs
    figures = [f for f in files if f.endswith((".png", ".pdf"))]
    differ = differing_files(first, second, figures)
    assert not differ, differ
