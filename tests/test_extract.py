"""Block statistics against a brute-force computation on stored full hidden states."""

import numpy as np
import pytest
import torch
from conftest import tiny_model

from spikesink import metrics
from spikesink.extraction.block_stats import OUTPUT_MEDIAN_STRIDE, ExtractionSettings, extract_block_stats
from spikesink.instrumentation.families import UnsupportedArchitectureError
from spikesink.results import OUTPUT, RESIDUAL, load_block_stats, save_block_stats


def full_states(model, input_ids):
    """(kind, block) -> (N, T, d) float32, captured with the same module boundaries."""
    states = {}
    handles = []
    # Llama's own module names, independently of the instrumentation layer under test
    for index, layer in enumerate(model.model.layers):
        a, f = 2 * index + 1, 2 * index + 2
        handles += [
            layer.self_attn.register_forward_hook(
                lambda m, i, o, b=a: states.setdefault((OUTPUT, b), []).append(o[0].detach().clone())
            ),
            layer.post_attention_layernorm.register_forward_pre_hook(
                lambda m, i, b=a: states.setdefault((RESIDUAL, b), []).append(i[0].detach().clone())
            ),
            layer.mlp.register_forward_hook(
                lambda m, i, o, b=f: states.setdefault((OUTPUT, b), []).append(o.detach().clone())
            ),
            layer.register_forward_hook(
                lambda m, i, o, b=f: states.setdefault((RESIDUAL, b), []).append(
                    (o[0] if isinstance(o, tuple) else o).detach().clone()
                )
            ),
        ]
    with torch.no_grad():
        out = model(input_ids=torch.as_tensor(input_ids), output_hidden_states=True)
    for h in handles:
        h.remove()
    return {key: torch.cat(value).float().numpy() for key, value in states.items()}, out.hidden_states


def lower_median(flat):
    """torch.median's convention: the lower of the two middle values for an even count."""
    return np.sort(flat, axis=1)[:, (flat.shape[1] - 1) // 2]


@pytest.fixture(scope="module")
def case():
    model = tiny_model("llama", num_hidden_layers=3)
    ids = np.random.default_rng(1).integers(0, 128, size=(6, 10))
    settings = ExtractionSettings(top_k=3, median_stride=1, floor=1e-6, median_ratio=4.0)
    stats = extract_block_stats(model, ids, batch_size=4, settings=settings, progress=False)
    states, hidden_states = full_states(model, ids)
    return model, ids, settings, stats, states, hidden_states


def test_residual_hooks_match_hidden_states(case):
    model, ids, settings, stats, states, hidden_states = case
    # HF's hidden_states[l] is the residual after layer l (the last one is after the final norm)
    for layer in range(2):
        np.testing.assert_allclose(states[(RESIDUAL, 2 * layer + 2)], hidden_states[layer + 1].numpy(), rtol=1e-6)


def test_topk_median_token_max_channel_max_match_brute_force(case):
    model, ids, settings, stats, states, _ = case
    n_blocks = 2 * model.config.num_hidden_layers
    assert stats.median.shape == (2, n_blocks, 6)
    for (kind, block), h in states.items():
        a = np.abs(h)
        flat = a.reshape(len(h), -1)
        expected_top = -np.sort(-flat, axis=1)[:, :3]
        np.testing.assert_allclose(stats.topk_abs[kind, block - 1], expected_top, rtol=1e-6)
        order = np.argsort(-flat, axis=1, kind="stable")[:, :3]
        d = h.shape[-1]
        np.testing.assert_array_equal(stats.topk_position[kind, block - 1], order // d)
        np.testing.assert_array_equal(stats.topk_channel[kind, block - 1], order % d)
        np.testing.assert_allclose(
            stats.topk_value[kind, block - 1], h.reshape(len(h), -1)[np.arange(len(h))[:, None], order], rtol=1e-6
        )
        if kind == RESIDUAL:  # exact, not close: it decides the spike thresholds
            np.testing.assert_array_equal(stats.median[kind, block - 1], lower_median(flat))
        else:  # drawn only: the median of every OUTPUT_MEDIAN_STRIDE-th entry, exactly that
            np.testing.assert_array_equal(stats.median[kind, block - 1], lower_median(flat[:, ::OUTPUT_MEDIAN_STRIDE]))
        np.testing.assert_allclose(stats.token_max[kind, block - 1], a.max(-1), rtol=1e-6)
        np.testing.assert_allclose(stats.pos0_mean[kind, block - 1], h[:, 0].mean(0), rtol=1e-5, atol=1e-7)
        if kind == RESIDUAL:
            np.testing.assert_allclose(stats.channel_max[block - 1], a.max(axis=(0, 1)), rtol=1e-6)


def test_spike_token_means_follow_sticky_mask(case):
    model, ids, settings, stats, states, _ = case
    n_blocks = stats.n_blocks
    # brute force: per 4-prompt batch, a token is a spike token from the first block where its
    # residual max is massive against that prompt's median (exact here, median_stride=1)
    mask = np.zeros(ids.shape, bool)
    sums = np.zeros((2, n_blocks, model.config.hidden_size))
    counts = np.zeros(n_blocks, int)
    for block in range(1, n_blocks + 1):
        res = states[(RESIDUAL, block)]
        a = np.abs(res)
        med = lower_median(a.reshape(len(a), -1))
        mask |= metrics.is_massive(a.max(-1), med[:, None], settings.floor, settings.median_ratio)
        sums[RESIDUAL, block - 1] = res[mask].sum(0)
        sums[OUTPUT, block - 1] = states[(OUTPUT, block)][mask].sum(0)
        counts[block - 1] = mask.sum()
    assert 0 < counts.max() < ids.size, "thresholds in this test must flag some tokens, not all"
    np.testing.assert_array_equal(stats.spike_count, counts)
    expected = sums / np.maximum(counts, 1)[None, :, None]
    np.testing.assert_allclose(stats.spike_mean, expected, rtol=1e-4, atol=1e-5)


def median_cases():
    gen = torch.Generator().manual_seed(3)
    odd = torch.randn(5, 7, 9, generator=gen)  # 63 entries per sample
    even = torch.randn(4, 6, 8, generator=gen) * torch.rand(1, 1, 8, generator=gen) * 10  # 48, channel scales
    ties = torch.randint(-3, 4, (3, 10, 6), generator=gen).float()  # many equal magnitudes
    spiked = torch.randn(2, 16, 32, generator=gen)
    spiked[:, 0, 5] = 5e4
    with_nan = torch.randn(3, 4, 5, generator=gen)
    with_nan[1, 2, 3] = float("nan")
    half = (torch.randn(3, 5, 8, generator=gen) * 100).bfloat16()
    return {"odd": odd, "even": even, "ties": ties, "spiked": spiked, "nan": with_nan, "bf16": half}


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("name", ["odd", "even", "ties", "spiked", "nan", "bf16"])
def test_median_is_torch_median_exactly(name, threads):
    """The median is a selection, not an estimate: equal to torch.median (the lower middle value)
    bit for bit, NaN where a sample holds one, rows split over threads or not."""
    from spikesink.instrumentation.spikes import SpikeRule, spike_tokens, state_median

    state = median_cases()[name]
    before = state.clone()
    flat = state.float().abs().reshape(len(state), -1)
    want = flat.median(dim=1).values
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = state_median(state)
        spikes = spike_tokens(state, SpikeRule(floor=0.0, median_ratio=3.0), channel_max=True)
        valid = torch.ones(state.shape[:2], dtype=torch.bool)
        valid[0, -2:] = False  # right padding in one sample
        masked = state_median(state, valid)
    finally:
        torch.set_num_threads(previous)
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(spikes.median, want, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(spikes.token_max, state.float().abs().amax(-1), rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(spikes.channel_max, state.float().abs().amax(dim=(0, 1)), rtol=0, atol=0, equal_nan=True)
    want_masked = torch.stack([state[b][valid[b]].float().abs().median() for b in range(len(state))])
    torch.testing.assert_close(masked, want_masked, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(state.isnan(), before.isnan()) and torch.equal(state.nan_to_num(), before.nan_to_num())


def test_strided_median_is_close_to_exact():
    model = tiny_model("llama", hidden_size=64, intermediate_size=128)
    ids = np.random.default_rng(2).integers(0, 128, size=(4, 64))
    exact = extract_block_stats(model, ids, settings=ExtractionSettings(median_stride=1), progress=False)
    strided = extract_block_stats(model, ids, settings=ExtractionSettings(median_stride=7), progress=False)
    relative_error = np.abs(strided.median / exact.median - 1)
    assert relative_error.mean() < 0.03 and relative_error.max() < 0.15
    np.testing.assert_array_equal(strided.topk_abs, exact.topk_abs)


@pytest.mark.parametrize("model_type", ["llama", "mistral", "qwen2", "qwen3"])
def test_every_family_is_hooked(model_type):
    model = tiny_model(model_type, head_dim=8)
    stats = extract_block_stats(model, np.arange(20).reshape(2, 10), batch_size=2, progress=False)
    assert stats.n_blocks == 6
    assert (stats.median > 0).all() and (stats.topk_abs > 0).all()


def test_unsupported_family_fails_clearly():
    from transformers import BloomConfig, BloomForCausalLM

    model = BloomForCausalLM(BloomConfig(n_layer=1, hidden_size=16, n_head=2, vocab_size=32)).eval()
    with pytest.raises(
        UnsupportedArchitectureError, match="'bloom' has no family adapter; supported: llama.*Adding a model family"
    ):
        extract_block_stats(model, np.zeros((1, 4), dtype=int), progress=False)


def test_rejects_single_token_prompts():
    with pytest.raises(ValueError, match="seq_len >= 2"):
        extract_block_stats(tiny_model(), np.zeros((2, 1), dtype=int), progress=False)


def test_save_load_roundtrip(case, tmp_path):
    stats = case[3]
    save_block_stats(stats, tmp_path / "s.npz", tmp_path / "s.json")
    loaded = load_block_stats(tmp_path / "s.npz", tmp_path / "s.json")
    for name, array in stats.to_arrays().items():
        np.testing.assert_array_equal(getattr(loaded, name), array)
    assert loaded.meta["n_blocks"] == stats.n_blocks
    assert not list(tmp_path.glob(".*")), "atomic writes leave no temporary files behind"


def test_bfloat16_model_gives_float32_statistics():
    model = tiny_model().to(torch.bfloat16)
    stats = extract_block_stats(model, np.arange(20).reshape(2, 10), progress=False)
    assert stats.topk_abs.dtype == np.float32 and stats.spike_mean.dtype == np.float32
    assert stats.meta["model_dtype"] == "bfloat16"


def test_sinks_from_the_same_forward_match_a_standalone_pass():
    from spikesink.extraction.sink_stats import sink_statistics

    model = tiny_model("qwen3", head_dim=8)
    ids = np.random.default_rng(3).integers(0, 128, size=(4, 16))
    stats = extract_block_stats(model, ids, batch_size=2, collect_sinks=True, progress=False)
    alone = sink_statistics(model, [ids[:2], ids[2:]])
    np.testing.assert_allclose(stats.sinks["key0_mass"], alone["key0_mass"], rtol=1e-6)
    assert stats.sinks["key0_mass"].shape == (4, 3, 4)
    # position 0 is always among the spike positions, so spike mass >= key-0 mass
    assert (stats.sinks["spike_mass"] >= stats.sinks["key0_mass"] - 1e-6).all()
    plain = extract_block_stats(model, ids, batch_size=2, progress=False)
    np.testing.assert_array_equal(plain.topk_abs, stats.topk_abs)
