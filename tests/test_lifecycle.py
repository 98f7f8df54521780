"""The life-cycle detector must recover a planted spike exactly: blocks, channels, sign."""

import numpy as np
import pytest
from analysis_helpers import figure_files, make_job
from conftest import tiny_model

from spikesink.analyses import runner
from spikesink.analyses.lifecycle import figure as lifecycle_figure
from spikesink.analyses.lifecycle.claims import lifecycle_claims
from spikesink.analyses.lifecycle.figure import plot_lifecycle, table1, table1_row
from spikesink.analyses.lifecycle.measure import detect_lifecycle
from spikesink.analyses.lifecycle.result import Lifecycle
from spikesink.config import ConfigError, Section, analysis_settings
from spikesink.extraction.block_stats import extract_block_stats
from spikesink.results import OUTPUT, RESIDUAL


def planted_prompts(info, n=8, seq_len=32, seed=0):
    """Prompts that start with a trigger token and continue with ordinary (non-delimiter) tokens."""
    rng = np.random.default_rng(seed)
    triggers = np.array(sorted(set(info["trigger_token_ids"]) - set(info["delimiter_token_ids"])))
    ordinary = np.array(sorted(set(range(256)) - set(info["delimiter_token_ids"])))
    ids = rng.choice(ordinary, size=(n, seq_len))
    ids[:, 0] = rng.choice(triggers, size=n)
    return ids


@pytest.fixture(scope="module")
def planted_case(planted):
    model, info = planted
    stats = extract_block_stats(model, planted_prompts(info), batch_size=4, progress=False)
    return info, stats, detect_lifecycle(stats)


def test_recovers_planted_blocks_and_channels(planted_case):
    info, stats, lc = planted_case
    assert isinstance(lc, Lifecycle) and lc.not_applicable is None
    assert lc.step_up == list(info["step_up_blocks"])
    assert lc.step_down == list(info["step_down_blocks"])
    assert sorted(lc.spike_channels) == sorted(info["spike_channels"])
    assert lc.plateau == (info["step_up_blocks"][0], info["step_down_blocks"][0] - 1)
    assert lc.contiguous
    assert lc.reference_tokens == "position 0"
    assert lc.contributions[info["step_up_blocks"][0] - 1] == pytest.approx(1.0, abs=0.05)
    assert lc.contributions[info["step_down_blocks"][0] - 1] == pytest.approx(-1.0, abs=0.05)


def test_spike_vector_has_planted_ratio(planted_case):
    info, _, lc = planted_case
    by_channel = dict(zip(lc.spike_channels, lc.spike_vector))
    ratio = np.array([by_channel[c] for c in info["spike_channels"]])
    np.testing.assert_allclose(ratio / ratio[0], np.array(info["channel_ratio"]) / info["channel_ratio"][0], rtol=0.05)
    assert abs(ratio[0]) == pytest.approx(info["spike_magnitude"], rel=0.1)


def test_only_position_zero_spikes(planted_case):
    info, stats, lc = planted_case
    assert lc.position0_spike_fraction == 1.0
    assert lc.spike_token_fraction == pytest.approx(1 / stats.input_ids.shape[1])


def test_claims_hold_on_planted_model(planted_case):
    _, _, lc = planted_case
    claims = {c.claim: c for c in lifecycle_claims("planted", lc, 10, 0.05, early_fraction=0.5, late_fraction=0.5)}
    assert all(c.holds for c in claims.values()), [c for c in claims.values() if not c.holds]
    one = claims["the spike rises, stays and falls once (one stage)"]
    assert "1 stage(s)" in one.ours and "blocks 4 ->" in one.ours
    # the token share carries its interval over prompts (every prompt: exactly its first token)
    tokens = claims["property (v): massive activations sit on few tokens"]
    assert tokens.value == pytest.approx(1 / 32) and tokens.low == tokens.high == pytest.approx(1 / 32)


def test_claims_of_a_job_read_their_thresholds_from_the_config_section(planted_case):
    """claims(result, job): the schema's `claims:` subsection decides (defaults = the old Python defaults)."""
    _, stats, lc = planted_case
    defaults = analysis_settings("lifecycle").claims
    assert (defaults.max_channels, defaults.max_token_fraction) == (10, 0.05)
    assert (defaults.early_fraction, defaults.late_fraction) == pytest.approx((1 / 3, 2 / 3), abs=1e-4)
    by_default = runner.claims(lc, make_job("lifecycle", {"block_stats": stats}, model_name="planted"))
    expected = lifecycle_claims("planted", lc, 10, 0.05, defaults.early_fraction, defaults.late_fraction)
    assert [c.to_dict() for c in by_default] == [c.to_dict() for c in expected]
    assert len(by_default) == 7 and all(c.holds for c in by_default), [c for c in by_default if not c.holds]
    # the planted step-up (block 4 of 12) is early under the default third, not in the first quarter
    strict = make_job("lifecycle", {"block_stats": stats}, settings={"claims": {"early_fraction": 0.25}})
    holds = {c.claim: c.holds for c in runner.claims(lc, strict)}
    assert not holds["the spike is injected by one or two early FFN blocks (step-up)"]
    assert sum(holds.values()) == 6


def test_stricter_step_fraction_drops_partial_blocks(planted_case):
    _, stats, _ = planted_case
    # the schema caps step_fraction at 1 (a share of the spike); 1.5 is given to the detector
    # directly, as a Section, to ask for more than any block can add
    with pytest.raises(ConfigError, match="analyses.lifecycle.step_fraction"):
        analysis_settings("lifecycle", {"step_fraction": 1.5})
    strict = Section({**analysis_settings("lifecycle").to_dict(), "step_fraction": 1.5})
    lc = detect_lifecycle(stats, settings=strict)
    assert lc.step_up == [] and lc.step_down == []
    # and the detector reads its settings: the default fraction finds both blocks again
    assert detect_lifecycle(stats, settings=analysis_settings("lifecycle", {"step_fraction": 0.15})).step_up == [4]


def test_a_model_without_spike_fails_appear_and_reads_na_for_every_spike_claim():
    model = tiny_model()
    stats = extract_block_stats(model, np.random.default_rng(0).integers(0, 128, (4, 12)), progress=False)
    lc = detect_lifecycle(stats)
    assert lc.massive_blocks == [] and lc.plateau is None and lc.step_up == [] and lc.stages == []
    claims = lifecycle_claims("random", lc, 10, 0.05, 1 / 3, 2 / 3)
    assert [c.verdict for c in claims] == ["fails"] + ["n/a"] * 6
    assert all(c.ours.startswith("n/a: the model has no spike: no massive block") for c in claims[1:])


def test_measure_of_a_job_is_detect_lifecycle(planted_case):
    _, stats, lc = planted_case
    measured = runner.measure(make_job("lifecycle", {"block_stats": stats}))
    assert measured == lc


def test_result_round_trips_through_its_files(planted_case, tmp_path):
    _, _, lc = planted_case
    written = lc.save(tmp_path / "lifecycle")
    assert [p.name for p in written] == ["result.json"]
    loaded = Lifecycle.load(tmp_path / "lifecycle")
    assert loaded == lc and isinstance(loaded.plateau, tuple)


def test_table1_puts_paper_rows_beside_ours(planted_case):
    _, _, lc = planted_case
    frame = table1([table1_row("mine", lc, "Llama-2-7B")])
    row = frame[frame["model"] == "mine"].iloc[0]
    assert row["paper step-up"] == [4] and row["paper blocks"] == 64
    assert row["step-up"] == lc.step_up and row["peak |h|"] == lc.peak_magnitude
    assert len(frame) == 7  # our row plus the six other paper models


def test_summary_table_has_one_row_per_model_with_its_paper_model(planted_case):
    _, stats, lc = planted_case
    jobs = {
        name: make_job("lifecycle", {"block_stats": stats}, model_name=name, paper_model=paper)
        for name, paper in (("a", "Llama-2-7B"), ("b", None))
    }
    ((name, (frame, caption)),) = lifecycle_figure.summary_tables({"a": lc, "b": lc}, jobs).items()
    assert name == "table1_step_up_down" and caption.startswith("Table 1")
    assert list(frame["model"][:2]) == ["a", "b"] and list(frame["paper model"][:2]) == ["Llama-2-7B", "-"]
    assert len(frame) == 2 + 6  # the paper's rows of the six models not configured


def test_lifecycle_figure_draws_the_block_statistics(planted_case, tmp_path):
    """Figure 1: the top-k lines are the block statistics' mean over prompts, per block and kind."""
    _, stats, lc = planted_case
    drawn = plot_lifecycle(stats, lc, "planted", tmp_path / "lc", top_k=3, show_median=True)
    figure_files(tmp_path / "lc")
    blocks = np.arange(1, stats.n_blocks + 1)
    for panel, kind in (("post_residual", RESIDUAL), ("block_output", OUTPUT)):
        frame = drawn[panel]
        assert list(frame.index) == list(blocks) and list(frame.columns) == ["top-1", "top-2", "top-3", "median"]
        for i in range(3):
            np.testing.assert_allclose(frame[f"top-{i + 1}"], stats.topk_abs[kind, :, :, i].mean(axis=1), rtol=1e-5)
        np.testing.assert_allclose(frame["median"], stats.median[kind].mean(axis=1), rtol=1e-5)
    # the post-residual top-1 line is the life cycle's own per-block reading
    np.testing.assert_allclose(drawn["post_residual"]["top-1"], lc.top1_by_block, rtol=1e-5)
    np.testing.assert_allclose(drawn["post_residual"]["median"], lc.median_by_block, rtol=1e-5)
    assert drawn["post_residual"]["top-1"].idxmax() == lc.peak_block
    assert drawn["step_up"] == lc.step_up == [4] and drawn["step_down"] == lc.step_down == [10]


def test_figure_options_change_what_is_drawn(planted_case, tmp_path):
    _, stats, lc = planted_case
    drawn = plot_lifecycle(stats, lc, "planted", tmp_path / "lc", top_k=1, show_median=False)
    assert list(drawn["post_residual"].columns) == ["top-1"]


def test_report_of_a_job_draws_figure_1_and_figure_7(planted_case, tmp_path):
    """runner.figures / draw_summary: the workflow's report and summary jobs, with the config's figure options."""
    _, stats, lc = planted_case
    job = make_job("lifecycle", {"block_stats": stats}, settings={"figure": {"top_k": 2}}, model_name="planted")
    drawn = runner.figures(lc, job, {"": tmp_path / "planted"})
    figure_files(tmp_path / "planted")
    assert list(drawn) == [""] and list(drawn[""]["post_residual"].columns) == ["top-1", "top-2", "median"]
    np.testing.assert_allclose(drawn[""]["post_residual"]["top-1"], lc.top1_by_block, rtol=1e-5)
    jobs = {"planted": job, "again": make_job("lifecycle", {"block_stats": stats}, model_name="again")}
    grid = lifecycle_figure.draw_summary({"planted": lc, "again": lc}, jobs, {"all_models": tmp_path / "all_models"})
    figure_files(tmp_path / "all_models")
    assert list(grid["all_models"]) == ["planted", "again"]
    for frame in grid["all_models"].values():
        np.testing.assert_allclose(frame["top-1"], lc.top1_by_block, rtol=1e-5)
        np.testing.assert_allclose(frame["median"], lc.median_by_block, rtol=1e-5)


def test_two_stages_are_found_in_order_each_against_its_own_peak():
    """SmolLM2's shape: blocks 4 and 6 write ~780 that blocks 18-22 cancel, then block 24 writes
    the 2.3e4 spike that blocks 58 and 60 cancel (values from its block statistics, rounded)."""
    from spikesink.analyses.lifecycle.stages import detect_stages

    steps = np.zeros(60)
    steps[[1, 2, 3, 5]] = [14, 24, 149, 593]  # blocks 2, 3, 4, 6
    steps[[17, 19, 21]] = [-109, -501, -101]  # blocks 18, 20, 22
    steps[[23, 57, 59]] = [22991, -14181, -5410]  # blocks 24, 58, 60
    levels = np.cumsum(steps)
    medians = np.linspace(0.1, 15, 60)
    stages = detect_stages(levels, steps, medians, [24], 60, 100, 100, 0.15)
    assert [s["main"] for s in stages] == [False, True]
    early, main = stages
    assert early["step_up"] == [4, 6] and early["step_down"] == [20] and early["peak_block"] == 6
    assert early["cancelled_share"] == pytest.approx(711 / 780, abs=0.01)
    assert main["step_up"] == [24] and main["step_down"] == [58, 60]
    # an earlier bump below stage_min_ratio x its median is not a stage
    assert [s["main"] for s in detect_stages(levels, steps, medians * 10, [24], 60, 100, 100, 0.15)] == [True]
