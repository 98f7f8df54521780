"""Quadratic amplifier: the ||U_k|| identity, planted spike channels and s*, position-0 attention."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from analysis_helpers import figure_files, make_job

from spikesink.acquisition.planted import build_planted_llama
from spikesink.analyses import runner
from spikesink.analyses.amplifier.claims import amplifier_claims
from spikesink.analyses.amplifier.figure import plot_spectra, plot_uk_norms
from spikesink.analyses.amplifier.measure import (
    attention_vo_matrix,
    block_norms,
    ffn_weights,
    position0_attention,
    run_amplifier,
    shared_direction,
    spectra_table,
    uk_matrix,
    uk_norms,
    uk_norms_from_weights,
    uk_outliers,
)
from spikesink.analyses.amplifier.result import Amplifier
from spikesink.analyses.lifecycle.result import Lifecycle
from spikesink.analyses.rmsnorm_collapse.figure import plot_cosine_collapse
from spikesink.analyses.silu_regime.claims import silu_claims
from spikesink.analyses.silu_regime.figure import plot_silu_regime
from spikesink.analyses.silu_regime.measure import run_silu_regime
from spikesink.instrumentation.spikes import SpikeRule
from spikesink.results import PromptSet

torch.set_num_threads(1)


def tiny_random(model_type="llama", seed=0):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        model_type,
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).float().eval()
    with torch.no_grad():  # non-trivial norm weights and (for qwen2) biases
        for name, param in model.named_parameters():
            if "norm" in name:
                param.copy_(1 + 0.3 * torch.randn_like(param))
            if name.endswith("bias"):
                param.copy_(0.1 * torch.randn_like(param))
    return model


@pytest.fixture(scope="module")
def planted():
    return build_planted_llama(seed=5)


@pytest.mark.parametrize("fold_norm", [True, False])
def test_uk_norm_identity_matches_naive_sum(fold_norm):
    model = tiny_random()
    gate, up, down = ffn_weights(model, 2, fold_norm=fold_norm)
    fast = uk_norms_from_weights(gate, up, down, chunk=7)  # uneven chunks on purpose
    naive = []
    for k in range(down.shape[0]):
        u = sum(down[k, i] * torch.outer(gate[i], up[i]) for i in range(gate.shape[0]))  # the definition
        naive.append(float(torch.linalg.matrix_norm(u)))
        if k < 3:
            torch.testing.assert_close(uk_matrix(gate, up, down, k), u, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fast.numpy(), naive, rtol=1e-4)


def test_uk_acts_as_the_ffn_in_the_linear_silu_limit():
    """h^T U_k h equals down(gate(h) * up(h)), i.e. the FFN with SiLU replaced by the identity."""
    model = tiny_random(seed=1)
    gate, up, down = ffn_weights(model, 4, fold_norm=False)
    h = torch.randn(5, gate.shape[1])
    ffn_linear = ((h @ gate.T) * (h @ up.T)) @ down.T
    for k in range(3):
        quad = torch.einsum("bi,ij,bj->b", h, uk_matrix(gate, up, down, k), h)
        torch.testing.assert_close(quad, ffn_linear[:, k], rtol=1e-4, atol=1e-5)


def test_planted_spike_channels_are_the_outlying_norms(planted):
    model, info = planted
    norms = uk_norms(model, progress=False)
    outliers = uk_outliers(norms, top=3)
    for block in info["step_up_blocks"] + info["step_down_blocks"]:
        top = outliers[outliers.block == block]
        assert set(top.channel[:2]) == set(info["spike_channels"])
        assert top.ratio_to_median.iloc[1] > 100
    for block in set(norms.block) - set(info["step_up_blocks"] + info["step_down_blocks"]):
        assert outliers[outliers.block == block].ratio_to_median.max() < 5


def test_shared_top_eigenvector_is_planted_s_star(planted):
    model, info = planted
    block = info["step_up_blocks"][0]
    table, spectra = spectra_table(model, block, info["spike_channels"], n_control=6)
    cos, s_hat = shared_direction(spectra, info["spike_channels"])
    assert cos.min() > 0.99
    assert abs(float(s_hat @ info["s_star"])) > 0.99
    for channel in info["spike_channels"]:
        assert spectra[channel]["top_share"] > 0.99
    controls = [c for c in spectra if c not in info["spike_channels"]]
    assert max(spectra[c]["top_share"] for c in controls) < 0.5
    assert set(table.kind) == {"spike", "control"}
    # step-down: its top eigenvector is the *output* spike direction (it reads the spike)
    _, down_spectra = spectra_table(model, info["step_down_blocks"][0], info["spike_channels"], n_control=0)
    _, v_hat = shared_direction(down_spectra, info["spike_channels"])
    assert abs(float(v_hat @ info["spike_out_direction"])) > 0.99


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_position0_attention_is_a_fixed_linear_map(model_type):
    model = tiny_random(model_type)
    ids = torch.randint(0, 64, (6, 5))
    frame = position0_attention(model, ids, [1, 3])
    assert (frame.rel_error_max < 1e-4).all()
    # and the map really is W_O W_V summed over heads with GQA: a wrong head grouping fails
    vo, _ = attention_vo_matrix(model, 0)
    attn = model.model.layers[0].self_attn
    wrong = sum(
        attn.o_proj.weight[:, h * 8 : (h + 1) * 8] @ attn.v_proj.weight[(h % 2) * 8 : (h % 2 + 1) * 8] for h in range(4)
    ).detach()
    assert not torch.allclose(vo, wrong, atol=1e-4)


def test_planted_position0_alignment(planted):
    model, info = planted
    ids = torch.tensor(info["trigger_token_ids"][:32])[:, None].repeat(1, 3)
    frame = position0_attention(model, ids, [1, 3], s_star=info["s_star"], step_up_block=info["step_up_blocks"][0])
    assert (frame.rel_error_max < 1e-4).all()
    # block 1 writes the (negated) token-specific part, orthogonal to s*; the residual keeps s*
    assert frame.loc[frame.block == 1, "abs_cos_attn_s_star_median"].item() < 0.05
    # the planted first tokens enter the step-up block at cos(., s*) = pos0_alignment
    alignment = frame.attrs["step_up_input_cos_s_star"]
    assert alignment["median"] == pytest.approx(info["pos0_alignment"], abs=0.03)
    assert alignment["min"] == pytest.approx(info["pos0_alignment"], abs=0.03)


def test_pipeline_entry_claims_and_figures(planted, tmp_path):
    model, info = planted
    lifecycle = Lifecycle(
        step_up=info["step_up_blocks"], step_down=info["step_down_blocks"], spike_channels=info["spike_channels"]
    )
    ids = torch.tensor(info["trigger_token_ids"][:16])[:, None]
    result = run_amplifier(model, lifecycle, ids, n_control=4, progress=False)
    assert abs(float(result["s_star"][info["step_up_blocks"][0]] @ info["s_star"])) > 0.99
    claims = amplifier_claims("planted", result["summary"])
    # U_k outliers, S_k dominance and shared s* in the step-up and in the step-down blocks, the fixed map, s*
    assert len(claims) == 7 and all(c.holds for c in claims), [c for c in claims if not c.holds]
    by_claim = {c.claim: c for c in claims}
    down = by_claim["S_k of spike channels has one dominant eigenvalue in the step-down blocks"]
    assert down.ours.startswith(f"block {info['step_down_blocks'][0]}:") and down.value > 100  # rank one, planted
    assert by_claim["spike channels share the top eigenvector s* in the step-down blocks"].value > 0.99
    aligned = by_claim["the position-0 input of the step-up block is aligned with s*"]
    assert aligned.low <= aligned.value <= aligned.high and aligned.value == pytest.approx(
        info["pos0_alignment"], abs=0.03
    )
    # a wrong life cycle (step-up at a random block) must fail the outlier claim
    wrong = run_amplifier(
        model, Lifecycle(step_up=[6], step_down=lifecycle.step_down, spike_channels=lifecycle.spike_channels), ids,
        n_control=4, progress=False,
    )  # fmt: skip
    assert not {c.claim: c for c in amplifier_claims("planted", wrong["summary"])}[
        "spike channels have outlying ||U_k|| in the step-up/step-down blocks"
    ].holds

    # Fig 3/8: the heat map is ||U_k|| per (FFN block, channel), the spike channels outlying in the step blocks
    drawn = plot_uk_norms(
        result["norms"], tmp_path / "uk", info["spike_channels"], info["step_up_blocks"], info["step_down_blocks"],
        "planted",
    )  # fmt: skip
    figure_files(tmp_path / "uk")
    matrix = drawn["matrix"]
    norms = result["norms"]
    assert list(matrix.index) == sorted(set(norms["block"])) == [2, 4, 6, 8, 10, 12]
    assert matrix.shape == (6, model.config.hidden_size)
    for row in norms.itertuples():
        assert matrix.loc[row.block, row.channel] == row.uk_norm
    for block in info["step_up_blocks"] + info["step_down_blocks"]:
        assert set(matrix.loc[block].nlargest(2).index) == set(info["spike_channels"])

    # Fig 4: each step block's curves are the spectra table's |lambda_i| / |lambda_1| by rank
    drawn = plot_spectra(result["spectra"], tmp_path / "spectra", model="planted")
    figure_files(tmp_path / "spectra")
    assert sorted(drawn) == sorted(info["step_up_blocks"] + info["step_down_blocks"])
    for block, curves in drawn.items():
        rows = result["spectra"][result["spectra"]["block"] == block]
        expected = rows[rows["rank"] <= 32][["channel", "kind", "rank", "abs_normalised"]].reset_index(drop=True)
        pd.testing.assert_frame_equal(curves, expected)
        spike = curves[(curves["kind"] == "spike") & (curves["rank"] == 2)]
        assert (spike["abs_normalised"] < 0.01).all()  # one dominant eigenvalue on the spike channels
        assert set(curves.loc[curves["kind"] == "spike", "channel"]) == set(info["spike_channels"])
        assert (curves.loc[curves["rank"] == 1, "abs_normalised"] == 1.0).all()


def test_the_report_draws_the_result_it_reads(planted, tmp_path):
    """measure(job) -> Amplifier -> files -> draw(result, job): the figures show the stored tables."""
    model, info = planted
    lifecycle = Lifecycle(
        step_up=info["step_up_blocks"], step_down=info["step_down_blocks"], spike_channels=info["spike_channels"]
    )
    ids = [np.array([t, 101, 102, 103, 104]) for t in info["trigger_token_ids"][:8]]
    prompts = PromptSet("extraction", ids, {"bos_added": False})
    job = make_job("amplifier", {"lifecycle": lifecycle, "prompts.extraction": prompts}, model, {"n_control": 3})
    result = runner.measure(job)
    result.save(tmp_path / "amplifier")
    loaded = type(result).load(tmp_path / "amplifier")
    assert loaded.summary["step_up"] == info["step_up_blocks"]
    pd.testing.assert_frame_equal(loaded.norms, result.norms)
    assert all(c.holds for c in runner.claims(loaded, job))
    drawn = runner.figures(loaded, job, {"uk_norms": tmp_path / "uk", "spectra": tmp_path / "spectra"})
    for stem in ("uk", "spectra"):
        figure_files(tmp_path / stem)
    expected = block_norms(loaded.norms).pivot(index="block", columns="channel", values="uk_norm")
    np.testing.assert_array_equal(drawn["uk_norms"]["matrix"].to_numpy(), expected.to_numpy())
    for block, curves in drawn["spectra"].items():
        rows = loaded.spectra[(loaded.spectra["block"] == block) & (loaded.spectra["rank"] <= 32)]
        np.testing.assert_array_equal(curves["abs_normalised"].to_numpy(), rows["abs_normalised"].to_numpy())
        assert (curves["kind"] == "control").sum() == 3 * min(32, model.config.hidden_size)


def test_a_model_without_a_spike_gets_empty_results_and_placeholder_figures(tmp_path):
    """A life cycle with no step-up block (random model): every entry point runs, nothing is claimed."""
    model = tiny_random()
    lifecycle = Lifecycle()
    ids = torch.randint(0, 64, (4, 6))
    extraction = PromptSet("extraction", list(ids.numpy()), {"bos_added": False})
    sentences = PromptSet("sentences", list(ids.numpy()), {})
    inputs = {"lifecycle": lifecycle, "prompts.extraction": extraction, "prompts.sentences": sentences}
    for name in ("amplifier", "silu_regime", "rmsnorm_collapse"):
        job = make_job(name, inputs, model, model_name="tiny")
        result = runner.measure(job)
        claims = runner.claims(result, job)
        # no spike: every claim is an explicit n/a row with the reason, never a zero or a silent gap
        assert claims and all(c.holds is None and c.ours.startswith("n/a: no step-up") for c in claims), name
        paths = {f.name: tmp_path / f"{name}_{f.name}" for f in job.analysis.figures}
        drawn = runner.figures(result, job, paths)
        for path in paths.values():
            figure_files(path)
        if name == "amplifier":
            assert result.not_applicable is None and result.spectra.empty and result.summary["step_up"] == []
            # the U_k norms need no life cycle: drawn; the spectra are a placeholder, nothing drawn
            assert drawn["spectra"] == {} and drawn["uk_norms"]["matrix"].shape == (2, 32)
        else:
            assert result.not_applicable.startswith("no step-up") and drawn[""] == {}
    silu, reason = run_silu_regime(model, ids.tolist(), lifecycle, SpikeRule(), progress=False)
    assert silu.empty and reason == "no step-up or step-down block was detected"
    assert all(c.holds is None for c in silu_claims("tiny", silu, reason))
    assert plot_silu_regime(pd.DataFrame(), tmp_path / "a") == {}
    assert plot_spectra(pd.DataFrame(), tmp_path / "b") == {}
    assert plot_cosine_collapse({}, tmp_path / "c") == {}
    for stem in "abc":
        figure_files(tmp_path / stem)


def amplifier_summary(step_down=(6,), down_dominance=1.5, down_cos=0.3) -> dict:
    """A run_amplifier summary with one step-up block (4) and the given step-down blocks."""
    spectra = {
        4: {
            "top_over_second": {7: 50.0, 23: 40.0},
            "control_top_over_second_median": 1.1,
            "top_vector_abs_cos_min": 0.99,
        }
    }
    for block in step_down:
        spectra[block] = {
            "top_over_second": {7: down_dominance, 23: 30.0},
            "control_top_over_second_median": 1.1,
            "top_vector_abs_cos_min": down_cos,
        }
    ratios = {ch: {2: 1.0, 4: 80.0, **{b: 60.0 for b in step_down}} for ch in (7, 23)}
    return {
        "step_up": [4],
        "step_down": list(step_down),
        "spike_channels": [7, 23],
        "uk_ratio_to_median": ratios,
        "blocks": spectra,
        "sharing_channels": [7, 23],
        "sharing_from": "spike channels",
        "position0": {
            "attention_blocks": [1, 3],
            "rel_error_max": 1e-7,
            "n_sequences": 4,
            "random_abs_cos_scale": 0.1,
            "step_up_input_cos_s_star": {"abs_median": 0.7, "abs_values": [0.6, 0.7, 0.7, 0.8]},
        },
    }


def test_the_step_down_blocks_have_rows_of_their_own():
    """Fig. 4 in the step-down blocks: every spike channel's S_k must be dominated by one eigenvalue
    there too; a step-down block where one channel's is not fails that row only."""
    claims = {c.claim: c for c in amplifier_claims("m", amplifier_summary())}
    up = claims["S_k of spike channels has one dominant eigenvalue in the step-up blocks"]
    down = claims["S_k of spike channels has one dominant eigenvalue in the step-down blocks"]
    assert up.verdict == "holds" and up.value == 40.0  # the weakest spike channel decides
    assert down.verdict == "fails" and down.value == 1.5 and "block 6" in down.ours
    assert claims["spike channels share the top eigenvector s* in the step-down blocks"].verdict == "fails"
    assert claims["spike channels share the top eigenvector s* in the step-up blocks"].verdict == "holds"
    aligned = claims["the position-0 input of the step-up block is aligned with s*"]
    assert aligned.verdict == "holds" and aligned.low >= 0.6 and aligned.high <= 0.8  # bootstrap over 4 tokens
    # without a step-down block the step-down rows stay, n/a with the reason
    claims = {c.claim: c for c in amplifier_claims("m", amplifier_summary(step_down=()))}
    assert len(claims) == 7
    for name in (
        "S_k of spike channels has one dominant eigenvalue in the step-down blocks",
        "spike channels share the top eigenvector s* in the step-down blocks",
    ):
        assert claims[name].verdict == "n/a" and claims[name].ours == "n/a: no step-down block was detected"


def test_every_amplifier_claim_yields_a_row():
    summary = amplifier_summary()
    del summary["position0"]
    summary["uk_ratio_to_median"] = {}
    rows = amplifier_claims("m", summary)
    assert len(rows) == 7
    assert [
        c.verdict for c in rows if c.claim.startswith(("spike channels have", "attention at", "the position-0"))
    ] == ["n/a"] * 3
    # the thresholds are the config's
    strict = make_job("amplifier", settings={"claims": {"min_dominance": 60.0}})
    rows = runner.claims(Amplifier(summary=amplifier_summary()), strict)
    assert rows[1].verdict == "fails" and "60" in rows[1].tolerance
