"""Sink-key geometry: head choice, captured q/k vs eager maps, spectra and gaps on planted data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from analysis_helpers import figure_files, make_job
from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

from spikesink.analyses import runner
from spikesink.analyses.sink_geometry.figure import plot_tsne
from spikesink.analyses.sink_geometry.measure import (
    HeadChoice,
    QKCapture,
    choose_heads,
    collect_qk,
    middle_third,
    query_key_gap,
    sink_geometry,
    spectrum,
    tsne_table,
)
from spikesink.analyses.sink_geometry.result import SinkGeometry
from spikesink.extraction.sink_stats import sink_statistics
from spikesink.results import PromptSet, SinkStats

torch.set_num_threads(1)


def tiny_model(family="llama", seed=0):
    config_cls, model_cls = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen3": (Qwen3Config, Qwen3ForCausalLM)}[family]
    torch.manual_seed(seed)
    config = config_cls(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=128,
    )  # fmt: skip
    model = model_cls(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "q_norm" in name or "k_norm" in name:
                param.copy_(2 * torch.rand_like(param) + 2.0)
            elif "norm" in name:
                param.copy_(torch.rand_like(param) + 0.5)
            elif "q_proj" in name or "k_proj" in name:
                param.mul_(25.0)
    model.set_attn_implementation("sdpa")
    return model


def test_middle_third_is_never_empty():
    assert list(middle_third(30)) == list(range(10, 20))
    assert list(middle_third(4)) == [1, 2]
    assert list(middle_third(1)) == [0]
    assert list(middle_third(2)) == [0, 1]


def test_choose_heads_looks_only_at_the_middle_third():
    mass = np.full((9, 4), 0.5)
    mass[0, 0] = 0.99  # outside the middle third: ignored
    mass[8, 1] = 0.0
    mass[4, 2] = 0.9
    mass[5, 3] = 0.05
    heads = choose_heads(mass)
    assert (heads["sink"].layer, heads["sink"].head) == (4, 2)
    assert (heads["non_sink"].layer, heads["non_sink"].head) == (5, 3)
    assert heads["sink"].key0_mass == pytest.approx(0.9)


def test_spectrum_on_planted_subspaces():
    rng = np.random.default_rng(0)
    direction = rng.normal(size=16)
    rank_one = rng.uniform(1, 2, size=(200, 1)) * direction + 1e-3 * rng.normal(size=(200, 16))
    s = spectrum(rank_one)
    assert s["top1_share"] > 0.999 and s["effective_rank"] < 1.1
    plane = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 16))
    s = spectrum(plane, center=True)
    assert s["top1_share"] < 0.99 and s["top2_share"] > 0.999 and 1.3 < s["effective_rank"] < 2.01
    isotropic = spectrum(rng.normal(size=(2000, 8)), center=True)
    assert isotropic["effective_rank"] > 7.5 and isotropic["top1_share"] < 0.2
    with pytest.raises(ValueError):
        spectrum(np.ones((1, 4)))


def test_query_key_gap_on_planted_heads():
    rng = np.random.default_rng(1)
    prompts, seq, dim = 5, 12, 8
    sink_dir = np.eye(dim)[0]
    keys = rng.normal(size=(prompts, seq, dim))
    keys[:, 0] = 3 * sink_dir
    # a sink head: queries point at the sink key
    queries = 2 * sink_dir + 0.1 * rng.normal(size=(prompts, seq, dim))
    gap = query_key_gap(queries, keys)
    assert gap["cos_gap"] > 0.8 and gap["share_closer_to_sink"] > 0.95 and gap["dist_gap"] > 0
    assert gap["n_queries"] == prompts * (seq - 1)
    # a content head: each query is its own key, far from the sink direction
    queries = keys.copy()
    queries[..., 0] = 0
    keys2 = keys.copy()
    keys2[:, 1:, 0] = 0
    gap = query_key_gap(queries, keys2)
    assert gap["cos_gap"] < 0 and gap["share_closer_to_sink"] < 0.1


def test_captured_vectors_reproduce_eager_attention_maps():
    """The captured q, k are post-norm, post-RoPE and GQA-mapped: they give the eager softmax."""
    model = tiny_model("qwen3", seed=2)
    ids = torch.randint(0, 97, (3, 14), generator=torch.Generator().manual_seed(3))
    heads = {"sink": HeadChoice("sink", 1, 3, 0.0), "non_sink": HeadChoice("non_sink", 2, 0, 0.0)}
    captured = collect_qk(model, [ids[:2], ids[2:]], heads, max_prompts=3)
    model.set_attn_implementation("eager")
    with torch.no_grad():
        maps = model(input_ids=ids, output_attentions=True, use_cache=False).attentions
    model.set_attn_implementation("sdpa")
    scaling = model.model.layers[0].self_attn.scaling
    causal = np.tril(np.ones((14, 14), dtype=bool))
    for role, choice in heads.items():
        q, k = captured[role]["query"], captured[role]["key"]
        assert q.shape == k.shape == (3, 14, 8)
        scores = np.where(causal, np.einsum("ptd,psd->pts", q, k) * scaling, -np.inf)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        np.testing.assert_allclose(probs, maps[choice.layer][:, choice.head].numpy(), atol=1e-5)


def test_capture_is_bounded_and_observes_only_chosen_layers():
    model = tiny_model()
    heads = {"sink": HeadChoice("sink", 1, 0, 0.0), "non_sink": HeadChoice("non_sink", 1, 2, 0.0)}
    batches = [torch.randint(0, 97, (4, 10)) for _ in range(5)]
    with torch.no_grad(), QKCapture(model, heads, max_prompts=6) as capture:
        for batch in batches:
            model(input_ids=batch)
    assert capture.layers == (1,)
    result = capture.result()
    assert result["sink"]["query"].shape == (6, 10, 8)
    assert capture.n_forwards == 5 and model.config._attn_implementation == "sdpa"


def test_sink_geometry_end_to_end_is_reproducible():
    model = tiny_model(seed=4)
    gen = torch.Generator().manual_seed(5)
    batches = [torch.randint(0, 97, (8, 16), generator=gen) for _ in range(3)]
    sinks = sink_statistics(model, batches)
    out = sink_geometry(model, batches, sinks["key0_mass_layer_head"], max_prompts=20, tsne_points=20)
    assert set(out) == {"heads", "subspace", "gaps", "per_prompt", "tsne"}
    assert len(out["per_prompt"]) == 2 * 20 and set(out["per_prompt"]["role"]) == {"sink", "non_sink"}
    for role, rows in out["per_prompt"].groupby("role"):  # the per-prompt gaps average to the table's
        gaps = out["gaps"].set_index("role").loc[role]
        assert rows["cos_gap"].mean() == pytest.approx(gaps["cos_gap"]) and rows["prompt"].tolist() == list(range(20))
    with_interval = out["subspace"][out["subspace"]["effective_rank_low"].notna()]
    assert set(zip(with_interval["role"], with_interval["keys"], with_interval["centered"])) == {
        ("sink", "k(s)", False),
        ("sink", "k(n)", False),
    }
    assert (with_interval["effective_rank_low"] <= with_interval["effective_rank_high"]).all()
    assert (with_interval["top2_share_low"] <= with_interval["top2_share_high"]).all()
    assert list(out["heads"]["role"]) == ["sink", "non_sink"]
    assert out["heads"]["key0_mass"].iloc[0] >= out["heads"]["key0_mass"].iloc[1]
    assert len(out["subspace"]) == 8  # 2 heads x 2 key sets x (uncentred, centred)
    assert (out["subspace"]["n_vectors"] == 20).all()
    counts = out["tsne"].groupby(["role", "kind"]).size()
    assert counts[("sink", "k(s)")] == 20 and counts[("sink", "q(n)")] == 20
    chosen = out["heads"].set_index("role")
    heads = {
        r: HeadChoice(r, int(chosen.loc[r, "layer"]), int(chosen.loc[r, "head"]), 0.0) for r in ("sink", "non_sink")
    }
    again = collect_qk(model, batches, heads, 20)
    first = tsne_table(again, heads, n_points=20)
    second = tsne_table(again, heads, n_points=20)
    np.testing.assert_array_equal(first[["x", "y"]].to_numpy(), second[["x", "y"]].to_numpy())


def test_tsne_figure_draws_the_points_of_each_head(tmp_path):
    rng = np.random.default_rng(0)
    frames = []
    for role, layer, head in (("sink", 3, 1), ("non_sink", 4, 2)):
        for kind in ("q(n)", "k(n)", "k(s)"):
            xy = rng.normal(size=(15, 2))
            frames.append(
                pd.DataFrame({"role": role, "layer": layer, "head": head, "kind": kind, "x": xy[:, 0], "y": xy[:, 1]})
            )
    tsne = pd.concat(frames, ignore_index=True)
    drawn = plot_tsne(tsne, tmp_path / "tsne")
    figure_files(tmp_path / "tsne")
    assert list(drawn) == ["sink", "non_sink"]  # sink head left, non-sink head right
    for role, points in drawn.items():
        expected = tsne[tsne["role"] == role][["kind", "x", "y"]].reset_index(drop=True)
        pd.testing.assert_frame_equal(points, expected)
        assert points.groupby("kind").size().to_dict() == {"k(n)": 15, "k(s)": 15, "q(n)": 15}


def test_measure_and_report_of_a_job(tmp_path):
    """measure(job) chooses the heads from the extraction's sink statistics; the report draws its t-SNE."""
    model = tiny_model(seed=4)
    gen = torch.Generator().manual_seed(5)
    ids = torch.randint(0, 97, (12, 16), generator=gen)
    stats = sink_statistics(model, [ids[:6], ids[6:]])
    sinks = SinkStats.from_arrays({"eps": 0.3, **stats})
    prompts = PromptSet("extraction", list(ids.numpy()), {"bos_added": False})
    settings = {"n_prompts": 12, "seq_len": 12, "batch_size": 4, "tsne_points": 10}
    job = make_job("sink_geometry", {"sinks": sinks, "prompts.extraction": prompts}, model, settings)
    result = runner.measure(job)
    heads = result.heads.set_index("role")
    expected = choose_heads(stats["key0_mass_layer_head"])
    assert (heads.loc["sink", "layer"], heads.loc["sink", "head"]) == (expected["sink"].layer, expected["sink"].head)
    assert (result.subspace["n_vectors"] == 12).all() and not result.bos_added
    result.save(tmp_path / "geometry")
    loaded = SinkGeometry.load(tmp_path / "geometry")
    pd.testing.assert_frame_equal(loaded.tsne, result.tsne)
    claims = runner.claims(loaded, job)
    assert [c.claim for c in claims] == [
        "sink keys live in a 1-2 dimensional subspace",
        "in sink heads non-sink queries sit closer to the sink key than to non-sink keys",
    ]
    drawn = runner.figures(loaded, job, {"": tmp_path / "m"})[""]
    figure_files(tmp_path / "m")
    for role, points in drawn.items():
        expected = loaded.tsne[loaded.tsne["role"] == role][["kind", "x", "y"]].reset_index(drop=True)
        pd.testing.assert_frame_equal(points, expected)


def gap_rows(sink_gaps, non_sink_gaps=None) -> pd.DataFrame:
    """Per-prompt gap rows of both heads (what sink_geometry stores as `per_prompt`)."""
    non_sink_gaps = np.full(len(sink_gaps), -0.1) if non_sink_gaps is None else non_sink_gaps
    return pd.concat(
        [
            pd.DataFrame({"role": role, "prompt": np.arange(len(g)), "cos_gap": g})
            for role, g in (("sink", sink_gaps), ("non_sink", non_sink_gaps))
        ],
        ignore_index=True,
    )


def geometry_tables(key0_mass=0.8, rank=1.2, rank_interval=(1.1, 1.4), top2=0.97):
    subspace = pd.DataFrame(
        [
            {"role": "sink", "keys": "k(s)", "centered": False, "effective_rank": rank, "top2_share": top2,
             "effective_rank_low": rank_interval[0], "effective_rank_high": rank_interval[1],
             "top2_share_low": top2 - 0.02, "top2_share_high": min(1.0, top2 + 0.02), "n_vectors": 20},
            {"role": "sink", "keys": "k(n)", "centered": False, "effective_rank": 6.0, "top2_share": 0.4},
        ]
    )  # fmt: skip
    gaps = pd.DataFrame(
        [
            {"role": "sink", "layer": 2, "head": 1, "key0_mass": key0_mass, "cos_gap": 0.3, "share_closer_to_sink": 0.8},
            {"role": "non_sink", "layer": 2, "head": 3, "key0_mass": 0.01, "cos_gap": -0.1, "share_closer_to_sink": 0.0},
        ]
    )  # fmt: skip
    return subspace, gaps


def test_geometry_claims_carry_intervals_over_prompts():
    subspace, gaps = geometry_tables()
    result = SinkGeometry(heads=None, subspace=subspace, gaps=gaps, per_prompt=gap_rows(np.full(20, 0.3)), tsne=None)
    job = make_job("sink_geometry")
    rank, closer = runner.claims(result, job)
    assert rank.verdict == "holds" and (rank.value, rank.low, rank.high) == (1.2, 1.1, 1.4)
    assert "1.20 [1.10, 1.40]" in rank.ours
    assert closer.verdict == "holds" and closer.low == closer.high == pytest.approx(0.3)
    # a rank interval reaching past the bar decides nothing
    subspace, _ = geometry_tables(rank=2.3, rank_interval=(2.0, 2.8))
    rank, _ = runner.claims(SinkGeometry(subspace=subspace, gaps=gaps, per_prompt=result.per_prompt), job)
    assert rank.verdict == "inconclusive"
    # sink-head gaps of +-0.2 around zero over prompts: the mean's interval straddles 0
    noisy = gap_rows(np.tile([0.2, -0.2], 10) + np.linspace(-0.01, 0.01, 20))
    _, closer = runner.claims(SinkGeometry(subspace=subspace, gaps=gaps, per_prompt=noisy), job)
    assert closer.low < 0 < closer.high and closer.verdict == "inconclusive"
    strict = make_job("sink_geometry", settings={"claims": {"min_cos_gap": 0.5}})
    assert runner.claims(result, strict)[1].verdict == "fails"


def test_geometry_rows_stay_n_a_with_their_reason():
    job = make_job("sink_geometry")
    subspace, gaps = geometry_tables(key0_mass=0.1)
    claims = runner.claims(SinkGeometry(subspace=subspace, gaps=gaps, per_prompt=gap_rows(np.zeros(3))), job)
    assert [c.verdict for c in claims] == ["n/a", "n/a"] and all("no head sinks" in c.ours for c in claims)
    empty = runner.claims(SinkGeometry(subspace=pd.DataFrame(), gaps=pd.DataFrame(), per_prompt=pd.DataFrame()), job)
    assert [c.verdict for c in empty] == ["n/a", "n/a"]
    na = runner.claims(SinkGeometry.na("no sinks statistics"), job)
    assert [c.ours for c in na] == ["n/a: no sinks statistics"] * 2
