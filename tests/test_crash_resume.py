"""Crash safety: SIGKILL every process of a run in the middle of extraction (a power cut, an OOM
kill of the whole job), rerun the same command, and get exactly what an uninterrupted run gives.

What resuming needs is recorded, not assumed: with Snakemake 9.27 a SIGKILL leaves the work
directory locked, so the rerun must be preceded by `snakemake --unlock`. A job killed between two
of its outputs leaves one finished output that Snakemake flags incomplete; `profiles/default`
(read on every run) sets `rerun-incomplete`, so the user never has to add it.
"""

import pytest
from workflow_helpers import MODELS, baseline_run, differing_files, npz_equal, output_files, resumed_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    return baseline_run(tmp_path_factory)


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    return resumed_run(tmp_path_factory)


def test_kill_landed_in_the_middle_of_extraction(resumed):
    assert any(0 < p < 100 for p in resumed.progress_at_kill), resumed.progress_at_kill
    finished = {f.split("/")[1] for f in resumed.outputs_at_kill if f.endswith("block_stats.npz")}
    assert finished != set(MODELS), "both extractions had finished: the kill came too late"
    # atomic writes: an interrupted job leaves no output that could pass for a finished one
    for model in set(MODELS) - finished:
        for name in ("block_stats.npz", "block_stats.json", "sinks.npz"):
            assert f"results/{model}/{name}" not in resumed.outputs_at_kill


def test_resuming_needs_only_documented_steps(resumed):
    print(f"resume steps after SIGKILL: {resumed.steps}")
    assert resumed.steps in (["rerun"], ["--unlock", "rerun"]), resumed.steps
    if "--unlock" in resumed.steps:
        # the plain rerun must fail before doing anything, naming the remedy
        assert "--unlock" in resumed.first_rerun and "Directory cannot be locked" in resumed.first_rerun


def test_finished_work_is_not_redone(resumed):
    """The corpus was acquired before extraction started: the resumed run must keep it."""
    assert "rule acquire_corpus:" not in resumed.final_rerun
    assert "rule extract_block_stats:" in resumed.final_rerun


def test_no_temporary_files_left_behind(resumed):
    leftovers = [p for p in resumed.work.rglob(".*.tmp")]
    assert not leftovers, leftovers


def test_resumed_outputs_equal_an_uninterrupted_run(baseline, resumed):
    files = output_files(baseline)
    assert files == output_files(resumed.work)
    assert any(f.endswith(".npz") for f in files) and any(f.startswith("paper_tables/") for f in files)
    for rel in files:
        if rel.endswith(".npz"):
            assert npz_equal(baseline / rel, resumed.work / rel), f"{rel}: arrays differ"
    differ = differing_files(baseline, resumed.work, [f for f in files if not f.endswith(".npz")])
    assert not differ, differ
