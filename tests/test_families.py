"""Every supported model type through the instrumentation layer and every analysis.

Ground truth per family: the model's own hidden states (transformers' output_hidden_states), the
identity post_residual = input + output, eager attention maps (soft-capping, sliding windows,
QK-norm, GQA, parallel residual), the FFN recomputed from the extracted weights, the position-0
map recomputed from the extracted q/k/v/o split, and a spike planted at known blocks and channels
that the extraction and the life-cycle detector must find.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import FAMILY_CONFIGS, family_model, model_type_of, tiny_model

from spikesink.analyses.amplifier.claims import amplifier_claims
from spikesink.analyses.amplifier.figure import plot_uk_norms
from spikesink.analyses.amplifier.measure import ffn_weights, position0_attention, run_amplifier, uk_norms_from_weights
from spikesink.analyses.intervention.measure import intervention_table
from spikesink.analyses.lifecycle.measure import detect_lifecycle
from spikesink.analyses.rmsnorm_collapse.claims import collapse_claims
from spikesink.analyses.rmsnorm_collapse.measure import run_collapse
from spikesink.analyses.silu_regime.claims import silu_claims
from spikesink.analyses.silu_regime.measure import run_silu_regime
from spikesink.analyses.sink_geometry.measure import sink_geometry
from spikesink.analyses.vocab_probe.measure import run_vocab_probe
from spikesink.extraction.block_stats import extract_block_stats
from spikesink.extraction.sink_stats import sink_statistics
from spikesink.instrumentation.attention import AttentionObserver
from spikesink.instrumentation.families import SUPPORTED_MODEL_TYPES
from spikesink.instrumentation.layout import NotApplicable, model_layout
from spikesink.instrumentation.spikes import SpikeRule
from spikesink.instrumentation.taps import Taps, edit_state

FAMILIES = sorted(FAMILY_CONFIGS)
EXPECTED = {  # FAMILY_CONFIGS key: (norm placement, FFN kind prefix)
    "llama": ("pre", "SwiGLU"),
    "mistral": ("pre", "SwiGLU"),
    "qwen2": ("pre", "SwiGLU"),
    "smollm3": ("pre", "SwiGLU"),
    "qwen3": ("pre", "SwiGLU"),
    "gemma": ("pre", "GeGLU"),
    "gemma2": ("sandwich", "GeGLU"),
    "gemma3_text": ("sandwich", "GeGLU"),
    "olmo2": ("post", "SwiGLU"),
    "olmo3": ("post", "SwiGLU"),
    "phi3": ("pre", "SwiGLU"),
    "phi": ("parallel", "GELU MLP"),
    "gpt2": ("pre", "GELU MLP"),
    "starcoder2": ("pre", "GELU MLP"),
    "gpt_neox": ("parallel", "GELU MLP"),
    "gpt_neo": ("pre", "GELU MLP"),
    "mixtral": ("pre", "MoE"),
    "qwen2_moe": ("pre", "MoE"),
    "qwen3_moe": ("pre", "MoE"),
    "gpt_oss": ("pre", "MoE"),
    "qwen3_next": ("pre", "MoE"),
    "qwen3_5_text": ("pre", "SwiGLU"),
    "falcon": ("parallel", "GELU MLP"),
    "falcon/40b": ("parallel", "GELU MLP"),
    "falcon/11b": ("parallel", "GELU MLP"),
    "falcon/rw": ("pre", "GELU MLP"),
    "opt": ("pre", "relu MLP"),
    "opt/350m": ("post_residual", "relu MLP"),
}
IDS = torch.randint(1, 128, (3, 12), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    return request.param, family_model(request.param, seed=1)


def test_at_least_twenty_model_types_are_covered():
    covered = {model_type_of(key) for key in FAMILIES}
    assert covered == set(SUPPORTED_MODEL_TYPES) and len(covered) >= 20


def test_layout_describes_the_family(family):
    model_type, model = family
    info = model_layout(model).describe()
    placement, ffn = EXPECTED[model_type]
    assert info["norm_placement"] == placement and info["ffn_kind"].startswith(ffn)
    assert info["n_blocks"] == 6 and info["model_type"] == model_type_of(model_type)


def all_states(model, ids):
    requests = [(b, s) for b in range(1, 7) for s in ("input", "normed_input", "raw_output", "output", "post_residual")]
    got = {}
    with Taps(model, requests, lambda b, s, t: got.__setitem__((b, s), t.float())), torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True, use_cache=False)
    return got, out.hidden_states


def test_taps_agree_with_the_models_own_hidden_states(family):
    model_type, model = family
    got, hidden = all_states(model, IDS)
    layout = model_layout(model)
    for layer in range(3):
        a, f = 2 * layer + 1, 2 * layer + 2
        torch.testing.assert_close(got[(a, "input")], hidden[layer].float(), rtol=0, atol=0)
        if layer < 2:  # transformers' last hidden state is after the final norm
            torch.testing.assert_close(got[(f, "post_residual")], hidden[layer + 1].float(), rtol=0, atol=0)
        # the definition of the states: every block adds its output to the stream it continues
        # (true post-norm: and the norm of that sum is the stream, OPT-350m)
        lv = layout.layers[layer]

        def stream(norm, total):
            return total if norm is None else layout.apply_norm(norm, total)

        torch.testing.assert_close(
            got[(a, "post_residual")],
            stream(lv.attn_residual_norm, got[(a, "input")] + got[(a, "output")]),
            rtol=1e-5,
            atol=1e-4,
        )
        torch.testing.assert_close(
            got[(f, "post_residual")],
            stream(lv.ffn_residual_norm, got[(a, "post_residual")] + got[(f, "output")]),
            rtol=1e-5,
            atol=1e-4,
        )
        ffn_reads = got[(a, "input")] if layout.norm_placement == "parallel" else got[(a, "post_residual")]
        torch.testing.assert_close(got[(f, "input")], ffn_reads, rtol=0, atol=0)
        if layout.adapter.attn_output_norm:  # sandwich / post: the output norm changes what is added
            assert not torch.allclose(got[(a, "output")], got[(a, "raw_output")])
        else:
            torch.testing.assert_close(got[(a, "output")], got[(a, "raw_output")], rtol=0, atol=0)


def eager_maps(model, ids, attention_mask=None):
    """Full eager attention maps (B, L, H, T, T) float64 (ground truth) and the valid queries (B, T)."""
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=attention_mask, output_attentions=True, use_cache=False)
    finally:
        model.set_attn_implementation(previous)
    valid = torch.ones(ids.shape, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    return torch.stack(out.attentions, dim=1).double(), valid


def eager_key0(model, ids, attention_mask=None):
    """Mean attention on key 0 over the queries that see it, from full eager maps."""
    maps, valid = eager_maps(model, ids, attention_mask)
    sees0 = (maps[..., 0] > 0) & valid[:, None, None, :]
    return ((maps[..., 0] * sees0).sum(-1) / sees0.sum(-1)).numpy()


def eager_learned_sink_share(model, ids, attention_mask=None):
    """Mean over valid queries of 1 - the sum of a query's returned attention weights: the share a
    learned sink logit took in the softmax before eager attention dropped its column (GPT-OSS)."""
    maps, valid = eager_maps(model, ids, attention_mask)
    share = (1.0 - maps.sum(-1)) * valid[:, None, None, :]
    return (share.sum(-1) / valid.sum(-1)[:, None, None]).numpy()


def test_sink_statistics_equal_eager_attention(family):
    model_type, model = family
    mask = torch.ones_like(IDS)
    mask[1, 9:] = 0  # right padding in one sample
    ids = IDS.clone()
    ids[1, 9:] = 0
    ref = eager_key0(model, ids, mask)
    softmax = model_layout(model).softmax_layers  # eager maps exist only there (Qwen3-Next: not layer 0)
    spike = torch.zeros_like(IDS, dtype=torch.bool)
    spike[:, [0, 4, 7]] = True
    got = {}
    with torch.no_grad():
        from spikesink.extraction.sink_stats import SinkStatistics

        for use_lse in (True, False):  # from the fused kernel's log-sum-exp; the chunked reference
            with SinkStatistics(model, spike_positions=spike, use_kernel_lse=use_lse) as sinks:
                model(input_ids=ids, attention_mask=mask, use_cache=False)
            got[use_lse] = sinks.result()
            np.testing.assert_allclose(got[use_lse]["key0_mass"][:, softmax], ref, atol=1e-5, rtol=0)
            linear = [i for i in range(3) if i not in softmax]  # no softmax: NaN, never 0
            assert np.isnan(got[use_lse]["key0_mass"][:, linear]).all()
            assert np.isnan(got[use_lse]["sink_ratio_layer"][linear]).all()
            learned = got[use_lse]["learned_sink_share"]
            if model_layout(model).adapter.attention_parts.sinks:  # the sink column of the softmax
                np.testing.assert_allclose(learned, eager_learned_sink_share(model, ids, mask), atol=1e-5, rtol=0)
                assert learned.std() > 1e-2 and learned.max() > 0.5  # some heads give the sink most
            else:
                assert np.isnan(learned).all() and np.isnan(got[use_lse]["learned_sink_share_layer_head"]).all()
            on_sdpa = model_layout(model).adapter.base_attention == "sdpa"
            assert dict(sinks.kernels) == {"cpu flash" if use_lse and on_sdpa else "chunked": len(softmax)}
    np.testing.assert_allclose(got[True]["spike_mass"], got[False]["spike_mass"], atol=1e-5, rtol=0)
    assert ref.std() > 1e-3  # the maps are not uniform: a wrong score would show


def test_an_edit_of_a_shared_input_norm_stays_in_its_sublayer():
    """Phi-1/2: one LayerNorm feeds attention and FFN; editing the attention's normed input must
    not change what the FFN reads (the norm's output would be both)."""
    model = family_model("phi", seed=2)
    before, _ = all_states(model, IDS)
    with edit_state(model, 1, "normed_input", torch.zeros_like):
        after, _ = all_states(model, IDS)
    torch.testing.assert_close(after[(2, "normed_input")], before[(2, "normed_input")], rtol=0, atol=0)
    assert not torch.allclose(after[(1, "raw_output")], before[(1, "raw_output")])
    torch.testing.assert_close(before[(1, "normed_input")], before[(2, "normed_input")], rtol=0, atol=0)


def test_sliding_window_and_softcap_reach_the_statistics():
    """Without the window or the cap the statistics would differ from eager: both matter here."""
    model = family_model("gemma2", seed=2)
    assert model.config.attn_logit_softcapping and model.config.sliding_window < IDS.shape[1]
    ref = eager_key0(model, IDS)
    got = sink_statistics(model, [IDS])["key0_mass"]
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    # layer 0 slides: its queries beyond the window cannot see key 0, so only the early ones count
    assert not np.allclose(ref[:, 0], ref[:, 1])


def test_extracted_weights_reproduce_the_modules(family):
    model_type, model = family
    layout = model_layout(model)
    got, _ = all_states(model, IDS)
    # attention: W_VO from the split q/k/v/o reproduces the position-0 output exactly
    assert (position0_attention(model, IDS, [1, 3, 5])["rel_error_max"] < 1e-4).all()
    if not layout.gated:
        with pytest.raises(NotApplicable, match="gated FFN"):
            layout.gated_ffn_weights(2)
        return
    routing = {}
    experts = getattr(layout.layers[0].ffn, layout.adapter.ffn_parts.experts or "", None)
    hook = contextlib.nullcontext() if experts is None else _routing_capture(experts, routing)
    with hook:
        got, _ = all_states(model, IDS)
    h = got[(2, "normed_input")].reshape(-1, layout.d_model)
    act = layout.ffn_activation(2)

    def ffn(w, x):
        return F.linear(act(F.linear(x, w.gate)) * F.linear(x, w.up), w.down)

    if experts is None:
        expected = ffn(layout.gated_ffn_weights(2), h)
    else:
        index, weight = routing["index"], routing["weight"]
        expected = torch.zeros_like(h)
        for e in range(experts.gate_up_proj.shape[0]):
            chosen = index == e
            coef = (weight * chosen).sum(-1, keepdim=True)
            expected += coef * ffn(layout.gated_ffn_weights(2, str(e)), h)
        if "shared" in layout.experts(2):
            shared = layout.layers[0].ffn
            gate = torch.sigmoid(F.linear(h, getattr(shared, layout.adapter.ffn_parts.shared_expert_gate).weight))
            expected += gate * ffn(layout.gated_ffn_weights(2, "shared"), h)
    torch.testing.assert_close(expected, got[(2, "raw_output")].reshape(-1, layout.d_model), rtol=1e-4, atol=1e-4)


@contextlib.contextmanager
def _routing_capture(experts, routing):
    def hook(_m, args, _kwargs):
        routing["index"], routing["weight"] = args[1], args[2]

    handle = experts.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


SPIKE_CHANNELS = (5, 17)


@contextlib.contextmanager
def planted_spike(model, up: int = 2, down: int = 6, magnitude: float = 2e4):
    """A spike written by block `up` at position 0 on SPIKE_CHANNELS (ratio 1 : -0.5) and
    removed by block `down`, as block-output edits (the family's 'output' state)."""
    pattern = torch.zeros(model_layout(model).d_model)
    pattern[list(SPIKE_CHANNELS)] = torch.tensor([1.0, -0.5]) * magnitude
    state = {}

    def write(h):
        h = h.clone()
        h[:, 0] += pattern.to(h.dtype)
        return h

    def cancel(h):
        h = h.clone()
        h[:, 0] -= pattern.to(h.dtype)
        return h

    with edit_state(model, up, "output", write), edit_state(model, down, "output", cancel):
        yield state


def test_every_analysis_runs_and_finds_the_planted_spike(family, tmp_path):
    model_type, model = family
    layout = model_layout(model)
    if layout.norm_placement == "post_residual":
        pytest.skip("true post-norm normalises a planted block output at once (test_a_true_post_norm_stream_...)")
    rule = SpikeRule()
    with planted_spike(model):
        stats = extract_block_stats(model, IDS.numpy(), batch_size=3, collect_sinks=True, progress=False)
        lifecycle = detect_lifecycle(stats)
        assert lifecycle.step_up == [2] and lifecycle.step_down == [6], lifecycle
        assert lifecycle.spike_channels[:2] == list(SPIKE_CHANNELS)
        assert lifecycle.plateau == (2, 5) and lifecycle.position0_spike_fraction == 1.0

        frame, summary = run_vocab_probe(
            model,
            None,
            rule,
            lifecycle,
            blocks="plateau",
            prefix="",
            later=False,
            limit=40,
            median_source="token",
            progress=False,
        )
        assert summary["n_spike_pos0"] == 40  # every id carries the planted spike at position 0

        silu, reason = run_silu_regime(model, IDS.tolist(), lifecycle, rule, progress=False)
        claims = silu_claims(model_type, silu, reason, activation=layout.activation_name)
        if layout.gated:
            assert reason is None and set(silu["block"]) == {2, 6} and silu["is_spike"].sum() == 2 * len(IDS)
        else:
            assert reason.startswith(layout.not_gated_reason) and all(c.holds is None for c in claims)

        amp = run_amplifier(model, lifecycle, IDS[:, :4], progress=False)
        amp_claims = amplifier_claims(model_type, amp["summary"])
        pos0 = amp["summary"]["position0"]
        if pos0["attention_blocks"]:
            assert pos0["rel_error_max"] < 1e-4
        else:  # a hybrid whose only attention block before the step-up is linear attention (Qwen3-Next)
            assert pos0["no_softmax_blocks"] == [1] and "n/a" in {c.verdict for c in amp_claims}
        if layout.gated:
            experts = len(layout.experts(2))
            assert len(amp["norms"]) == 3 * experts * layout.d_model and set(amp["spectra"]["block"]) == {2, 6}
        else:
            assert amp["norms"].empty and [c.holds for c in amp_claims[:3]] == [None, None, None]

        collapse = run_collapse(model, None, IDS.numpy(), lifecycle, rule, attention_prompts=2)
        col_claims = collapse_claims(model_type, collapse["summary"], collapse["self_attention"])
        assert collapse["summary"]["rmsnorm_bound"]["holds"]
        assert collapse["summary"]["no_norm_reads_state"] == (layout.norm_placement == "post")
        assert collapse["summary"]["n_first_sampled"] == len(IDS)
        assert col_claims

        geometry = sink_geometry(model, [IDS], stats.sinks["key0_mass_layer_head"], max_prompts=3, tsne_points=12)
        assert set(geometry["heads"]["role"]) == {"sink", "non_sink"}

        table = intervention_table(model, [IDS], 2, list(SPIKE_CHANNELS), rule, eps=0.3, modes=("zero",))
        # the edit removed the planted write (the planted cancel at block 6 then overshoots)
        assert table.loc[1, "max_before"] == pytest.approx(2e4, rel=1e-3) and table.loc[1, "max_after"] == 0
        assert table.loc[1, "edited_tokens"] == len(IDS)

    # Fig 3/8 draws, per (FFN block, channel), the largest ||U_k|| over a block's experts
    drawn = plot_uk_norms(amp["norms"], tmp_path / "uk", SPIKE_CHANNELS, [2], [6], model_type, reason="no gate")
    if not layout.gated:
        assert drawn == {}  # a labelled placeholder
        return
    matrix = drawn["matrix"]
    assert list(matrix.index) == [2, 4, 6] and list(matrix.columns) == list(range(layout.d_model))
    for block in (2, 4, 6):
        per_expert = [uk_norms_from_weights(*ffn_weights(model, block, True, e)).numpy() for e in layout.experts(block)]
        np.testing.assert_allclose(matrix.loc[block].to_numpy(), np.max(per_expert, axis=0), rtol=1e-5)
        if len(per_expert) > 1:  # an MoE block: not any single expert's norms
            assert not any(np.allclose(matrix.loc[block].to_numpy(), e) for e in per_expert)


def test_a_model_that_does_not_match_its_adapter_names_the_module():
    from spikesink.instrumentation.layout import LayoutError

    model = family_model("llama")
    del model.model.layers[1].post_attention_layernorm
    with pytest.raises(
        LayoutError, match=r"model\.layers\.1\.post_attention_layernorm \(FFN input norm\) does not exist"
    ):
        model_layout(model)
    model = family_model("qwen2")
    model.model.layers[2].self_attn.v_proj = torch.nn.Linear(32, 8, bias=False)
    with pytest.raises(
        LayoutError, match=r"model\.layers\.2\.self_attn: v projection is \(8, 32\), expected \(16, 32\)"
    ):
        model_layout(model).attention_weights(2)


def test_a_gpt_oss_model_without_its_sink_logits_is_refused():
    from spikesink.instrumentation.layout import LayoutError

    model = family_model("gpt_oss")
    del model.model.layers[1].self_attn.sinks
    with pytest.raises(LayoutError, match=r"model\.layers\.1\.self_attn\.sinks \(learned sink logits"):
        model_layout(model)


def test_learned_sinks_make_position_0_no_fixed_map():
    from spikesink.analyses.amplifier.claims import amplifier_claims

    model = family_model("gpt_oss", seed=1)
    check = position0_attention(model, IDS, [1, 3, 5])
    assert check.attrs["learned_sinks"] and (check["rel_error_max"] < 1e-4).all()
    summary = {"step_up": [4], "step_down": [], "spike_channels": [], "position0": {
        "attention_blocks": [1, 3], "rel_error_max": float(check["rel_error_max"].max()), "n_sequences": 3,
        "learned_sinks": True}}  # fmt: skip
    fixed_map = next(c for c in amplifier_claims("gpt_oss", summary) if "fixed linear map" in c.claim)
    assert fixed_map.verdict == "n/a" and "learned sink logit" in fixed_map.ours


def test_a_mechanism_the_statistics_do_not_reproduce_is_refused():
    from transformers import AutoConfig

    from spikesink.instrumentation.families import UnsupportedArchitectureError, adapter_for

    with pytest.raises(UnsupportedArchitectureError, match="Falcon with alibi=True: ALiBi"):
        adapter_for(AutoConfig.for_model("falcon", alibi=True))


def test_unknown_model_types_fail_at_start_up_naming_the_key(tmp_path):
    import json

    from spikesink.config import ConfigError, validate_config

    local = tmp_path / "mpt-dir"
    local.mkdir()
    (local / "config.json").write_text(json.dumps({"model_type": "mpt"}))
    config = {
        "models": {
            "r": {"source": "random", "model_type": "bloom", "seed": 0},
            "l": {"source": "local", "path": str(local)},
        }
    }
    with pytest.raises(ConfigError) as error:
        validate_config(config)  # the workflow's start-up: defaults filled, then checked
    text = str(error.value)
    assert "models.r.model_type: model_type 'bloom' has no family adapter" in text
    assert "models.l.path: model_type 'mpt' has no family adapter" in text and "Adding a model family" in text


def test_an_attention_module_with_its_own_softmax_is_observed_through_hooks():
    """GPT-Neo computes its softmax in its own `_attn` (no attention interface): hooks on q / k / v
    give the statistics (unscaled scores, the local layer's window from the module's buffer) and
    an override replaces the module's output through its out_proj."""
    from spikesink.analyses.kv_cache.measure import token_nll, windowed_nll

    model = family_model("gpt_neo", seed=2)
    assert model.config.attention_layers[1] == "local" and model.config.window_size < IDS.shape[1]
    ref = eager_key0(model, IDS)
    got = sink_statistics(model, [IDS])["key0_mass"]
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    texts = IDS[:1].numpy()
    full = token_nll(model, texts)
    torch.testing.assert_close(windowed_nll(model, texts, window=IDS.shape[1]), full, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(windowed_nll(model, texts, window=2), full)


def test_a_true_post_norm_stream_is_a_norms_output():
    """OPT-350m: LayerNorm after each residual add. A spike written into a block's output is
    normalised in that block's post-residual (|x_i| <= sqrt(d) |g|_max + |b|_max): no massive
    activation can persist in the stream, and no norm reads it (the next block reads it as is)."""
    model = family_model("opt/350m", seed=2)
    layout = model_layout(model)
    assert layout.final_norm is None and layout.norm_reading(2) is None and layout.norm_reading(6) is None
    with planted_spike(model):
        got, _ = all_states(model, IDS)
        stats = extract_block_stats(model, IDS.numpy(), batch_size=3, collect_sinks=True, progress=False)
    assert got[(2, "output")].abs().max() > 1e4
    for block in (2, 3, 4):
        norm = layout.layers[(block - 1) // 2].ffn_residual_norm if block % 2 == 0 else None
        norm = norm or layout.layers[(block - 1) // 2].attn_residual_norm
        gain, bias = layout.norm_gain(norm)
        bound = layout.d_model**0.5 * gain.abs().max() + bias.abs().max()
        assert got[(block, "post_residual")].abs().max() <= bound
    assert detect_lifecycle(stats).massive_blocks == []


def test_a_hybrids_linear_attention_layers_read_nan_with_the_reason():
    """Qwen3-Next: layer 0 is Gated DeltaNet (no softmax): its sink statistics are NaN (never 0),
    observers skip it (asking for it says why), and the residual stream runs through it as usual."""
    from spikesink.extraction.sink_stats import SinkStatistics

    model = family_model("qwen3_next")
    layout = model_layout(model)
    assert layout.softmax_layers == [1, 2] and layout.describe()["attention"]["linear_attention_layers"] == 1
    with pytest.raises(NotApplicable, match=r"linear attention \(Gated DeltaNet\): no softmax, no attention map"):
        layout.attention_weights(0)
    with pytest.raises(NotApplicable, match=r"layer\(s\) \[0\]: linear attention"):
        AttentionObserver(model, layers=[0, 1])
    got, _ = all_states(model, IDS)  # the linear mixer is a block of the stream like any other
    assert got[(1, "raw_output")].abs().max() > 0
    with torch.no_grad(), SinkStatistics(model) as sinks:
        model(input_ids=IDS, use_cache=False)
    result = sinks.result()
    assert np.isnan(result["key0_mass"][:, 0]).all() and np.isfinite(result["key0_mass"][:, 1:]).all()
    assert np.isfinite(result["sink_ratio"]) and np.isnan(result["sink_ratio_layer"][0])


def test_the_output_gate_at_token_0_and_elsewhere_equals_sigmoid_of_the_gate_rows():
    """The gate statistic from the hook on q_proj equals sigmoid(W_G n) from the split weights, at
    token 0 and averaged over the other valid tokens (right padding left out); ~0.5 at random init."""
    from spikesink.extraction.sink_stats import SinkStatistics

    model = family_model("qwen3_next", seed=1)
    layout = model_layout(model)
    mask = torch.ones_like(IDS)
    mask[1, 9:] = 0
    with torch.no_grad(), SinkStatistics(model) as sinks:
        model(input_ids=IDS, attention_mask=mask, use_cache=False)
    result = sinks.result()
    got, _ = all_states(model, IDS)
    for layer in layout.softmax_layers:
        w = layout.attention_weights(layer)
        normed = got[(2 * layer + 1, "normed_input")]  # (B, T, d)
        gate = torch.sigmoid(normed @ w.gate.T).reshape(*normed.shape[:2], w.n_heads, w.head_dim).mean(-1)
        np.testing.assert_allclose(result["output_gate_pos0"][:, layer], gate[:, 0].numpy(), atol=1e-5, rtol=0)
        valid = mask[:, 1:, None].float()
        rest = (gate[:, 1:] * valid).sum(1) / valid.sum(1)
        np.testing.assert_allclose(result["output_gate_rest"][:, layer], rest.numpy(), atol=1e-5, rtol=0)
    assert np.isnan(result["output_gate_pos0"][:, 0]).all()
    plain = tiny_model("qwen3_next", **FAMILY_CONFIGS["qwen3_next"])  # transformers' own initialisation
    with torch.no_grad(), SinkStatistics(plain) as sinks:
        plain(input_ids=IDS % 128, use_cache=False)
    near_half = sinks.result()
    for name in ("output_gate_pos0", "output_gate_rest"):
        assert np.nanmax(np.abs(near_half[name] - 0.5)) < 0.05


def test_an_output_gate_makes_position_0_no_fixed_map():
    from spikesink.analyses.amplifier.claims import amplifier_claims

    model = family_model("qwen3_next", seed=1)
    check = position0_attention(model, IDS, [1, 3, 5])
    assert list(check["block"]) == [3, 5] and check.attrs["no_softmax_blocks"] == [1]
    assert check.attrs["output_gate"] and (check["rel_error_max"] < 1e-4).all()
    summary = {"step_up": [6], "step_down": [], "spike_channels": [], "position0": {
        "attention_blocks": [3, 5], "no_softmax_blocks": [1], "rel_error_max": float(check["rel_error_max"].max()),
        "n_sequences": 3, "output_gate": True}}  # fmt: skip
    fixed_map = next(c for c in amplifier_claims("qwen3_next", summary) if "fixed linear map" in c.claim)
    assert fixed_map.verdict == "n/a" and "output gate" in fixed_map.ours
