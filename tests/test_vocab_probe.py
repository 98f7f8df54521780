"""Vocabulary probe against the planted model's ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from analysis_helpers import figure_files, make_job

from spikesink.acquisition.planted import build_planted_llama, planted_tokenizer
from spikesink.analyses import runner
from spikesink.analyses.lifecycle.result import Lifecycle
from spikesink.analyses.vocab_probe.claims import vocab_probe_claims
from spikesink.analyses.vocab_probe.figure import plot_vocab_probe, summary_tables, table2
from spikesink.analyses.vocab_probe.measure import (
    default_probe_blocks,
    probe_blocks_from_lifecycle,
    probe_peaks,
    run_vocab_probe,
    vocab_probe,
)
from spikesink.analyses.vocab_probe.result import VocabProbe
from spikesink.config import analysis_settings
from spikesink.instrumentation.spikes import SpikeRule
from spikesink.instrumentation.taps import block_taps, run_decoder

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def planted():
    model, info = build_planted_llama(seed=3)
    return model, info, planted_tokenizer()


@pytest.fixture(scope="module")
def probed(planted):
    model, info, tokenizer = planted
    return vocab_probe(
        model, tokenizer, SpikeRule(), prefix="Some words here, then more ", batch_size=64, progress=False
    )


def test_position_zero_spike_tokens_are_exactly_the_triggers(planted, probed):
    _, info, _ = planted
    frame, summary = probed
    assert set(frame.token_id[frame.is_spike_pos0]) == set(info["trigger_token_ids"])
    assert set(frame.token_id[frame.is_exception]) == set(info["exception_token_ids"])
    assert summary["n_spike_pos0"] == len(info["trigger_token_ids"])
    assert summary["ratio_pos0"] == pytest.approx(len(info["trigger_token_ids"]) / 256)
    # the peak sits on the first spike channel, between step-up and step-down
    spikes = frame[frame.is_spike_pos0]
    assert (spikes.peak_channel_pos0 == info["spike_channels"][0]).all()
    assert (spikes.first_spike_block_pos0 == info["step_up_blocks"][0]).all()
    assert (
        (spikes.peak_block_pos0 >= info["step_up_blocks"][0]) & (spikes.peak_block_pos0 < info["step_down_blocks"][0])
    ).all()


def test_later_position_spikes_only_for_delimiters(planted, probed):
    _, info, _ = planted
    frame, summary = probed
    assert set(frame.token_id[frame.is_spike_later]) == set(info["delimiter_token_ids"])
    assert summary["ratio_later"] < 0.05
    assert (frame.peak_later[~frame.is_spike_later] < 100).all()


def test_exceptions_sit_near_the_embedding_mean(probed):
    _, summary = probed
    assert summary["exception_vs_norm"]["auroc_smaller"] == 1.0
    assert summary["exception_vs_distance"]["spearman"] < 0
    listed = summary["exceptions"]
    assert len(listed) == summary["n_exceptions"] and {"token_id", "text", "embedding_distance"} <= set(listed[0])


def test_cached_prefix_equals_full_sequences(planted):
    """The prefix KV cache shortcut must give the statistics of running prefix + token in full."""
    model, _, tokenizer = planted
    prefix = tokenizer("a b. c", add_special_tokens=False)["input_ids"]
    ids = [5, 46, 97, 250]
    blocks = default_probe_blocks(12)
    fast = probe_peaks(model, ids, blocks, SpikeRule(), prefix_ids=prefix, batch_size=3, progress=False)
    full = {"peak": [], "massive": []}
    for token in ids:
        peaks = []
        seq = torch.tensor([prefix + [token]])

        def record(block, state, peaks=peaks):
            peaks.append(float(state[0, -1].abs().max()))

        with block_taps(model, blocks, record):
            run_decoder(model, input_ids=seq)
        full["peak"].append(max(peaks))
    np.testing.assert_allclose(fast["peak"], full["peak"], rtol=1e-4)


def test_forward_stops_after_the_last_probed_block(planted):
    model, _, _ = planted
    called = []
    handle = model.model.layers[3].register_forward_pre_hook(lambda *a: called.append(3))
    try:
        out = probe_peaks(
            model, [1, 2], blocks=[4, 5], rule=SpikeRule(), progress=False
        )  # layer 2's attention is the last
    finally:
        handle.remove()
    assert not called
    assert out["massive"].all()


def test_thresholds_are_parameters(planted):
    model, info, _ = planted
    triggers = info["trigger_token_ids"][:8]
    assert probe_peaks(model, triggers, blocks=[4], rule=SpikeRule(), progress=False)["massive"].all()
    out = probe_peaks(model, triggers, blocks=[4], rule=SpikeRule(floor=10 * info["spike_magnitude"]), progress=False)
    assert not out["massive"].any()
    out = probe_peaks(model, triggers, [4], SpikeRule(median_ratio=1e9), reference_median={4: 1.0}, progress=False)
    assert not out["massive"].any()


def test_bad_blocks_are_refused(planted):
    model, _, _ = planted
    with pytest.raises(ValueError):
        probe_peaks(model, [1], blocks=[0], rule=SpikeRule(), progress=False)
    with pytest.raises(ValueError):
        probe_peaks(model, [1], blocks=[13], rule=SpikeRule(), progress=False)


# the corpus median per block: the probed plateau (blocks 4-9) sits near 1, the blocks outside it far lower
MEDIANS = [0.05, 0.05, 0.05, 1.2, 1.0, 1.3, 1.5, 1.1, 1.4, 0.02, 0.05, 0.05]


def test_pipeline_entry_claims_table_and_figure(planted, tmp_path):
    model, info, tokenizer = planted
    lifecycle = Lifecycle(plateau=(4, 9), median_by_block=MEDIANS)
    prefix = analysis_settings("vocab_probe").prefix  # the schema's default prefix
    frame, summary = run_vocab_probe(
        model, tokenizer, SpikeRule(), lifecycle, prefix=prefix, batch_size=128, progress=False
    )
    assert summary["blocks"] == list(range(4, 10))
    assert summary["reference_from"] == "lifecycle corpus medians"
    assert summary["reference_median"] == {b: m for b, m in enumerate(MEDIANS, start=1)}
    assert summary["n_spike_pos0"] == len(info["trigger_token_ids"])
    claims = {c.claim: c for c in vocab_probe_claims("planted", summary)}
    assert not claims["almost every vocabulary item is a spike token at position 0"].holds  # 240/256 = 93.75%
    assert claims["the same items rarely spike at a later position"].holds
    assert claims["exceptions are tokens whose embeddings stay near initialisation"].holds
    table = table2([{"model": "planted", "paper_model": None, "summary": summary}])
    assert table["paper model"].tolist()[1:] == [
        "Llama-2-7B",
        "Llama-2-13B",
        "Llama-3-8B",
        "Qwen2.5-7B",
        "Qwen2.5-14B",
        "Qwen3-8B",
        "Qwen3-14B",
    ]
    assert table.loc[0, "spike tokens pos 0"] == len(info["trigger_token_ids"]) and table.loc[0, "probed"] == 256

    drawn = plot_vocab_probe(frame, summary, tmp_path / "vocab", "planted")
    figure_files(tmp_path / "vocab")
    # two histograms over the same bins, each counting every probed id once
    assert set(drawn["counts"]) == {"peak_pos0", "peak_later"}
    for column, counts in drawn["counts"].items():
        assert len(counts) == len(drawn["bins"]) - 1 and counts.sum() == summary["n_probed"] == len(frame)
        expected, _ = np.histogram(frame[column].clip(*drawn["bins"][[0, -1]]), bins=drawn["bins"])
        np.testing.assert_array_equal(counts, expected)
    # a largest peak whose log round trip lands above the last bin edge is still counted
    # (5030.32470703125: 10 ** log10(x) < x)
    low, high = 6.922504901885986, 5030.32470703125
    assert np.logspace(np.log10(low), np.log10(high), 60)[-1] < high
    edge = frame.assign(peak_pos0=np.clip(frame["peak_pos0"].astype(float), low, high), peak_later=low)
    edge.loc[0, "peak_pos0"] = high
    edge_counts = plot_vocab_probe(edge, summary, tmp_path / "edge", "planted")["counts"]
    assert all(c.sum() == len(frame) for c in edge_counts.values())
    # the threshold lines: the floor, and median_ratio x the smallest reference median of the PROBED blocks
    # (1.0 at block 5, not the 0.02 of block 10 outside the plateau)
    assert drawn["lines"]["floor"] == summary["floor"] == 100.0
    assert drawn["lines"]["median_ratio x reference median"] == pytest.approx(1000.0 * 1.0)
    # every spike token's peak lies right of the line, every exception's left of it
    line = drawn["lines"]["median_ratio x reference median"]
    assert (frame.loc[frame.is_spike_pos0, "peak_pos0"] > line).all()
    assert (frame.loc[~frame.is_spike_pos0, "peak_pos0"] < line).all()


def test_measure_and_report_of_a_job(planted, tmp_path):
    """measure(job) with the config section's blocks / prefix / limit; the report reads the stored result."""
    model, info, tokenizer = planted
    lifecycle = Lifecycle(plateau=(4, 9), median_by_block=MEDIANS)
    job = make_job("vocab_probe", {"lifecycle": lifecycle}, model, {"limit": 64, "blocks": "plateau_start"}, "planted")
    job.model.tokenizer = tokenizer
    result = runner.measure(job)
    summary = result.summary
    assert summary["limit"] == 64 and summary["n_probed"] == 64 and summary["blocks"] == [4, 5, 6, 7]
    assert "seconds" not in summary  # wall-clock time goes to the log: results are identical across runs
    expected_ids = tokenizer(job.settings.prefix, add_special_tokens=False)["input_ids"]
    assert summary["prefix_ids"] == expected_ids
    assert summary["n_spike_pos0"] == len([t for t in info["trigger_token_ids"] if t < 64])
    result.save(tmp_path / "probe")
    loaded = VocabProbe.load(tmp_path / "probe")
    assert loaded.summary["reference_median"] == summary["reference_median"]  # integer block keys restored
    pd.testing.assert_frame_equal(loaded.frame, result.frame)
    claims = runner.claims(loaded, job)
    assert [c.claim for c in claims] == [c.claim for c in vocab_probe_claims("planted", summary)]
    assert "(first 64 ids only)" in claims[0].ours
    drawn = runner.figures(loaded, job, {"": tmp_path / "planted"})[""]
    figure_files(tmp_path / "planted")
    assert all(counts.sum() == 64 for counts in drawn["counts"].values())
    assert drawn["lines"]["median_ratio x reference median"] == pytest.approx(1000.0 * 1.0)  # min over blocks 4-7
    jobs = {"planted": make_job("vocab_probe", model_name="planted", paper_model="Llama-3-8B")}
    ((name, (table, _)),) = summary_tables({"planted": loaded}, jobs).items()
    assert name == "table2_vocab_probe"
    row = table.iloc[0]
    assert row["paper model"] == "Llama-3-8B" and row["probed"] == 64
    assert row["ratio pos 0 (%)"] == pytest.approx(100 * summary["ratio_pos0"])


def test_bfloat16_model_gives_float32_statistics():
    """The CUDA path runs bf16 weights; statistics must still be float32 and find the same tokens."""
    model, info = build_planted_llama(seed=3)
    model = model.to(torch.bfloat16)
    out = probe_peaks(model, list(range(256)), blocks=[4, 5, 6], rule=SpikeRule(), batch_size=128, progress=False)
    assert out["peak"].dtype == np.float32
    assert set(np.flatnonzero(out["massive"])) == set(info["trigger_token_ids"])


def test_plateau_start_probes_the_first_plateau_blocks_only():
    assert probe_blocks_from_lifecycle(Lifecycle(plateau=(24, 57)), 60, "plateau_start") == [24, 25, 26, 27]
    assert probe_blocks_from_lifecycle(Lifecycle(plateau=(4, 5)), 12, "plateau_start") == [4, 5]
    assert probe_blocks_from_lifecycle(Lifecycle(plateau=(24, 57)), 60, "plateau") == list(range(24, 58))
    # no plateau: the intermediate blocks
    assert probe_blocks_from_lifecycle(Lifecycle(), 12, "plateau") == default_probe_blocks(12) == list(range(3, 11))


# ------------------------------------------------------------------------------------------
# The claims: Wilson intervals, every claim a row, thresholds from the config
# ------------------------------------------------------------------------------------------


def probe_summary(n=1000, pos0=990, later=3, exceptions=None, auroc=0.9, **extra):
    """A probe summary with the fields the claims read."""
    exceptions = n - pos0 if exceptions is None else exceptions
    return {
        "n_probed": n,
        "n_spike_pos0": pos0,
        "ratio_pos0": pos0 / n,
        "n_spike_pos0_own_median": pos0,
        "n_spike_later": later,
        "ratio_later": later / n,
        "n_exceptions": exceptions,
        "exception_vs_distance": {"auroc_smaller": auroc, "spearman": -0.3},
        **extra,
    }


def test_shares_carry_wilson_intervals_and_a_straddling_interval_is_inconclusive():
    from spikesink.reporting.verdicts import share_estimate

    pos0, later, exceptions = vocab_probe_claims("m", probe_summary())
    expected = share_estimate(990, 1000)
    assert (pos0.value, pos0.low, pos0.high) == (expected.value, expected.low, expected.high)
    assert pos0.verdict == "holds" and f"[{100 * expected.low:.2f}, {100 * expected.high:.2f}]" in pos0.ours
    assert later.verdict == "holds" and later.high < 0.05 and "[" in later.ours
    assert exceptions.verdict == "holds" and exceptions.low < 0.9 < exceptions.high
    # 95 of 100 ids: Wilson 88.8-97.8 %, straddling the 95 % bar: neither holds nor fails
    straddling = vocab_probe_claims("m", probe_summary(n=100, pos0=95, later=1))[0]
    assert straddling.low < 0.95 < straddling.high and straddling.verdict == "inconclusive"
    assert vocab_probe_claims("m", probe_summary(n=100, pos0=80, later=1))[0].verdict == "fails"


def test_auroc_interval_is_hanley_mcneil():
    from spikesink.analyses.vocab_probe.claims import auroc_estimate

    est = auroc_estimate(0.9, 50, 50)
    assert est.low == pytest.approx(0.837, abs=1e-3) and est.high == pytest.approx(0.963, abs=1e-3)
    assert auroc_estimate(1.0, 16, 240).low == 1.0  # perfect separation: no spread left
    assert np.isnan(auroc_estimate(float("nan"), 3, 5).value)


def test_every_claim_yields_a_row_with_its_reason():
    reasons = lambda claims: [(c.verdict, c.ours) for c in claims]  # noqa: E731
    # no exceptions: every id spikes
    *_, row = vocab_probe_claims("m", probe_summary(pos0=1000, exceptions=0, auroc=float("nan")))
    assert row.verdict == "n/a" and "no exceptions" in row.ours
    # an undefined AUROC
    *_, row = vocab_probe_claims("m", probe_summary(auroc=float("nan")))
    assert row.verdict == "n/a" and "AUROC is undefined" in row.ours
    # position 0 itself rarely spikes: no contrast with later positions
    _, row, _ = vocab_probe_claims("m", probe_summary(pos0=100))
    assert row.verdict == "n/a" and "no contrast" in row.ours
    # the control not run
    summary = probe_summary()
    del summary["ratio_later"]
    assert "not run" in vocab_probe_claims("m", summary)[1].ours
    # a model without a spike: every row n/a, not a failure
    claims = vocab_probe_claims("m", probe_summary(pos0=0), lifecycle=Lifecycle())
    assert len(claims) == 3 and all(v == "n/a" and "has no spike" in o for v, o in reasons(claims))


def test_thresholds_come_from_the_config_section():
    strict = analysis_settings("vocab_probe", {"claims": {"min_ratio_pos0": 0.999, "min_auroc": 0.99}}).claims
    pos0, _, exceptions = vocab_probe_claims("m", probe_summary(auroc=0.75), thresholds=strict)
    assert pos0.verdict == "fails" and "99.9%" in pos0.tolerance
    assert exceptions.verdict == "fails" and "0.99" in exceptions.tolerance
    job = make_job("vocab_probe", {"lifecycle": Lifecycle(plateau=(4, 9))}, settings={"claims": {"min_auroc": 0.99}})
    rows = runner.claims(VocabProbe(frame=pd.DataFrame(), summary=probe_summary(auroc=0.75)), job)
    assert rows[2].verdict == "fails" and vocab_probe_claims("m", probe_summary(auroc=0.75))[2].verdict != "fails"
