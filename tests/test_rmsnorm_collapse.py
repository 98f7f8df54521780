"""RMSNorm bound, sparsity and the cosine collapse of spike tokens, against the planted model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from analysis_helpers import figure_files, make_job

from spikesink.acquisition.planted import build_planted_llama, planted_tokenizer
from spikesink.analyses import runner
from spikesink.analyses.lifecycle.result import Lifecycle
from spikesink.analyses.rmsnorm_collapse.claims import collapse_claims
from spikesink.analyses.rmsnorm_collapse.figure import plot_cosine_collapse
from spikesink.analyses.rmsnorm_collapse.measure import (
    collapse_summary,
    collect_spike_states,
    cosine_matrices,
    delimiter_self_attention,
    energy_fraction,
    is_delimiter_text,
    next_norm,
    nonfirst_spike_counts,
    pairwise_cosine,
    rms_normalize,
    rmsnorm_bound,
    run_collapse,
    spike_mask_at,
)
from spikesink.analyses.rmsnorm_collapse.result import Collapse
from spikesink.analyses.silu_regime.measure import batches_from_sequences
from spikesink.instrumentation.spikes import SpikeRule
from spikesink.results import PromptSet

torch.set_num_threads(1)

TEXTS = [
    "Hello there, my friend. How are you",
    "A cat sat. A dog ran.\nBirds flew",
    "Quick brown fox",
    "Numbers 123 and 456.",
    "Every morning\nthe sun rose",
    "Open the door. Close it",
    "Water is wet",
    "Silence. Then noise",
]


def test_rmsnorm_bound_without_weight():
    torch.manual_seed(0)
    d = 64
    x = torch.randn(100, d) * torch.rand(100, 1) * 50
    x[0] = 0
    x[0, 5] = 3e4  # one-hot: the bound is attained (eps = 0)
    x[1, :2] = 1e5  # two spike channels share the energy: each at sqrt(d/2)
    peak, bound = rmsnorm_bound(x)
    assert bound == pytest.approx(np.sqrt(d))
    assert (peak <= bound * (1 + 1e-6)).all()
    assert peak[0] == pytest.approx(np.sqrt(d), rel=1e-5)
    assert peak[1] == pytest.approx(np.sqrt(d / 2), rel=1e-3)
    # eps only lowers the peak
    peak_eps, _ = rmsnorm_bound(x, eps=1e-2)
    assert (peak_eps <= peak + 1e-6).all()


def test_rmsnorm_bound_with_weight_is_max_abs_weight_times_sqrt_d():
    d = 16
    weight = torch.ones(d)
    weight[3] = -2.5
    x = torch.zeros(2, d)
    x[0, 3] = 7.0  # one-hot on the largest |weight|: |h_3| = 2.5 sqrt(d) > sqrt(d)
    x[1] = torch.randn(d)
    peak, bound = rmsnorm_bound(x, weight)
    assert bound == pytest.approx(2.5 * np.sqrt(d))
    assert peak[0] == pytest.approx(bound, rel=1e-5)
    assert peak[0] > np.sqrt(d)  # the weight-free bound does not hold for the weighted norm
    assert (peak <= bound * (1 + 1e-6)).all()


def test_small_pure_helpers():
    x = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0], [6.0, 8.0, 0.0]])
    cos = pairwise_cosine(x)
    assert cos[0, 2] == pytest.approx(1.0) and cos[0, 1] == pytest.approx(0.0)
    np.testing.assert_allclose(energy_fraction(x, [0]).numpy(), [9 / 25, 0.0, 9 / 25], rtol=1e-6)
    np.testing.assert_allclose(rms_normalize(x).pow(2).mean(-1).numpy(), 1.0, rtol=1e-6)


@pytest.fixture(scope="module")
def planted():
    model, info = build_planted_llama(seed=4)
    tok = planted_tokenizer()
    seqs = [tok(t)["input_ids"] for t in TEXTS]
    return model, info, tok, seqs


@pytest.fixture(scope="module")
def collapsed(planted):
    model, info, tok, seqs = planted
    states = collect_spike_states(
        model, batches_from_sequences(seqs, batch_size=3), info["step_up_blocks"], SpikeRule()
    )
    return states, collapse_summary(states, info["spike_channels"], next_norm(model, info["step_up_blocks"][0]))


def test_spike_tokens_are_first_tokens_and_delimiters(planted, collapsed):
    model, info, tok, seqs = planted
    states, summary = collapsed
    delimiters = set(info["delimiter_token_ids"])
    expected_later = sum(sum(1 for t in s[1:] if t in delimiters) for s in seqs)
    assert summary["n_spike_total"] == len(seqs) + expected_later
    assert summary["n_first_sampled"] == len(seqs)
    counts = nonfirst_spike_counts(states, tok)
    assert set(counts.token_id) == delimiters
    assert set(counts.text) == {".", "\n"}
    assert counts["count"].sum() == expected_later


def test_cosine_collapse_after_the_step_up(collapsed):
    _, summary = collapsed
    assert summary["cos_before"]["median"] < 0.8  # varied before (planted: ~0.5 for first tokens)
    assert summary["cos_after"]["min"] > 0.999  # one vector after
    assert summary["cos_after_normed_weight"]["min"] > 0.999
    # a per-vector scalar cannot change a cosine: the weight-free norm is a pure check
    assert summary["cos_after_normed_no_weight"]["mean"] == pytest.approx(summary["cos_after"]["mean"], abs=1e-6)
    assert summary["cos_other_after"]["median"] < 0.5


def test_energy_sits_on_the_spike_channels_and_the_bound_holds(collapsed):
    _, summary = collapsed
    assert summary["energy_share_spike"] > 0.99
    assert summary["energy_share_other"] < 0.05
    bound = summary["rmsnorm_bound"]
    assert bound["holds"]
    # the spike channel after RMSNorm is close to (not above) the bound: ratio 1 : -0.5 -> 2/sqrt(5)
    assert bound["spike_max_abs_no_weight"] == pytest.approx(bound["sqrt_d"] * 2 / np.sqrt(5), rel=0.01)


def test_cosine_matrices_shapes(planted, collapsed):
    model, info, _, _ = planted
    states, _ = collapsed
    mats = cosine_matrices(states, next_norm(model, info["step_up_blocks"][0]), max_tokens=5)
    assert {k: v.shape for k, v in mats.items()} == {"before": (5, 5), "after": (5, 5), "after_normed": (5, 5)}


def test_delimiters_attend_to_themselves_in_the_first_layer(planted):
    model, info, _, seqs = planted
    batch = next(batches_from_sequences(seqs, batch_size=len(seqs)))
    mask = spike_mask_at(model, batch, info["step_up_blocks"][0], SpikeRule())
    assert mask[:, 0].all()
    before = model.config._attn_implementation
    frame = delimiter_self_attention(model, batch, mask, layers=[0, 1])
    assert model.config._attn_implementation == before  # eager was only temporary
    layer0 = frame[frame.layer == 0].set_index("kind")
    assert layer0.loc["spike", "self_share_mean"] > 0.3
    assert layer0.loc["spike", "self_share_mean"] > 3 * layer0.loc["other", "self_share_mean"]


def test_pipeline_entry_claims_and_figure(planted, tmp_path):
    model, info, tok, seqs = planted
    ids = np.array([(s + list(b" filler text"))[:24] for s in seqs])
    lifecycle = Lifecycle(step_up=info["step_up_blocks"], spike_channels=info["spike_channels"])
    result = run_collapse(model, tok, ids, lifecycle, SpikeRule(), attention_prompts=4)
    claims = collapse_claims("planted", result["summary"], result["self_attention"])
    # the planted delimiters spike through self-attention alone: every norm gain is 1, so a(x) = 1 for
    # every id and the gain-alignment mechanism fails with a ratio of exactly 1
    gain = claims[-1]
    assert gain.claim.startswith("delimiter embeddings align with the first norm's gain") and gain.verdict == "fails"
    assert gain.value == pytest.approx(1.0, abs=1e-6) and gain.low == pytest.approx(1.0, abs=1e-6)
    assert len(claims) == 6 and all(c.holds for c in claims[:-1]), [c for c in claims if not c.holds]
    delimiters = claims[3]
    assert delimiters.value == 1.0 and 0.5 < delimiters.low < 1.0 and delimiters.high == 1.0  # Wilson
    assert set(result["delimiters"].text) <= {".", "\n"}
    # dropping a (pretend) BOS column changes the first tokens, not the logic
    dropped = run_collapse(model, tok, ids, lifecycle, SpikeRule(), bos_added=True, attention_prompts=2)
    assert dropped["summary"]["bos_dropped"] and dropped["summary"]["seq_len"] == 23
    assert is_delimiter_text(".\n") and not is_delimiter_text("a.")
    drawn = plot_cosine_collapse(result["matrices"], tmp_path / "collapse", "planted")
    figure_files(tmp_path / "collapse")
    # three panels: the spike tokens' cosines before, after, after the next norm; the same tokens throughout
    assert list(drawn) == ["before", "after", "after_normed"]
    for name, matrix in drawn.items():
        np.testing.assert_array_equal(matrix, result["matrices"][name])
        assert matrix.shape == (result["summary"]["n_spike_sampled"],) * 2
    off = ~np.eye(len(drawn["after"]), dtype=bool)
    assert drawn["after"][off].min() > 0.999 and np.median(drawn["before"][off]) < 0.8


def test_measure_and_report_of_a_job(planted, tmp_path):
    """measure(job) on the extraction prompts; the report's figure is the stored matrices."""
    model, info, tok, seqs = planted
    prompts = PromptSet("extraction", [np.array((s + list(b" filler text"))[:24]) for s in seqs], {"bos_added": False})
    lifecycle = Lifecycle(step_up=info["step_up_blocks"], spike_channels=info["spike_channels"])
    inputs = {"lifecycle": lifecycle, "prompts.extraction": prompts}
    job = make_job("rmsnorm_collapse", inputs, model, {"n_prompts": 8, "seq_len": 20}, model_name="planted")
    job.model.tokenizer = tok
    result = runner.measure(job)
    assert result.summary["n_prompts"] == 8 and result.summary["seq_len"] == 20
    result.save(tmp_path / "collapse")
    loaded = Collapse.load(tmp_path / "collapse")
    assert set(loaded.matrices) == {"before", "after", "after_normed", "other_after"}
    pd.testing.assert_frame_equal(loaded.delimiters, result.delimiters)
    claims = runner.claims(loaded, job)
    assert [c.verdict for c in claims] == ["holds"] * 5 + ["fails"]  # all gains 1: no gain alignment (above)
    drawn = runner.figures(loaded, job, {"": tmp_path / "planted"})[""]
    figure_files(tmp_path / "planted")
    for name, matrix in drawn.items():
        np.testing.assert_array_equal(matrix, result.matrices[name])


def test_gain_alignment_is_one_for_unit_gains_and_reads_the_norm_output_magnitude():
    from spikesink.analyses.rmsnorm_collapse.gain import gain_alignment

    x = torch.tensor([[3.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 2.0, -2.0, 0.0]])
    torch.testing.assert_close(gain_alignment(x, torch.ones(4)), torch.ones(3))
    gain = torch.tensor([2.0, 0.0, 0.0, 0.0])
    # all the energy on the one gained channel: ||g * x / rms(x)|| = 2 * sqrt(4), ||g|| = 2
    torch.testing.assert_close(gain_alignment(x, gain), torch.tensor([2.0, 1.0, 0.0]))
    # LayerNorm centres first: a constant row has no direction left
    assert gain_alignment(x[1:2], torch.ones(4), center=True).item() == 0.0


def test_delimiter_embeddings_aligned_with_the_gain_make_the_claim_hold(planted):
    """Known answer: give the planted first norm a gain that follows the delimiters' embedding
    direction (the planted key direction e_d, beside s*): their a(x) rises above the ordinary ids'."""
    import copy

    from spikesink.analyses.rmsnorm_collapse.claims import GAIN, gain_ratio_estimate
    from spikesink.analyses.rmsnorm_collapse.gain import delimiter_gain_alignment

    model, info, _, seqs = planted
    ids = np.array([(s + list(b" filler text"))[:24] for s in seqs])
    unit = delimiter_gain_alignment(model, ids, info["delimiter_token_ids"])
    assert unit["delimiter_ids"] == sorted(info["delimiter_token_ids"])
    assert not set(unit["ordinary_ids"]) & set(info["delimiter_token_ids"])
    np.testing.assert_allclose(unit["delimiter"] + unit["ordinary"], 1.0, rtol=1e-5)
    aligned = copy.deepcopy(model)
    with torch.no_grad():
        aligned.model.layers[0].input_layernorm.weight.copy_(
            1 + 8 * torch.as_tensor(info["delimiter_key_direction"]).abs()
        )
    found = delimiter_gain_alignment(aligned, ids, info["delimiter_token_ids"])
    ratio = gain_ratio_estimate(found["delimiter"], found["ordinary"])
    assert ratio.value > 1.1 and ratio.low <= ratio.value <= ratio.high
    summary = {"n_nonfirst_spike": 3, "gain_alignment": found}
    row = collapse_claims("planted", _minimal_summary() | summary)[-1]
    assert row.claim == GAIN.claim and row.verdict == "holds" and row.value == pytest.approx(ratio.value)


def _minimal_summary() -> dict:
    """A collapse summary with the fields every row reads (what run_collapse writes)."""
    stats = {"median": 0.99}
    return {
        "cos_before": {"median": 0.3},
        "cos_after": stats,
        "n_spike_sampled": 8,
        "rmsnorm_bound": {"sqrt_d": 8.0, "max_abs_no_weight": 7.0, "holds": True},
        "energy_share_spike": 0.9,
        "energy_share_spike_weighted": 0.9,
        "energy_share_other": 0.01,
        "n_tokens_total": 100,
        "n_nonfirst_spike": 0,
        "nonfirst_spike_delimiter_share": 1.0,
        "nonfirst_spike_counted": 3,
    }


def test_every_claim_yields_a_row_without_later_spike_tokens():
    claims = collapse_claims("m", _minimal_summary(), pd.DataFrame())
    assert [c.verdict for c in claims] == ["holds", "holds", "holds", "n/a", "n/a", "n/a"]
    assert all(c.ours.startswith("n/a: no token after position 0 spikes") for c in claims[3:])
    na = runner.claims(Collapse.na("no step-up block detected"), make_job("rmsnorm_collapse"))
    assert len(na) == 6 and all(c.verdict == "n/a" for c in na)


def test_the_thresholds_come_from_the_config():
    summary = _minimal_summary()
    strict = analysis_settings_claims(min_cos_after=0.999, min_energy_share=0.95)
    claims = collapse_claims("m", summary, None, strict)
    assert [c.verdict for c in claims[:3]] == ["fails", "holds", "fails"]
    assert "0.999" in claims[0].tolerance and "0.95" in claims[2].tolerance


def analysis_settings_claims(**overrides):
    from spikesink.config import analysis_settings

    return analysis_settings("rmsnorm_collapse", {"claims": overrides}).claims
