"""Vocabulary probe against the planted model's ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikesink.acquisition.planted import build_planted_llama, planted_tokenizer
from spikesink.analyses.vocab_probe import default_probe_blocks, probe_peaks, vocab_probe
from spikesink.instrumentation.taps import block_taps, run_decoder

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def planted():
    model, info = build_planted_llama(seed=3)
    return model, info, planted_tokenizer()


@pytest.fixture(scope="module")
def probed(planted):
    model, info, tokenizer = planted
    return vocab_probe(model, tokenizer, prefix="Some words here, then more ", batch_size=64, progress=False)


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
    fast = probe_peaks(model, ids, blocks, prefix_ids=prefix, batch_size=3, progress=False)
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
        out = probe_peaks(model, [1, 2], blocks=[4, 5], progress=False)  # layer 2's attention is the last
    finally:
        handle.remove()
    assert not called
    assert out["massive"].all()


def test_thresholds_are_parameters(planted):
    model, info, _ = planted
    out = probe_peaks(
        model, info["trigger_token_ids"][:8], blocks=[4], floor=10 * info["spike_magnitude"], progress=False
    )
    assert not out["massive"].any()


def test_bad_blocks_are_refused(planted):
    model, _, _ = planted
    with pytest.raises(ValueError):
        probe_peaks(model, [1], blocks=[0], progress=False)
    with pytest.raises(ValueError):
        probe_peaks(model, [1], blocks=[13], progress=False)


def test_pipeline_entry_claims_table_and_figure(planted, tmp_path):
    from spikesink.analyses.vocab_probe import run_vocab_probe
    from spikesink.analyses.vocab_probe_report import table2, vocab_probe_claims
    from spikesink.figures_mechanism import plot_vocab_probe

    model, info, tokenizer = planted
    lifecycle = {"plateau": [4, 9], "median_by_block": [1.0] * 12}
    frame, summary = run_vocab_probe(model, tokenizer, lifecycle, batch_size=128, progress=False)
    assert summary["blocks"] == list(range(4, 10))
    assert summary["reference_from"] == "lifecycle corpus medians"
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
    written = plot_vocab_probe(frame, summary, tmp_path / "vocab", "planted")
    assert all(p.stat().st_size > 0 for p in written)


def test_bfloat16_model_gives_float32_statistics():
    """The CUDA path runs bf16 weights; statistics must still be float32 and find the same tokens."""
    model, info = build_planted_llama(seed=3)
    model = model.to(torch.bfloat16)
    out = probe_peaks(model, list(range(256)), blocks=[4, 5, 6], batch_size=128, progress=False)
    assert out["peak"].dtype == np.float32
    assert set(np.flatnonzero(out["massive"])) == set(info["trigger_token_ids"])


def test_plateau_start_probes_the_first_plateau_blocks_only():
    from spikesink.analyses.vocab_probe import probe_blocks_from_lifecycle

    assert probe_blocks_from_lifecycle({"plateau": [24, 57]}, 60, "plateau_start") == [24, 25, 26, 27]
    assert probe_blocks_from_lifecycle({"plateau": [4, 5]}, 12, "plateau_start") == [4, 5]
    assert probe_blocks_from_lifecycle({"plateau": [24, 57]}, 60, "plateau") == list(range(24, 58))
