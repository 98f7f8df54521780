"""SiLU regime against the planted amplifiers: identity for spike tokens in planted blocks only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from analysis_helpers import figure_files, make_job

from spikesink.acquisition.planted import build_planted_llama, planted_tokenizer
from spikesink.analyses import runner
from spikesink.analyses.lifecycle.result import Lifecycle
from spikesink.analyses.silu_regime.claims import silu_claims, summarize_silu
from spikesink.analyses.silu_regime.figure import plot_silu_regime
from spikesink.analyses.silu_regime.measure import batches_from_sequences, silu_alignment, silu_regime
from spikesink.analyses.silu_regime.result import SiluRegime
from spikesink.instrumentation.spikes import SpikeRule
from spikesink.results import PromptSet

torch.set_num_threads(1)


def test_silu_alignment_limits():
    x = torch.tensor([[30.0, 20.0, 10.0], [-30.0, 1e-3, 1e-3], [0.01, -0.02, 0.03]])
    cos, ratio = silu_alignment(x)
    assert cos[0] == pytest.approx(1.0, abs=1e-6) and ratio[0] == pytest.approx(1.0, abs=1e-4)
    assert ratio[1] < 0.01  # large negative inputs are switched off
    assert ratio[2] == pytest.approx(0.5, abs=0.01)  # SiLU(x) ~ x/2 near 0
    torch.testing.assert_close(cos, F.cosine_similarity(F.silu(x), x, dim=-1))


@pytest.fixture(scope="module")
def regime():
    model, info = build_planted_llama(seed=1)
    tok = planted_tokenizer()
    texts = ["Hello there, my friend. How are you", "A cat sat\nthere", "Quick brown fox", "Numbers 123 and 456"]
    seqs = [tok(t)["input_ids"] for t in texts]
    blocks = info["step_up_blocks"] + [6] + info["step_down_blocks"]
    frame = silu_regime(model, batches_from_sequences(seqs, batch_size=3), blocks, SpikeRule(), progress=False)
    return frame, info, seqs


def test_rows_cover_every_token_and_block(regime):
    frame, info, seqs = regime
    assert len(frame) == 3 * sum(len(s) for s in seqs)
    assert set(frame.block) == {info["step_up_blocks"][0], 6, info["step_down_blocks"][0]}
    first = frame[frame.position == 0]
    assert first.is_spike.all()  # every first token is a trigger byte here


def test_identity_regime_only_for_spike_tokens_in_planted_blocks(regime):
    frame, info, _ = regime
    for block in info["step_up_blocks"] + info["step_down_blocks"]:
        rows = frame[frame.block == block]
        spikes, others = rows[rows.is_spike], rows[~rows.is_spike]
        assert (spikes.cos > 0.999).all() and (spikes.norm_ratio > 0.99).all(), block
        assert others.norm_ratio.median() < 0.75, block  # small gate inputs: SiLU(x) ~ x/2
    # the block output of spike tokens in the step-up block is the spike itself
    up = frame[(frame.block == info["step_up_blocks"][0]) & frame.is_spike]
    assert (up.out_peak > 0.9 * info["spike_magnitude"]).all()
    # a random block is not in the identity regime even for spike tokens
    random_block = frame[(frame.block == 6) & frame.is_spike]
    assert random_block.norm_ratio.max() < 0.75
    summary = summarize_silu(frame)
    assert {"block", "is_spike", "n", "cos_median", "norm_ratio_median"} <= set(summary.columns)


def test_padding_is_dropped():
    model, info = build_planted_llama(seed=2)
    seqs = [[72, 101, 108], [72]]
    frame = silu_regime(model, batches_from_sequences(seqs, batch_size=2), [4], SpikeRule(), progress=False)
    assert len(frame) == 4
    alone = silu_regime(model, batches_from_sequences([[72]], batch_size=1), [4], SpikeRule(), progress=False)
    np.testing.assert_allclose(frame[frame["sample"] == 1].cos.values, alone.cos.values, rtol=1e-5)


def test_attention_blocks_are_refused():
    model, _ = build_planted_llama(seed=2)
    with pytest.raises(ValueError):
        silu_regime(model, batches_from_sequences([[1, 2]]), [3], SpikeRule(), progress=False)


def test_pipeline_entry_claims_and_figure(regime, tmp_path):
    frame, _, _ = regime
    steps = frame[frame.block != 6]
    claims = silu_claims("planted", steps)
    assert len(claims) == 2 and all(c.holds for c in claims)
    # the random block fails the identity claim: the claim can fail
    assert not silu_claims("planted", frame)[0].holds
    drawn = plot_silu_regime(frame, tmp_path / "silu", "planted")
    figure_files(tmp_path / "silu")
    # one panel per block, every token of it drawn (fewer than max_points ordinary tokens here)
    assert sorted(drawn) == sorted(frame["block"].unique())
    columns = ["norm_ratio", "cos", "out_peak", "is_spike"]
    for block, points in drawn.items():
        rows = frame[frame["block"] == block]
        expected = pd.concat([rows[~rows["is_spike"]], rows[rows["is_spike"]]])[columns]
        pd.testing.assert_frame_equal(points, expected)


def test_figure_subsamples_only_the_ordinary_tokens(regime, tmp_path):
    frame, _, _ = regime
    drawn = plot_silu_regime(frame, tmp_path / "few", max_points=5)
    for block, points in drawn.items():
        rows = frame[frame["block"] == block]
        assert (~points["is_spike"]).sum() == 5
        pd.testing.assert_frame_equal(points[points["is_spike"]], rows[rows["is_spike"]][points.columns])
        assert points[~points["is_spike"]].index.isin(rows[~rows["is_spike"]].index).all()


def test_measure_and_report_of_a_job(tmp_path):
    """measure(job) reads the life cycle's step blocks and the sentences; the report draws the stored frame."""
    model, info = build_planted_llama(seed=1)
    tok = planted_tokenizer()
    sentences = PromptSet("sentences", [np.array(tok(t)["input_ids"]) for t in ("A cat sat.", "Hello there")], {})
    lifecycle = Lifecycle(step_up=info["step_up_blocks"], step_down=info["step_down_blocks"])
    job = make_job("silu_regime", {"lifecycle": lifecycle, "prompts.sentences": sentences}, model, model_name="planted")
    result = runner.measure(job)
    assert result.activation == "silu" and result.not_applicable is None
    assert set(result.frame["block"]) == set(info["step_up_blocks"] + info["step_down_blocks"])
    result.save(tmp_path / "silu")
    loaded = SiluRegime.load(tmp_path / "silu")
    pd.testing.assert_frame_equal(loaded.frame, result.frame)
    assert [c.holds for c in runner.claims(loaded, job)] == [True, True]
    drawn = runner.figures(loaded, job, {"": tmp_path / "planted"})[""]
    figure_files(tmp_path / "planted")
    assert sum(len(points) for points in drawn.values()) == len(loaded.frame)


def regime_frame(spike_cos, other_cos=0.5, block=4) -> pd.DataFrame:
    """One spike token (position 0) and three ordinary tokens per sentence, cos given per sentence."""
    rows = []
    for sample, cos in enumerate(spike_cos):
        rows.append((sample, 0, block, cos, cos, True))
        rows += [(sample, p, block, other_cos, other_cos, False) for p in (1, 2, 3)]
    frame = pd.DataFrame(rows, columns=["sample", "position", "block", "cos", "norm_ratio", "is_spike"])
    return frame.assign(token_id=1, gate_norm=1.0, out_peak=1.0, resid_in_peak=1.0, resid_out_peak=1.0)


def test_medians_carry_bootstrap_intervals_over_sentences():
    from spikesink.analyses.silu_regime.claims import median_estimates

    exact = median_estimates(regime_frame([1.0] * 20))[4]
    assert (exact["cos"].value, exact["cos"].low, exact["cos"].high, exact["cos"].n) == (1.0, 1.0, 1.0, 20)
    assert exact["cos_other"].value == 0.5 and exact["cos_gap"].low == exact["cos_gap"].high == 0.5
    rng = np.random.default_rng(0)
    spread = median_estimates(regime_frame(rng.uniform(0.8, 1.0, 40)))[4]["cos"]
    assert 0.8 < spread.low < spread.value < spread.high < 1.0
    identity, closer = silu_claims("m", regime_frame([1.0] * 20))
    assert identity.verdict == closer.verdict == "holds" and "cos 1.000 [1.000, 1.000]" in identity.ours
    assert "95% intervals over 20 sentences" in identity.ours


def test_an_interval_straddling_the_threshold_is_inconclusive():
    identity, _ = silu_claims("m", regime_frame([0.85, 0.95] * 20))  # median 0.9 = min_cos, resamples both sides
    assert identity.low < 0.9 < identity.high and identity.verdict == "inconclusive"
    assert silu_claims("m", regime_frame([0.5] * 20))[0].verdict == "fails"


def test_every_claim_yields_a_row_and_thresholds_come_from_the_config():
    frame = regime_frame([1.0] * 10).assign(is_spike=False)
    claims = silu_claims("m", frame)
    assert [c.verdict for c in claims] == ["n/a", "n/a"] and "no spike token" in claims[0].ours
    gelu = silu_claims("m", regime_frame([1.0] * 10), activation="gelu_pytorch_tanh")
    assert [c.verdict for c in gelu] == ["n/a", "n/a", "holds", "holds"]
    strict = make_job("silu_regime", settings={"claims": {"min_cos": 0.99, "min_gap_over_others": 0.6}})
    rows = runner.claims(SiluRegime(frame=regime_frame([0.95] * 10)), strict)
    assert [c.verdict for c in rows] == ["fails", "fails"] and "0.99" in rows[0].tolerance


def test_sentences_batched_by_length_keep_their_index():
    from spikesink.analyses.silu_regime.measure import run_silu_regime

    model, info = build_planted_llama(seed=1)
    tok = planted_tokenizer()
    texts = ["A much longer sentence. With a delimiter", "Hi", "Middle one here", "x"]
    seqs = [tok(t)["input_ids"] for t in texts]
    lifecycle = Lifecycle(step_up=info["step_up_blocks"], step_down=info["step_down_blocks"])
    frame, reason = run_silu_regime(model, seqs, lifecycle, SpikeRule(), batch_size=2, progress=False)
    assert reason is None
    assert list(frame.columns) == list(silu_regime(model, batches_from_sequences(seqs[:1]), [4], SpikeRule()).columns)
    for sample, seq in enumerate(seqs):
        rows = frame[(frame["sample"] == sample) & (frame["block"] == 4)]
        assert rows["token_id"].tolist() == list(seq) and rows["position"].tolist() == list(range(len(seq)))
    plain = silu_regime(model, batches_from_sequences(seqs, 1), [4, 10], SpikeRule(), progress=False)
    plain = plain.sort_values(["block", "sample", "position"], kind="stable").reset_index(drop=True)
    np.testing.assert_allclose(frame["cos"], plain["cos"], rtol=1e-5)
    assert (frame["is_spike"] == plain["is_spike"]).all()


def test_the_weighted_median_of_a_resample_is_the_median_of_its_rows():
    """The windowed weighted median equals the median of the resampled rows spelled out."""
    from spikesink.analyses.silu_regime.claims import _weighted_median_draws

    rng = np.random.default_rng(0)
    values, units = rng.normal(size=6000), rng.integers(0, 300, 6000)
    counts = rng.multinomial(300, np.full(300, 1 / 300), size=50)
    counts[0] = 0
    counts[0, :3] = 100  # a resample of three units only: its median lies far outside the window
    draws = _weighted_median_draws(values, units, counts)
    for r in range(len(counts)):
        rows = np.sort(np.repeat(values, counts[r][units]))
        assert draws[r] == rows[(len(rows) + 1) // 2 - 1]  # the lower median
    assert np.isnan(_weighted_median_draws(values, units, np.zeros((1, 300), dtype=int))[0])
