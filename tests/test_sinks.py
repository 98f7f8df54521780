"""Sink statistics from the routed attention function vs eager attention maps (ground truth)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from analysis_helpers import figure_files
from conftest import tiny_config
from transformers import LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM

from spikesink import metrics
from spikesink.extraction.sink_stats import (
    SinkStatistics,
    attention_masses,
    sink_statistics,
    summarise_sinks,
)
from spikesink.instrumentation.attention import ROUTED, AttentionRoutingError, KernelLSE

torch.set_num_threads(1)

FAMILIES = {
    "llama": LlamaForCausalLM,
    "qwen2": Qwen2ForCausalLM,
    "qwen3": Qwen3ForCausalLM,
    "mistral": MistralForCausalLM,
}


def tiny_model(family: str, seed: int = 0, **overrides):
    """A random tiny decoder with GQA (4 query heads share 2 key/value heads)."""
    settings = dict(vocab_size=97)
    if family in ("qwen3", "mistral"):
        settings["head_dim"] = 8
    settings.update(overrides)
    torch.manual_seed(seed)
    model = FAMILIES[family](tiny_config(family, **settings)).eval()
    with torch.no_grad():
        # random (non-unit) norm gains, so that e.g. Qwen3's q/k RMSNorm changes the scores and
        # an attention function that saw un-normalised q, k would disagree with eager
        for name, param in model.named_parameters():
            if "q_norm" in name or "k_norm" in name:
                param.copy_(2 * torch.rand_like(param) + 2.0)  # Qwen3 normalises q, k: sharpen via the gain
            elif "norm" in name:
                param.copy_(torch.rand_like(param) + 0.5)
            elif "q_proj" in name or "k_proj" in name:
                param.mul_(25.0)  # sharp attention (the 0.02 init gives almost uniform maps)
            elif param.dim() == 2:
                param.mul_(4.0)
    model.set_attn_implementation("sdpa")
    return model


def eager_reference(model, input_ids, attention_mask=None, spike=None):
    """key-0 and spike mass from full eager attention maps (what we avoid materialising)."""
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True, use_cache=False)
    finally:
        model.set_attn_implementation("sdpa")
    maps = torch.stack(out.attentions, dim=1).double()  # (B, L, H, T, T)
    batch, _, _, seq, _ = maps.shape
    valid = torch.ones(batch, seq, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    sees0 = (maps[..., 0] > 0) & valid[:, None, None, :]
    key0 = (maps[..., 0] * sees0).sum(-1) / sees0.sum(-1)
    spike_mass = None
    if spike is not None:
        per_query = (maps * spike[:, None, None, None, :].double()).sum(-1)
        w = valid[:, None, None, :].double()
        spike_mass = (per_query * w).sum(-1) / w.sum(-1)
    return key0.numpy(), None if spike_mass is None else spike_mass.numpy(), out.logits


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_matches_eager_attention_maps(family):
    model = tiny_model(family, seed=1)
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 97, (2, 23), generator=gen)
    spike = torch.rand(2, 23, generator=gen) < 0.3
    ref_key0, ref_spike, _ = eager_reference(model, ids, spike=spike)
    # a small chunk budget forces several uneven query chunks (2*4*23*5 elements -> 5 queries)
    with torch.no_grad(), SinkStatistics(model, max_chunk_elements=2 * 4 * 23 * 5) as sinks:
        sinks.set_spike_positions(spike)
        model(input_ids=ids)
    result = sinks.result()
    assert result["key0_mass"].dtype == np.float32
    assert result["key0_mass"].shape == (2, 3, 4)
    np.testing.assert_allclose(result["key0_mass"], ref_key0, atol=1e-5, rtol=0)
    np.testing.assert_allclose(result["spike_mass"], ref_spike, atol=1e-5, rtol=0)
    # the test can fail: heads differ by far more than the tolerance (not near-uniform maps)
    assert ref_key0.std() > 0.03


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_logits_identical_to_plain_sdpa(family):
    model = tiny_model(family, seed=3)
    ids = torch.randint(0, 97, (3, 17), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        with SinkStatistics(model) as sinks:
            sinks.set_spike_positions(torch.zeros(3, 17, dtype=torch.bool))
            routed = model(input_ids=ids).logits
    assert torch.equal(plain, routed)
    assert model.config._attn_implementation == "sdpa"


def test_sliding_window_masks_key0_for_late_queries():
    model = tiny_model("mistral", seed=5, sliding_window=6)
    ids = torch.randint(0, 97, (2, 20), generator=torch.Generator().manual_seed(6))
    ref_key0, _, ref_logits = eager_reference(model, ids)
    with torch.no_grad(), SinkStatistics(model, max_chunk_elements=500) as sinks:
        logits = model(input_ids=ids).logits
    np.testing.assert_allclose(sinks.result()["key0_mass"], ref_key0, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)


def test_right_padding_counts_only_real_queries():
    model = tiny_model("llama", seed=7)
    gen = torch.Generator().manual_seed(8)
    ids = torch.randint(0, 97, (2, 15), generator=gen)
    mask = torch.ones(2, 15, dtype=torch.long)
    mask[1, 9:] = 0
    spike = torch.rand(2, 15, generator=gen) < 0.4
    ref_key0, ref_spike, _ = eager_reference(model, ids, attention_mask=mask, spike=spike)
    with torch.no_grad(), SinkStatistics(model, spike_positions=spike) as sinks:
        model(input_ids=ids, attention_mask=mask)
    result = sinks.result()
    np.testing.assert_allclose(result["key0_mass"], ref_key0, atol=1e-5, rtol=0)
    np.testing.assert_allclose(result["spike_mass"], ref_spike, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(result["n_queries"], [15, 9])
    # the short sample on its own gives the same numbers as inside the padded batch
    alone = sink_statistics(model, [ids[1:, :9]])
    np.testing.assert_allclose(alone["key0_mass"][0], result["key0_mass"][1], atol=1e-5)


def test_left_padding_is_refused():
    model = tiny_model("llama")
    ids = torch.randint(0, 97, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, :3] = 0
    with pytest.raises(ValueError, match="left padding"):
        with torch.no_grad(), SinkStatistics(model):
            model(input_ids=ids, attention_mask=mask)
    assert model.config._attn_implementation == "sdpa"


def test_short_sequences_are_refused():
    model = tiny_model("qwen2")
    with pytest.raises(ValueError, match="at least 2 tokens"):
        with torch.no_grad(), SinkStatistics(model):
            model(input_ids=torch.tensor([[5]]))


def test_restores_previous_implementation_also_on_error():
    model = tiny_model("llama")
    model.set_attn_implementation("eager")
    with pytest.raises(KeyError):
        with SinkStatistics(model):
            assert model.config._attn_implementation == ROUTED["eager"]  # eager stays the base
            raise KeyError("boom")
    assert model.config._attn_implementation == "eager"
    # nested observers on one model share the routing; the outer exit restores
    with SinkStatistics(model) as outer:
        with SinkStatistics(model) as inner:
            with torch.no_grad():
                model(input_ids=torch.randint(0, 97, (1, 6)))
        assert model.config._attn_implementation == ROUTED["eager"]
        with torch.no_grad():
            model(input_ids=torch.randint(0, 97, (1, 6)))
    assert model.config._attn_implementation == "eager"
    assert outer.n_forwards == 2 and inner.n_forwards == 1


def test_layer_that_bypasses_the_interface_fails_loudly():
    model = tiny_model("llama")
    # layer 1 keeps its own config that still says "sdpa": set_attn_implementation cannot
    # reach it, so its attention never goes through our function
    rogue = copy.copy(model.config)
    rogue._attn_implementation_internal = "sdpa"
    model.model.layers[1].self_attn.config = rogue
    with pytest.raises(AttentionRoutingError, match=r"layer\(s\) \[1\]"):
        with torch.no_grad(), SinkStatistics(model):
            model(input_ids=torch.randint(0, 97, (1, 6)))
    assert model.config._attn_implementation == "sdpa"


def test_result_before_any_forward_raises():
    model = tiny_model("llama")
    with SinkStatistics(model) as sinks:
        pass
    with pytest.raises(RuntimeError, match="no forward"):
        sinks.result()


def test_bf16_model_gives_float32_statistics_close_to_float32_model():
    model = tiny_model("qwen3", seed=9)
    ids = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(10))
    full = sink_statistics(model, [ids])
    half = sink_statistics(model.to(torch.bfloat16), [ids])
    assert half["key0_mass"].dtype == np.float32
    np.testing.assert_allclose(half["key0_mass"], full["key0_mass"], atol=0.05)


def dense_masses(q, k, scaling, allowed, spike):
    """Reference: the whole softmax in float64."""
    groups = q.shape[1] // k.shape[1]
    kk = k.double().repeat_interleave(groups, dim=1)
    scores = (q.double() @ kk.transpose(-1, -2)) * scaling
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    probs = scores.softmax(-1)
    return probs[..., 0].mean(-1), (probs * spike[:, None, None, :].double()).sum(-1).mean(-1)


@pytest.mark.parametrize("max_chunk_elements", [1, 7 * 6 * 19, 1 << 22])
def test_attention_masses_against_dense_softmax(max_chunk_elements):
    gen = torch.Generator().manual_seed(11)
    q = torch.randn(2, 6, 19, 8, generator=gen) * 2
    k = torch.randn(2, 3, 19, 8, generator=gen) * 2
    k[:, :, 0] *= 3  # a key that stands out, as a sink key does
    spike = torch.rand(2, 19, generator=gen) < 0.2
    causal = torch.ones(19, 19, dtype=torch.bool).tril().expand(2, 19, 19)
    ref0, ref_spike = dense_masses(q, k, 0.3, causal, spike)
    got = attention_masses(q, k, 0.3, None, spike, max_chunk_elements=max_chunk_elements)
    np.testing.assert_allclose(got.key0.numpy(), ref0.numpy(), atol=1e-5)
    np.testing.assert_allclose(got.spike.numpy(), ref_spike.numpy(), atol=1e-5)
    # the same causal mask given explicitly, as a boolean and as an additive float mask
    for mask in (
        causal[:, None],
        torch.zeros(2, 1, 19, 19).masked_fill(~causal[:, None], torch.finfo(torch.float32).min),
    ):
        again = attention_masses(q, k, 0.3, mask, spike, max_chunk_elements=max_chunk_elements)
        np.testing.assert_allclose(again.key0.numpy(), ref0.numpy(), atol=1e-5)


def test_bidirectional_mask_uses_all_keys():
    gen = torch.Generator().manual_seed(12)
    q, k = torch.randn(1, 2, 9, 4, generator=gen), torch.randn(1, 2, 9, 4, generator=gen)
    full = torch.ones(1, 9, 9, dtype=torch.bool)
    ref0, _ = dense_masses(q, k, 0.5, full, torch.zeros(1, 9, dtype=torch.bool))
    got = attention_masses(q, k, 0.5, full[:, None], max_chunk_elements=2 * 9 * 2)
    np.testing.assert_allclose(got.key0.numpy(), ref0.numpy(), atol=1e-6)


def test_attention_masses_input_errors():
    q = torch.randn(1, 4, 5, 8)
    with pytest.raises(ValueError, match="multiple"):
        attention_masses(q, torch.randn(1, 3, 5, 8), 1.0)
    with pytest.raises(ValueError, match="use_cache=False"):
        attention_masses(q, torch.randn(1, 2, 7, 8), 1.0)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        attention_masses(q, torch.randn(1, 2, 5, 8), 1.0, spike_keys=torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="sliding window"):
        attention_masses(q, torch.randn(1, 2, 5, 8), 1.0, sliding_window=3)
    biased = torch.randn(1, 1, 5, 5)
    with pytest.raises(ValueError, match="non-zero bias"):
        attention_masses(q, torch.randn(1, 2, 5, 8), 1.0, biased)


def test_summarise_sinks_on_planted_masses():
    mass = np.full((4, 3, 2), 0.1, dtype=np.float32)
    mass[:, 1, 0] = 0.9  # one head of one layer sinks on every sample
    mass[0, 2, 1] = 0.31  # and one more on one sample only
    summary = summarise_sinks(mass)
    assert summary["sink_ratio"] == pytest.approx(100 * 5 / 24)
    assert summary["sink_ratio"] == pytest.approx(metrics.sink_ratio(mass, 0.3))  # the config default eps
    np.testing.assert_allclose(summary["sink_ratio_layer"], [0, 50, 12.5])
    np.testing.assert_allclose(summary["sink_ratio_layer_head"][1], [100, 0])
    assert summary["key0_mass_layer_head"][1, 0] == pytest.approx(0.9)
    assert summarise_sinks(mass, eps=0.95)["sink_ratio"] == 0.0


def test_sink_figures_draw_the_statistics(tmp_path):
    from spikesink.analyses.sinks.figure import plot_key0_heatmap, plot_sink_vs_spike

    rng = np.random.default_rng(0)
    mass = rng.uniform(0, 1, size=(6, 4)).astype(np.float32)
    drawn = plot_key0_heatmap(mass, tmp_path / "heat.pdf", highlight={"sink": (2, 1), "non_sink": (3, 0)})
    np.testing.assert_array_equal(drawn["key0_mass"], mass)
    summary = summarise_sinks(rng.uniform(0, 1, size=(5, 6, 4)))
    top1 = np.geomspace(1, 1e4, 12)
    depth = plot_sink_vs_spike(
        summary["sink_ratio_layer"], summary["key0_mass_layer"], top1, tmp_path / "depth", step_up=[4], step_down=[11]
    )
    for stem in ("heat", "depth"):
        figure_files(tmp_path / stem)
    # the spike per block 1..2L above, each layer's sinks at its attention block 2l+1 below
    assert list(depth["top1_by_block"].index) == list(range(1, 13))
    np.testing.assert_array_equal(depth["top1_by_block"], top1)
    for curve, values in (("sink_ratio_by_layer", "sink_ratio_layer"), ("key0_mass_by_layer", "key0_mass_layer")):
        assert list(depth[curve].index) == [1, 3, 5, 7, 9, 11]
        np.testing.assert_allclose(depth[curve], summary[values])
    with pytest.raises(ValueError, match="2L"):
        plot_sink_vs_spike(summary["sink_ratio_layer"], summary["key0_mass_layer"], np.ones(6), tmp_path / "bad")


def test_spike_positions_may_come_from_a_callable_per_layer():
    """extract.py knows spike tokens only as the forward goes: a callable is asked per layer."""
    model = tiny_model("llama", seed=13)
    gen = torch.Generator().manual_seed(14)
    ids = torch.randint(0, 97, (2, 11), generator=gen)
    spike = torch.rand(2, 11, generator=gen) < 0.3
    _, ref_spike, _ = eager_reference(model, ids, spike=spike)
    asked = []

    def running_mask(layer):
        asked.append(layer)
        return None if layer == 0 else spike  # nothing known yet at the first layer

    with torch.no_grad(), SinkStatistics(model, spike_positions=running_mask) as sinks:
        model(input_ids=ids)
    got = sinks.result()["spike_mass"]
    assert asked == [0, 1, 2]
    assert np.isnan(got[:, 0]).all()
    np.testing.assert_allclose(got[:, 1:], ref_spike[:, 1:], atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------------
# Masses from the fused kernel's log-sum-exp vs the chunked reference pass
# --------------------------------------------------------------------------------------------


def both_ways(model, ids, attention_mask=None, spike=None):
    """(LSE result, chunked result, kernels used by the LSE run) of one forward each."""
    results = []
    for use in (True, False):
        with torch.no_grad(), SinkStatistics(model, spike_positions=spike, use_kernel_lse=use) as sinks:
            model(input_ids=ids, attention_mask=attention_mask, use_cache=False)
        results.append((sinks.result(), dict(sinks.kernels)))
    (fast, kernels), (slow, reference_kernels) = results
    assert reference_kernels == {"chunked": model.config.num_hidden_layers}
    return fast, slow, kernels


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("padded", [False, True])
def test_kernel_lse_equals_chunked_reference(family, padded):
    model = tiny_model(family, seed=15, sliding_window=6) if family == "mistral" else tiny_model(family, seed=15)
    gen = torch.Generator().manual_seed(16)
    ids = torch.randint(0, 97, (3, 21), generator=gen)
    spike = torch.rand(3, 21, generator=gen) < 0.2
    mask = None
    if padded:
        mask = torch.ones(3, 21, dtype=torch.long)
        mask[2, 13:] = 0
    fast, slow, kernels = both_ways(model, ids, mask, spike)
    assert kernels == {"cpu flash": 3}  # every layer from the kernel's LSE, none chunked
    np.testing.assert_allclose(fast["key0_mass"], slow["key0_mass"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(fast["spike_mass"], slow["spike_mass"], atol=1e-5, rtol=0)
    ref_key0, ref_spike, _ = eager_reference(model, ids, mask, spike)
    np.testing.assert_allclose(fast["key0_mass"], ref_key0, atol=1e-5, rtol=0)
    np.testing.assert_allclose(fast["spike_mass"], ref_spike, atol=1e-5, rtol=0)


def test_math_backend_has_no_lse_and_falls_back():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = tiny_model("llama", seed=17)
    ids = torch.randint(0, 97, (2, 13), generator=torch.Generator().manual_seed(18))
    with sdpa_kernel(SDPBackend.MATH):
        plain = model(input_ids=ids).logits
        fast, slow, kernels = both_ways(model, ids)
        with SinkStatistics(model):
            routed = model(input_ids=ids).logits
    assert kernels == {"chunked": 3}
    np.testing.assert_array_equal(fast["key0_mass"], slow["key0_mass"])
    assert torch.equal(plain, routed)


def test_masses_from_lse_against_dense_softmax():
    """attention_masses with a log-sum-exp (computed densely here) against the float64 softmax."""
    gen = torch.Generator().manual_seed(19)
    q = torch.randn(2, 6, 19, 8, generator=gen) * 2
    k = torch.randn(2, 3, 19, 8, generator=gen) * 2
    k[:, :, 0] *= 3
    spike = torch.rand(2, 19, generator=gen) < 0.2
    causal = torch.ones(19, 19, dtype=torch.bool).tril().expand(2, 19, 19)
    ref0, ref_spike = dense_masses(q, k, 0.3, causal, spike)
    scores = (q @ k.repeat_interleave(2, dim=1).transpose(-1, -2)) * 0.3
    lse = scores.masked_fill(~causal[:, None], float("-inf")).logsumexp(-1)
    kernel = KernelLSE(lse, 0.3, "dense")
    for chunk in (1, 50, 1 << 20):
        got = attention_masses(q, k, 0.3, None, spike, kernel_lse=kernel, max_chunk_elements=chunk)
        np.testing.assert_allclose(got.key0.numpy(), ref0.numpy(), atol=1e-5)
        np.testing.assert_allclose(got.spike.numpy(), ref_spike.numpy(), atol=1e-5)
    again = attention_masses(q, k, 0.3, causal[:, None], spike, kernel_lse=kernel)
    np.testing.assert_allclose(again.key0.numpy(), ref0.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="soft-capping"):
        attention_masses(q, k, 0.3, None, kernel_lse=kernel, softcap=30.0)
    with pytest.raises(ValueError, match="log-sum-exp of shape"):
        attention_masses(q, k, 0.3, None, kernel_lse=KernelLSE(lse[:, :3], 0.3, "dense"))


# --------------------------------------------------------------------------------------------
# The CUDA kernels' wrappers and the dispatch, on CPU: fake aten ops that compute what the real
# ones return (log-sum-exp layouts and paddings included) and record what they were given
# --------------------------------------------------------------------------------------------


def math_attention(q, k, v, bias, is_causal, scale):
    """(out, lse) of softmax(scale * q k^T + bias) v, GQA by repeating key/value heads."""
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    scores = (q @ k.transpose(-1, -2)) * (scale if scale is not None else q.shape[-1] ** -0.5)
    if is_causal:
        scores = scores.masked_fill(torch.ones(scores.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
    if bias is not None:
        scores = scores + bias
    return scores.softmax(-1) @ v, scores.logsumexp(-1)


class FakeAten:
    """Stands in for torch.ops.aten: the CUDA sdpa ops as torch documents their outputs."""

    def __init__(self, choice=None, lse_factor=1.0):
        self.choice, self.lse_factor, self.calls = choice, lse_factor, []

    def _fused_sdp_choice(self, *args, **kwargs):
        return self.choice if self.choice is not None else torch.ops.aten._fused_sdp_choice(*args, **kwargs)

    def _scaled_dot_product_flash_attention(self, q, k, v, dropout_p, is_causal, return_debug_mask, *, scale):
        assert q.shape[-1] % 8 == 0, "flash needs the head dim padded to a multiple of 8"
        self.calls.append(("flash", q.shape, scale))
        out, lse = math_attention(q, k, v, None, is_causal, scale)
        return out, lse * self.lse_factor, None, None, 0, 0, None, None, None

    def _scaled_dot_product_efficient_attention(self, q, k, v, bias, compute_lse, dropout_p, is_causal, *, scale):
        assert compute_lse and (bias is None or bias.dtype == q.dtype)
        if bias is not None:
            assert bias.shape == (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
            assert all(stride % 8 == 0 for stride in bias.stride()[:-1] if stride), "bias rows aligned to 8"
        self.calls.append(("efficient", q.shape, scale))
        out, lse = math_attention(q, k, v, bias, is_causal, scale)
        padded = torch.full((*lse.shape[:-1], -(-lse.shape[-1] // 32) * 32), 123.0)  # padded to 32 queries
        padded[..., : lse.shape[-1]] = lse * self.lse_factor
        return out, padded, None, None

    def _scaled_dot_product_cudnn_attention(self, q, k, v, bias, compute_lse, dropout_p, is_causal, dbg, *, scale):
        assert bias is None or bias.min() >= -65504.0  # cuDNN gets a finite "minus infinity"
        self.calls.append(("cudnn", q.shape, scale))
        out, lse = math_attention(q, k, v, bias, is_causal, scale)
        return out, lse[..., None] * self.lse_factor, None, None, 0, 0, None, None, None


@pytest.mark.parametrize("kernel", ["_cuda_flash", "_cuda_efficient", "_cuda_cudnn"])
@pytest.mark.parametrize("masked", [False, True])
def test_cuda_kernel_wrappers_prepare_inputs_as_torch_sdpa_does(monkeypatch, kernel, masked):
    from spikesink.instrumentation import attention

    fake = FakeAten()
    monkeypatch.setattr(attention, "_aten", fake)
    gen = torch.Generator().manual_seed(20)
    q, k, v = (torch.randn(2, 4, 19, 12, generator=gen) for _ in range(3))  # head dim 12: flash pads to 16
    mask = None
    if masked:
        mask = torch.ones(19, 19, dtype=torch.bool).tril().expand(2, 1, 19, 19).clone()
        mask[1, :, :, 15:] = False  # right padding
        if kernel == "_cuda_flash":  # torch's sdpa never picks flash attention with a mask
            with pytest.raises(ValueError, match="no attention mask"):
                attention._cuda_flash(q, k, v, mask, False, None)
            return
    out, lse = getattr(attention, kernel)(q, k, v, mask, not masked, None)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=not masked)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    assert lse.shape == (2, 4, 19)  # padding and trailing dims gone
    _, want_lse = math_attention(q, k, v, attention._additive(mask, q.dtype), not masked, None)
    torch.testing.assert_close(lse, want_lse, atol=1e-5, rtol=1e-5)
    assert fake.calls[0][2] is None or fake.calls[0][2] == pytest.approx(12**-0.5)  # scale of the unpadded head


def test_dispatch_follows_the_backend_torch_would_choose(monkeypatch):
    """With a fake 'efficient' choice the observer gets that kernel's LSE; a kernel whose LSE is
    wrong (log2 units) is caught by the one-time check and the chunked pass takes over."""
    from spikesink.instrumentation import attention

    model = tiny_model("qwen2", seed=21)
    ids = torch.randint(0, 97, (2, 17), generator=torch.Generator().manual_seed(22))
    mask = torch.ones(2, 17, dtype=torch.long)
    mask[1, 12:] = 0  # a mask: transformers repeats the key/value heads, as efficient attention needs
    _, slow, _ = both_ways(model, ids, mask)
    for factor, expected in ((1.0, "cuda efficient"), (1 / np.log(2), "chunked")):
        fake = FakeAten(choice=2, lse_factor=factor)
        monkeypatch.setattr(attention, "_aten", fake)
        monkeypatch.setattr(attention, "_LSE_CHECKED", {})
        monkeypatch.setitem(attention.LSE_KERNELS, ("cpu", 2), ("cuda efficient", attention._cuda_efficient))
        with torch.no_grad(), SinkStatistics(model) as sinks:
            model(input_ids=ids, attention_mask=mask, use_cache=False)
            model(input_ids=ids, attention_mask=mask, use_cache=False)
        assert dict(sinks.kernels) == {expected: 6}
        np.testing.assert_allclose(sinks.result()["key0_mass"][:2], slow["key0_mass"], atol=1e-5, rtol=0)
        # the wrong kernel ran once (checked, rejected); afterwards plain sdpa runs instead of it
        assert len(fake.calls) == (6 if expected != "chunked" else 1)
