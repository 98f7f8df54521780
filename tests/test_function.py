"""What spikes and sinks do: implicit parameters, the attention path, INT8 activations and a
sliding-window KV cache, each against an answer known by construction."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from conftest import family_model

from spikesink.analyses.attention_path import attention_path_claims, plateau_attention_blocks, strip_attention_input
from spikesink.analyses.implicit_params import (
    calibrate,
    implicit_claims,
    implicit_parameter_table,
    replace_massive,
    site_blocks,
)
from spikesink.analyses.kv_cache import check_setting, kv_cache_claims, kv_cache_study, windowed_attention, windowed_nll
from spikesink.extraction.perplexity import perplexity, token_nll
from spikesink.analyses.quantization import (
    activation_scales,
    fake_quantize,
    quantization_claims,
    quantization_table,
    scale_table,
)
from spikesink.instrumentation.layout import model_layout
from spikesink.instrumentation.spikes import SpikeRule
from spikesink.instrumentation.taps import capture, edit_state

IDS = torch.randint(1, 128, (4, 16), generator=torch.Generator().manual_seed(3))
CHANNELS = [3, 11]
SPIKE = torch.tensor([2e4, -1e4])


@contextlib.contextmanager
def constant_spike(model, block=2, channels=CHANNELS, values=SPIKE):
    """Position 0's post-residual at `block` holds exactly `values` on `channels`: a spike that is
    an exact constant across prompts (the implicit-parameter hypothesis, true by construction)."""

    def edit(h):
        h = h.clone()
        h[:, 0, channels] = values.to(h.dtype)
        return h

    with edit_state(model, block, "post_residual", edit):
        yield


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits


def test_own_mean_of_an_exact_constant_spike_leaves_the_logits_unchanged():
    model = family_model("llama")
    rule = SpikeRule()
    with constant_spike(model):
        (site,) = calibrate(model, IDS.numpy(), {2: ["step-up"]}, CHANNELS, rule)
        np.testing.assert_array_equal(site.first_mean, SPIKE.numpy())
        assert site.spread == 0.0 and site.n_first == len(IDS) and site.n_other == 0
        reference = logits(model, IDS)
        with replace_massive(model, site, "own_mean", rule) as log:
            same = logits(model, IDS)
        with replace_massive(model, site, "zero", rule):
            zeroed = logits(model, IDS)
    assert log.edited_tokens == len(IDS)
    torch.testing.assert_close(same, reference, rtol=0, atol=1e-5)
    assert (zeroed - reference).abs().max() > 1e-2  # zero is a different model


def test_implicit_parameter_table_and_claims():
    model = family_model("qwen2")
    rule = SpikeRule()
    with constant_spike(model):
        sites = calibrate(model, IDS.numpy(), {2: ["step-up"]}, CHANNELS, rule)
        table = implicit_parameter_table(model, [IDS.numpy()], sites, rule=rule)
    assert list(table["mode"]) == ["none", "own_mean", "zero", "ordinary_mean"]
    assert table.loc[1, "ratio"] == pytest.approx(1.0, abs=1e-6)
    claims = {c.claim: c for c in implicit_claims("m", table)}
    assert claims["setting the massive activations to their own mean keeps perplexity"].holds
    assert claims["massive activations are nearly constant across prompts"].holds
    assert all(c.holds is None for c in implicit_claims("m", table, reason="no FFN block carrying a spike"))


def test_sites_skip_attention_blocks_with_a_reason():
    sites, skipped = site_blocks({"plateau": (3, 9), "step_up": [3, 4]})
    assert sites == {4: ["step-up"]} and "block 3" in skipped[0] and "attention block" in skipped[0]


def test_attention_input_edit_reaches_only_token_0s_normed_attention_input():
    model = family_model("llama")
    layout = model_layout(model)
    rule = SpikeRule()
    with constant_spike(model):
        plain = capture(model, [(3, "input"), (3, "normed_input"), (4, "normed_input")], stop=False, input_ids=IDS)
        with strip_attention_input(model, [3], CHANNELS, rule=rule) as log:
            edited = capture(model, [(3, "input"), (3, "normed_input"), (4, "normed_input")], stop=False, input_ids=IDS)
    assert log["edited_tokens"] == len(IDS)
    torch.testing.assert_close(edited[(3, "input")], plain[(3, "input")], rtol=0, atol=0)  # residual untouched
    torch.testing.assert_close(edited[(3, "normed_input")][:, 1:], plain[(3, "normed_input")][:, 1:], rtol=0, atol=0)
    h = plain[(3, "input")][:, 0].clone()
    ordinary = plain[(3, "input")][:, 1:, CHANNELS].reshape(-1, len(CHANNELS)).mean(0)
    h[:, CHANNELS] = ordinary
    expected = layout.apply_norm(layout.layers[1].attn_input_norm, h)
    torch.testing.assert_close(edited[(3, "normed_input")][:, 0], expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(edited[(3, "normed_input")][:, 0], plain[(3, "normed_input")][:, 0])


def test_attention_path_claim_needs_a_drop_and_a_quiet_control():
    import pandas as pd

    def table(spike, control):
        return pd.DataFrame(
            [
                {
                    "condition": c,
                    "blocks": "5-9",
                    "perplexity": 10.0,
                    "sink_ratio_edited_layers": v,
                    "key0_mass_edited_layers": v / 100,
                }
                for c, v in (("none", 60.0), ("spike channels", spike), ("control channels", control))
            ]
        )

    assert attention_path_claims("m", table(10.0, 58.0))[0].holds
    assert not attention_path_claims("m", table(10.0, 20.0))[0].holds  # the control moved too: not specific
    assert not attention_path_claims("m", table(55.0, 60.0))[0].holds
    assert attention_path_claims("m", None, "no plateau")[0].holds is None
    assert plateau_attention_blocks({"plateau": (4, 10), "step_up": [4]}) == [5, 7, 9]


def test_int8_with_the_true_absmax_round_trips_a_constant():
    x = torch.full((3, 5), 3.7)
    np.testing.assert_array_equal(fake_quantize(x, torch.tensor(3.7 / 127)).numpy(), x.numpy())
    y = torch.randn(64, 32)
    scale = y.abs().max() / 127
    assert (fake_quantize(y, scale) - y).abs().max() <= scale / 2 + 1e-7
    assert fake_quantize(y * 10, scale).abs().max() <= 127 * scale + 1e-6  # clipped


def test_act_scale_of_a_planted_channel_equals_the_planted_value():
    model = family_model("llama")

    def plant(normed):  # the attention input of layer 1 (block 3): channel 5 of token 0 is exactly 777
        normed = normed.clone()
        normed[:, 0, 5] = 777.0
        return normed

    mask = np.zeros(IDS.shape, dtype=bool)
    mask[:, 0] = True
    with edit_state(model, 3, "normed_input", plant):
        result = activation_scales(model, IDS.numpy(), mask, batch_size=2)
    for role in ("q_proj", "k_proj", "v_proj"):
        scales = result["scales"][f"model.layers.1.self_attn.{role}"]
        assert scales["all"][5] == 777.0 and scales["non_spike"][5] < 777.0
    table = scale_table(result, spike_channels=[5]).set_index("module")
    row = table.loc["model.layers.1.self_attn.q_proj"]
    assert row["max_channel"] == 5 and row["max_from_spike_tokens"] and row["max_channel_is_spike_channel"]
    assert not table.loc[
        "model.layers.1.self_attn.o_proj", "max_channel_is_spike_channel"
    ]  # o reads heads, not d_model


def test_quantization_table_conditions():
    model = family_model("llama")
    scales = activation_scales(model, IDS.numpy(), np.zeros(IDS.shape, bool))["scales"]
    table = quantization_table(model, [IDS.numpy()], scales).set_index("condition")
    assert table.loc["fp", "perplexity"] == pytest.approx(perplexity(model, [IDS.numpy()]), rel=1e-6)
    assert table.loc["per_token", "perplexity"] == pytest.approx(table.loc["fp", "perplexity"], rel=0.05)
    with pytest.raises(ValueError, match="no activation scales"):
        quantization_table(model, [IDS.numpy()], {"x": scales[next(iter(scales))]})


def brute_window(query, key, value, scaling, window, keep):
    """Full masked softmax (T x T): the ground truth of windowed_attention."""
    batch, heads, length, _ = query.shape
    groups = heads // key.shape[1]
    k = key.repeat_interleave(groups, dim=1)
    v = value.repeat_interleave(groups, dim=1)
    scores = (query * scaling) @ k.transpose(-1, -2)
    i, j = torch.arange(length)[:, None], torch.arange(length)[None, :]
    scores = scores.masked_fill(~((j <= i) & ((i - j < window) | (j < keep))), float("-inf"))
    return (torch.softmax(scores, -1) @ v).transpose(1, 2)


@pytest.mark.parametrize("window,keep", [(3, 0), (3, 1), (5, 2), (40, 0)])
def test_windowed_attention_equals_the_masked_softmax(window, keep):
    g = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(2, 4, 21, 8, generator=g),
        torch.randn(2, 2, 21, 8, generator=g),
        torch.randn(2, 2, 21, 8, generator=g),
    )
    got = windowed_attention(q, k, v, 0.35, window, keep, chunk=4)
    torch.testing.assert_close(got, brute_window(q, k, v, 0.35, window, keep), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model_type", ["llama", "gemma2", "mistral", "gpt_neox"])
def test_a_window_as_long_as_the_text_is_full_attention(model_type):
    model = family_model(model_type)
    full = token_nll(model, IDS)
    torch.testing.assert_close(windowed_nll(model, IDS.numpy(), window=IDS.shape[1]), full, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(windowed_nll(model, IDS.numpy(), window=3), full, atol=1e-3)


def test_kv_cache_study_and_its_bad_input():
    model = family_model("llama")
    texts = torch.randint(1, 128, (1, 40), generator=torch.Generator().manual_seed(1)).numpy()
    summary, curve = kv_cache_study(model, texts, window=8, keep=(0, 1), bin_size=8)
    assert list(summary["condition"]) == ["full", "window 8 + 0 kept", "window 8 + 1 kept"]
    assert set(curve["condition"]) == set(summary["condition"]) and len(curve) == 3 * 5
    assert kv_cache_claims("m", summary)
    with pytest.raises(ValueError, match="kv_cache.window must be >= 1"):
        check_setting(40, 0, (0,))
    with pytest.raises(ValueError, match=r"kv_cache.n_tokens = 40 is shorter than 2 x kv_cache.window = 64"):
        check_setting(40, 32, (0,))
    with pytest.raises(ValueError, match=r"kv_cache.keep must lie in \[0, window\)"):
        check_setting(40, 8, (8,))
    with pytest.raises(ValueError, match="exceeds the model's 32 positions"):
        check_setting(40, 8, (0,), max_positions=32)


def test_function_config_errors_name_the_key():
    from spikesink.config import ConfigError, check_config

    with pytest.raises(ConfigError, match=r"kv_cache.n_tokens: 100 < 2 x kv_cache.window = 256"):
        check_config({"models": {}, "kv_cache": {"window": 128, "n_tokens": 100}})
    with pytest.raises(ConfigError, match=r"implicit_params.calibration_prompts: 99 > extraction.n_prompts = 64"):
        check_config({"models": {}, "extraction": {"n_prompts": 64}, "implicit_params": {"calibration_prompts": 99}})


def test_quantization_claims_read_n_a_when_int8_costs_nothing():
    import pandas as pd

    table = pd.DataFrame(
        {
            "condition": ["fp", "per_tensor", "per_tensor_keep", "per_token"],
            "perplexity": [10.0, 10.01, 10.0, 10.0],
            "kept_fp_share": [0, 0, 0.01, 0],
        }
    )
    scales = pd.DataFrame({"module": ["a"], "role": ["down"], "block": [4], "max_scale": [5.0]})
    claims = quantization_claims("m", table, scales, step_up=[4])
    assert claims[0].holds is None and "costs less than 1%" in claims[0].ours and claims[1].holds
    table.loc[1, "perplexity"] = 20.0
    assert quantization_claims("m", table, scales, step_up=[4])[0].holds


def test_keeping_most_tokens_in_full_precision_is_not_an_outlier_split():
    import pandas as pd

    scales = pd.DataFrame({"module": ["a"], "role": ["down"], "block": [4], "max_scale": [5.0]})
    # Gemma 3's pattern: every token carries a massive channel, so every token would clip
    table = pd.DataFrame(
        {
            "condition": ["fp", "per_tensor", "per_tensor_keep", "per_token"],
            "perplexity": [54.2, 70.8, 54.2, 55.6],
            "kept_fp_share": [0, 0, 1.0, 0],
        }
    )
    claim = quantization_claims("m", table, scales, step_up=[4])[0]
    assert not claim.holds and "not an outlier split: 100% of tokens would clip" in claim.ours
    table.loc[2, "kept_fp_share"] = 0.005  # a few spike tokens: the split the claim means
    assert quantization_claims("m", table, scales, step_up=[4])[0].holds
