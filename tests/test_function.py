"""What spikes and sinks do: implicit parameters, the attention path, INT8 activations and a
sliding-window KV cache, each against an answer known by construction."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import pytest
import torch
from analysis_helpers import figure_files, make_job
from conftest import family_model

from spikesink.analyses import runner
from spikesink.analyses.act_scales.figure import plot_act_scales
from spikesink.analyses.act_scales.measure import activation_scales, scale_table
from spikesink.analyses.attention_path.claims import attention_path_claims
from spikesink.analyses.attention_path.figure import plot_attention_path
from spikesink.analyses.attention_path.measure import plateau_attention_blocks, strip_attention_input
from spikesink.analyses.implicit_params.claims import implicit_claims
from spikesink.analyses.implicit_params.figure import plot_implicit_params
from spikesink.analyses.implicit_params.measure import (
    MODES,
    calibrate,
    implicit_parameter_table,
    replace_massive,
    site_blocks,
)
from spikesink.analyses.kv_cache.claims import kv_cache_claims
from spikesink.analyses.kv_cache.figure import plot_kv_cache
from spikesink.analyses.kv_cache.measure import check_setting, kv_cache_study, windowed_attention, windowed_nll
from spikesink.analyses.lifecycle.result import Lifecycle
from spikesink.analyses.quantization.claims import quantization_claims
from spikesink.analyses.quantization.figure import plot_quantization
from spikesink.analyses.quantization.measure import fake_quantize, quantization_table
from spikesink.extraction.perplexity import HEAD_ROWS, perplexity, token_nll
from spikesink.instrumentation.layout import model_layout
from spikesink.instrumentation.spikes import SpikeRule
from spikesink.instrumentation.taps import capture, edit_state
from spikesink.results import PromptSet

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
        table = implicit_parameter_table(model, [IDS.numpy()], sites, MODES, rule)
    assert list(table["mode"]) == ["none", "own_mean", "zero", "ordinary_mean"]
    assert table.loc[1, "ratio"] == pytest.approx(1.0, abs=1e-6)
    claims = {c.claim: c for c in implicit_claims("m", table)}
    assert claims["setting the massive activations to their own mean keeps perplexity"].holds
    assert claims["massive activations are nearly constant across prompts"].holds
    assert all(c.holds is None for c in implicit_claims("m", table, reason="no FFN block carrying a spike"))


def test_sites_skip_attention_blocks_with_a_reason():
    sites, skipped = site_blocks(Lifecycle(plateau=(3, 9), step_up=[3, 4]))
    assert sites == {4: ["step-up"]} and "block 3" in skipped[0] and "attention block" in skipped[0]


def test_attention_input_edit_reaches_only_token_0s_normed_attention_input():
    model = family_model("llama")
    layout = model_layout(model)
    rule = SpikeRule()
    with constant_spike(model):
        plain = capture(model, [(3, "input"), (3, "normed_input"), (4, "normed_input")], stop=False, input_ids=IDS)
        with strip_attention_input(model, [3], CHANNELS, rule) as log:
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
    assert plateau_attention_blocks(Lifecycle(plateau=(4, 10), step_up=[4])) == [5, 7, 9]


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


def test_act_scales_read_flattened_linear_inputs_of_a_shared_expert():
    """Qwen2-MoE's shared expert sees the tokens flattened, (B * T, d): the spike mask follows them
    (the every-family workflow run found this crash)."""
    model = family_model("qwen2_moe")
    mask = np.zeros(IDS.shape, dtype=bool)
    mask[:, 0] = True
    result = activation_scales(model, IDS.numpy(), mask, batch_size=2)
    shared = [name for name in result["scales"] if "shared_expert." in name]
    assert shared, "no shared-expert Linear was read"
    for name in shared:
        scales = result["scales"][name]
        assert np.all(scales["non_spike"] <= scales["all"]) and np.isfinite(scales["all"]).all()
        assert result["info"][name]["spike_token_max"] > 0 and result["info"][name]["other_token_max"] > 0


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


@pytest.mark.parametrize("model_type", ["llama", "gemma2"])
def test_token_nll_is_the_same_whatever_rows_the_lm_head_gets_per_call(model_type):
    """One row at a time (fewer rows than the batch: one position per call), a chunk that does not
    divide the 15 positions, and all 60 rows at once against the explicit log-softmax of the full
    logits (Gemma 2: with its final logit soft-capping)."""
    model = family_model(model_type)
    with torch.no_grad():
        logits = model(IDS).logits.float()
    expected = -torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, IDS[:, 1:, None])[..., 0]
    for rows in (1, 4 * 7, 4 * 15, HEAD_ROWS):
        torch.testing.assert_close(token_nll(model, IDS, rows=rows), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model_type", ["llama", "gemma2", "mistral", "gpt_neox", "gpt_oss"])
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
    from spikesink.config import ConfigError, validate_config

    def config(**sections):
        return {"models": {"m": {"source": "planted", "planted": {}}}, **sections}

    with pytest.raises(ConfigError, match=r"analyses.kv_cache.n_tokens: 100 < 2 x analyses.kv_cache.window = 256"):
        validate_config(config(analyses={"kv_cache": {"window": 128, "n_tokens": 100}}))
    with pytest.raises(
        ConfigError, match=r"analyses.implicit_params.calibration_prompts: 99 > extraction.n_prompts = 64"
    ):
        validate_config(config(extraction={"n_prompts": 64}, analyses={"implicit_params": {"calibration_prompts": 99}}))


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


# ------------------------------------------------------------------------------------------
# measure(job) -> result -> claims, tables and figures, as the workflow's jobs run them
# ------------------------------------------------------------------------------------------

PLANTED_LIFECYCLE = Lifecycle(plateau=(2, 5), step_up=[2], spike_channels=CHANNELS, massive_blocks=[2, 3, 4, 5])


def prompt_set(name, ids):
    return PromptSet(name, list(np.asarray(ids)), {"bos_added": False})


def test_implicit_params_job_and_its_figure(tmp_path):
    model = family_model("qwen2")
    inputs = {
        "lifecycle": PLANTED_LIFECYCLE,
        "prompts.extraction": prompt_set("extraction", IDS),
        "prompts.heldout": prompt_set("heldout", IDS[:2]),
    }
    job = make_job("implicit_params", inputs, model, {"calibration_prompts": 4})
    with constant_spike(model):
        result = runner.measure(job)
    table = result.table
    assert list(table["mode"]) == ["none", "own_mean", "zero", "ordinary_mean"] and set(table["block"]) == {0, 2}
    assert result.sites["sites"][0]["first_mean"] == SPIKE.tolist() and result.sites["skipped"] == []
    ((name, (frame, caption)),) = runner.tables(result, job).items()
    assert name == "" and frame is table and "held-out perplexity" in caption
    claims = {c.claim: c for c in runner.claims(result, job)}
    own = claims["setting the massive activations to their own mean keeps perplexity"]
    # an exact constant: own mean leaves every held-out prompt's loss as it was, a zero-width interval at 1
    assert own.holds and own.value == pytest.approx(1.0, abs=1e-6) and own.low == pytest.approx(own.high, abs=1e-6)
    assert "95% interval over 2 held-out prompts" in own.tolerance
    assert list(result.per_prompt.columns) == ["block", "mode", "prompt", "n_tokens", "nll_sum"]
    assert len(result.per_prompt) == len(table) * 2
    drawn = runner.figures(result, job, {"": tmp_path / "implicit"})[""]
    figure_files(tmp_path / "implicit")
    # one bar per (edit, site): the perplexity ratio of the table's row
    assert list(drawn) == ["own_mean", "zero", "ordinary_mean"]
    for mode, bars in drawn.items():
        rows = table[table["mode"] == mode].set_index("block")["ratio"]
        pd.testing.assert_series_equal(bars, rows)
    assert drawn["own_mean"].loc[2] == pytest.approx(1.0, abs=1e-6)
    # the figure of a model without a site is a labelled placeholder, nothing drawn
    assert plot_implicit_params(table, tmp_path / "none", reason="no FFN block carrying a spike") == {}
    figure_files(tmp_path / "none")
    na_job = make_job("implicit_params", {**inputs, "lifecycle": Lifecycle(plateau=(3, 5), step_up=[3])})
    na = runner.measure(na_job)
    assert na.not_applicable.startswith("no FFN block carrying a spike was detected (block 3 (first massive block)")
    assert all(c.holds is None for c in runner.claims(na, na_job))


def test_attention_path_job_and_its_figure(tmp_path):
    model = family_model("llama")
    inputs = {"lifecycle": PLANTED_LIFECYCLE, "prompts.heldout": prompt_set("heldout", IDS)}
    job = make_job("attention_path", inputs, model)
    with constant_spike(model):
        result = runner.measure(job)
    table = result.table
    assert list(table["condition"]) == ["none", "spike channels", "control channels"]
    assert set(table["blocks"]) == {"3-5"} and table.loc[1, "channels"] == "3 11"
    assert table.loc[1, "edited_tokens"] == 2 * len(IDS)  # token 0 in each of the two edited blocks
    (claim,) = runner.claims(result, job)
    assert claim.holds is not None and claim.ours.startswith("blocks 3-5:")
    assert claim.low <= claim.value <= claim.high and "over 4 held-out prompts" in claim.ours
    assert list(result.per_prompt["condition"].unique()) == list(table["condition"])
    drawn = runner.figures(result, job, {"": tmp_path / "path"})[""]
    figure_files(tmp_path / "path")
    for column in ("sink_ratio_edited_layers", "key0_mass_edited_layers", "perplexity"):
        pd.testing.assert_series_equal(drawn[column], table.set_index("condition")[column])
    assert plot_attention_path(table, tmp_path / "na", reason="no plateau") == {}
    no_plateau = make_job("attention_path", {**inputs, "lifecycle": Lifecycle(step_up=[2], spike_channels=CHANNELS)})
    assert runner.measure(no_plateau).not_applicable == "no attention block after a step-up block inside the plateau"


def test_act_scales_and_quantization_jobs_and_their_figures(tmp_path):
    from spikesink.extraction.block_stats import extract_block_stats

    model = family_model("llama")
    with constant_spike(model):
        stats = extract_block_stats(model, IDS.numpy(), batch_size=2, progress=False)
        inputs = {"block_stats": stats, "lifecycle": PLANTED_LIFECYCLE, "prompts.extraction": prompt_set("e", IDS)}
        scales_job = make_job("act_scales", inputs, model, {"calibration_prompts": 3})
        scales = runner.measure(scales_job)
    summary = scales.summary
    assert set(scales.scales) == set(summary["module"]) == set(scales.non_spike)
    assert (summary["max_scale"] >= summary["max_scale_non_spike"]).all()
    # the extraction's spike tokens are exactly the planted position 0: the same scales as a direct run
    # on the first 3 prompts with that mask
    first = np.zeros((3, IDS.shape[1]), dtype=bool)
    first[:, 0] = True
    with constant_spike(model):
        direct = activation_scales(model, IDS[:3].numpy(), first, batch_size=2)
    for name, values in direct["scales"].items():
        np.testing.assert_array_equal(scales.scales[name], values["all"])
        np.testing.assert_array_equal(scales.non_spike[name], values["non_spike"])
    np.testing.assert_allclose(summary["max_scale"], np.maximum(summary["spike_token_max"], summary["other_token_max"]))
    assert (summary["max_from_spike_tokens"] == (summary["spike_token_max"] > summary["other_token_max"])).all()
    scales.save(tmp_path / "act_scales")
    loaded = type(scales).load(tmp_path / "act_scales")
    for name, values in scales.scales.items():
        np.testing.assert_array_equal(loaded.scales[name], values)
    drawn = runner.figures(loaded, scales_job, {"": tmp_path / "scales"})[""]
    figure_files(tmp_path / "scales")
    assert set(drawn) == {"q / k / v input", "o input", "gate / up input", "down input"}
    for label, roles in (("q / k / v input", {"q", "k", "v"}), ("down input", {"down"})):
        rows = summary[summary["role"].isin(roles)]
        pd.testing.assert_series_equal(drawn[label], rows.groupby("block")["max_scale"].max(), check_names=False)

    job = make_job("quantization", {"act_scales": loaded, "lifecycle": PLANTED_LIFECYCLE}, model)
    job.inputs["prompts.heldout"] = prompt_set("heldout", IDS[:2])
    with constant_spike(model):
        result = runner.measure(job)
    table = result.table
    assert list(table["condition"]) == ["fp", "per_tensor", "per_tensor_keep", "per_token"]
    assert table.loc[0, "perplexity"] == pytest.approx(perplexity_with_spike(model, IDS[:2]), rel=1e-6)
    claims = runner.claims(result, job)
    assert [c.claim for c in claims] == [
        "keeping the spike tokens in full precision recovers per-tensor INT8 activations",
        "the step-up block's down-projection input has the largest activation scale",
    ]
    assert runner.tables(result, job)[""][0] is table
    drawn = runner.figures(result, job, {"": tmp_path / "int8"})[""]
    figure_files(tmp_path / "int8")
    pd.testing.assert_series_equal(drawn["perplexity"], table.set_index("condition")["perplexity"])
    assert plot_quantization(table.iloc[:2], tmp_path / "two")["perplexity"].index.tolist() == ["fp", "per_tensor"]
    assert plot_act_scales(summary, tmp_path / "plain", step_up=[2])["down input"].index.tolist() == [2, 4, 6]


def perplexity_with_spike(model, ids):
    with constant_spike(model):
        return perplexity(model, [np.asarray(ids)])


def test_kv_cache_job_and_its_figure(tmp_path):
    model = family_model("llama")
    texts = torch.randint(1, 128, (1, 40), generator=torch.Generator().manual_seed(1)).numpy()
    settings = {"window": 8, "keep": [0, 1], "n_tokens": 40, "bin": 8}
    job = make_job("kv_cache", {"prompts.long": prompt_set("long", texts)}, model, settings)
    result = runner.measure(job)
    summary, curve = kv_cache_study(model, texts, window=8, keep=(0, 1), bin_size=8)
    pd.testing.assert_frame_equal(result.summary, summary)
    pd.testing.assert_frame_equal(result.curve, curve)
    assert [c.claim for c in runner.claims(result, job)] == [c.claim for c in kv_cache_claims("m", summary)]
    assert runner.tables(result, job)[""][0] is result.summary
    drawn = runner.figures(result, job, {"": tmp_path / "kv"})[""]
    figure_files(tmp_path / "kv")
    # one line per condition: the result's perplexity per position bin
    assert list(drawn) == ["full", "window 8 + 0 kept", "window 8 + 1 kept"]
    for condition, line in drawn.items():
        rows = curve[curve["condition"] == condition]
        np.testing.assert_array_equal(line.index, rows["position"])
        np.testing.assert_array_equal(line.to_numpy(), rows["perplexity"].to_numpy())
    assert list(plot_kv_cache(curve.iloc[:5], summary, tmp_path / "one")) == ["full"]
    with pytest.raises(ValueError, match="shorter than 2 x kv_cache.window"):
        runner.measure(make_job("kv_cache", {"prompts.long": prompt_set("long", texts)}, model, {"window": 32}))
