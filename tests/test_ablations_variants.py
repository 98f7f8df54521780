"""Ablation variants: names are safe, each is the named diff from the baseline, paper rows attached."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from spikesink.ablations.model import Attention, Decoder, GeLUFFN, ModelConfig
from spikesink.ablations.variants import (
    REGISTRY,
    VARIANT_NAME,
    check_ablations,
    get_variant,
    resolve,
    seeds,
    sweep_names,
)

CFG = {
    "baseline": {
        "model": {"vocab_size": 64, "d_model": 32, "n_layers": 2, "n_heads": 4, "d_head": 16, "d_ffn": 80},
        "train": {"seq_len": 64, "batch_size": 2, "lr": 1e-3, "total_tokens": 10_000},
    },
    "eval": {"every": 7, "windows": 3, "sink_eps": 0.25},
}
CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"


def test_every_static_variant_builds_a_model_and_runs():
    x = torch.randint(0, 64, (1, 8))
    for name in REGISTRY:
        model_cfg, train_cfg, variant = resolve(CFG, name)
        assert VARIANT_NAME.match(name) and variant.name == name
        assert model_cfg.max_seq_len >= train_cfg.seq_len
        n = min(8, model_cfg.max_seq_len)
        assert Decoder(model_cfg)(x[:, :n]).shape == (1, n, 64)
        expected = {"ppl", "sink_ratio", "spike"} | ({"key0_mass"} if variant.table == "remedies" else set())
        assert variant.paper is None or set(variant.paper) == expected


def test_eval_section_maps_onto_train_config():
    _, train_cfg, _ = resolve(CFG, "baseline")
    assert (train_cfg.eval_every, train_cfg.eval_windows, train_cfg.sink_eps) == (7, 3, 0.25)


@pytest.mark.parametrize(
    "name,model_changes,train_changes",
    [
        ("lr-025x", {}, {"lr": 2.5e-4}),
        ("lr-4x", {}, {"lr": 4e-3}),
        ("minlr-1x", {}, {"min_lr_ratio": 1.0}),
        ("wd-0", {}, {"weight_decay": 0.0}),
        ("beta2-0999", {}, {"beta2": 0.999}),
        ("tokens-2x", {}, {"total_tokens": 20_000}),
        ("ffn-gelu", {"ffn_type": "gelu", "d_ffn": 120}, {}),
        ("ffn-attn-only", {"ffn_type": "attention"}, {}),
        ("norm-sandwich-qk", {"norm": "sandwich", "qk_norm": True}, {}),
        ("norm-qk-output", {"norm": "output", "qk_norm": True}, {}),
        ("norm-dyt", {"norm_type": "dyt"}, {}),
        ("gate-cond-head", {"gate": "conditional", "gate_granularity": "head"}, {}),
        ("gate-positional", {"gate": "positional"}, {}),
        ("seq-div4", {"max_seq_len": 16}, {"seq_len": 16}),
        ("lossfrom-q1", {}, {"seq_len": 64, "loss_min_pos": 16, "loss_max_pos": None}),
        ("lossfrom-half-long", {"max_seq_len": 96}, {"seq_len": 96, "loss_min_pos": 32}),
        ("dhead-8", {"d_head": 8}, {}),
        ("nhead-2", {"n_heads": 2}, {}),
        ("heads-8x8", {"n_heads": 8, "d_head": 8}, {}),
        # sink remedies: one switch each
        ("sink-logit", {"sink_logit": True}, {}),
        ("softmax1", {"attention": "softmax1"}, {}),
        ("sigmoid-attn", {"attention": "sigmoid"}, {}),
        ("sigmoid-attn-logt", {"attention": "sigmoid", "sigmoid_bias": -math.log(64)}, {}),
        ("relu-attn", {"attention": "relu"}, {}),
        ("kv-bias", {"kv_bias": True}, {}),
        ("sgd", {}, {"optimizer": "sgd", "lr": 1e-2, "weight_decay": 0.01}),
        ("sgd-100x", {}, {"optimizer": "sgd", "lr": 0.1, "weight_decay": 0.001}),
        ("norm-post", {"norm": "post"}, {}),
        ("gated-attn", {"gate": "conditional"}, {}),
        ("gated-attn-head", {"gate": "conditional", "gate_granularity": "head"}, {}),
    ],
)
def test_variant_is_the_named_diff(name, model_changes, train_changes):
    base_model, base_train, _ = resolve(CFG, "baseline")
    model_cfg, train_cfg, _ = resolve(CFG, name)
    model_diff = {k: v for k, v in model_cfg.to_dict().items() if v != getattr(base_model, k)}
    train_diff = {k: v for k, v in train_cfg.__dict__.items() if v != getattr(base_train, k)}
    assert model_diff == model_changes
    assert train_diff == {k: v for k, v in train_changes.items() if v != getattr(base_train, k)}


def test_ffn_and_gate_variants_change_modules():
    gelu = Decoder(resolve(CFG, "ffn-gelu")[0])
    assert isinstance(gelu.layers[0].ffn.branch.mixer, GeLUFFN) and gelu.layers[0].ffn.branch.mixer.up.weight.shape == (
        120,
        32,
    )
    attn_only = Decoder(resolve(CFG, "ffn-attn-only")[0])
    assert isinstance(attn_only.layers[0].ffn.branch.mixer, Attention)


def test_head_sweeps_carry_paper_rows_by_ratio_to_the_baseline():
    base = resolve(CFG, "baseline")[0]  # d_head 16, 4 heads <-> the paper's d_head 128, 32 heads
    rows = {
        name: (get_variant(name, base).paper or {}).get("sink_ratio")
        for name in (
            "dhead-2",
            "dhead-4",
            "dhead-8",
            "dhead-16",
            "dhead-6",
            "nhead-1",
            "nhead-2",
            "heads-2x32",
            "heads-8x8",
            "heads-8x4",
        )
    }
    assert rows == {
        "dhead-2": 9.8,
        "dhead-4": 27.9,
        "dhead-8": 37.7,
        "dhead-16": 46.0,
        "dhead-6": None,
        "nhead-1": 37.1,
        "nhead-2": 41.7,
        "heads-2x32": 30.8,
        "heads-8x8": 44.1,
        "heads-8x4": None,
    }
    assert sweep_names("dhead", [4, 8]) == ["dhead-4", "dhead-8"]


@pytest.mark.parametrize("bad", ["DHEAD-8", "dhead_8", "dhead-8/..", "", "-x", "nope"])
def test_bad_or_unknown_names_are_rejected(bad):
    with pytest.raises((ValueError, KeyError)):
        resolve(CFG, bad)


SEARCH_DIR = CONFIG_DIR.parent / "benchmarks" / "ablation_search"


@pytest.mark.parametrize(
    "path",
    [CONFIG_DIR / "config.yaml", *sorted(CONFIG_DIR.glob("ablations-*.yaml")), *sorted(SEARCH_DIR.glob("*.yaml"))],
    ids=lambda p: p.name,
)
def test_shipped_configs_resolve(path):
    cfg = yaml.safe_load(path.read_text())["ablations"]
    assert cfg["variants"] and len(set(cfg["variants"])) == len(cfg["variants"])
    check_ablations(cfg)  # what the workflow checks at start-up
    for name in cfg["variants"]:
        model_cfg, train_cfg, _ = resolve(cfg, name)
        assert model_cfg.max_seq_len >= train_cfg.seq_len
    if cfg.get("data", {}).get("source") == "bigram_backcopy":
        from spikesink.ablations.synthetic import BigramBackcopy

        BigramBackcopy.from_dict(cfg["data"]["bigram_backcopy"])  # the synthetic language's keys are valid


# ----------------------------------------------------------------------------------------------
# bad input: every problem of an ablations section is named at config time (workflow start-up)


def test_unknown_variant_lists_the_known_ones():
    with pytest.raises(KeyError) as err:
        resolve(CFG, "dhead-eight")
    message = str(err.value)
    assert message.startswith("unknown variant 'dhead-eight'; known:")
    assert all(
        name in message for name in ("baseline", "wd-0", "gate-cond-channel", "lossfrom-half", "dhead-D", "heads-NxD")
    )
    with pytest.raises(
        ValueError, match=r"ablations.variants: dhead-eight: unknown variant 'dhead-eight'; known: .*Table 7: gate-cond"
    ):
        check_ablations({**CFG, "variants": ["baseline", "dhead-eight"]})


def test_gating_an_attention_free_model_is_refused():
    no_attention = {**CFG, "baseline": {**CFG["baseline"], "model": {**CFG["baseline"]["model"], "n_heads": 0}}}
    with pytest.raises(ValueError, match="n_heads must be >= 1, got 0: an attention-free model"):
        check_ablations({**no_attention, "variants": ["baseline"]})
    with pytest.raises(ValueError, match="gate='conditional' gates the attention output, but n_heads=0"):
        ModelConfig(n_heads=0, gate="conditional")


@pytest.mark.parametrize(
    "train,match",
    [
        ({"loss_min_pos": 64}, r"loss positions \[64, None\) lie outside the sequence of 64 tokens"),
        ({"loss_min_pos": 8, "loss_max_pos": 80}, r"loss positions \[8, 80\) lie outside"),
        ({"loss_min_pos": 8, "loss_max_pos": 8}, r"loss positions \[8, 8\) lie outside"),
        ({"loss_min_pos": -1}, r"loss positions \[-1, None\)"),
    ],
)
def test_loss_range_outside_the_sequence_is_refused(train, match):
    cfg = {
        **CFG,
        "baseline": {**CFG["baseline"], "train": {**CFG["baseline"]["train"], **train}},
        "variants": ["baseline"],
    }
    with pytest.raises(ValueError, match="ablations.baseline: " + match):
        check_ablations(cfg)


def test_a_variant_that_moves_the_sequence_under_fixed_loss_positions_is_refused():
    """loss_max_pos 48 fits 64 tokens, but seq-div4 shortens the context to 16: named per variant."""
    cfg = {
        **CFG,
        "baseline": {**CFG["baseline"], "train": {**CFG["baseline"]["train"], "loss_max_pos": 48}},
        "variants": ["baseline", "seq-div4"],
    }
    with pytest.raises(
        ValueError, match=r"ablations.variants: seq-div4: loss positions \[0, 48\) lie outside the sequence of 16"
    ):
        check_ablations(cfg)


def test_remedies_that_cannot_combine_are_refused_at_config_time_naming_both():
    """A baseline with sigmoid attention cannot take the sink logit or the key/value bias; SGD cannot take
    beta2: each named per variant, with both switches, before any job runs."""
    sigmoid = {**CFG, "baseline": {**CFG["baseline"], "model": {**CFG["baseline"]["model"], "attention": "sigmoid"}}}
    with pytest.raises(ValueError) as err:
        check_ablations({**sigmoid, "variants": ["baseline", "sink-logit", "kv-bias", "relu-attn"]})
    message = str(err.value)
    assert "ablations.variants: sink-logit: sink_logit=true cannot combine with attention='sigmoid'" in message
    assert "ablations.variants: kv-bias: kv_bias=true cannot combine with attention='sigmoid'" in message
    assert "relu-attn" not in message  # a switch of the same field replaces the baseline's kind
    sgd = {**CFG, "baseline": {**CFG["baseline"], "train": {**CFG["baseline"]["train"], "optimizer": "sgd"}}}
    with pytest.raises(ValueError, match=r"beta2-0999: optimizer='sgd' cannot combine with beta2=0.999"):
        check_ablations({**sgd, "variants": ["baseline", "beta2-0999"]})


def test_remedy_rows_carry_the_literatures_numbers():
    assert REGISTRY["sigmoid-attn"].paper["sink_ratio"] == 2.46 and "45.11" in REGISTRY["sigmoid-attn"].paper_setting
    gated = REGISTRY["gated-attn"]
    assert (gated.paper["sink_ratio"], gated.paper["key0_mass"]) == (4.5, 0.048) and "1053 -> 94" in gated.paper_setting
    assert REGISTRY["softmax1"].paper["sink_ratio"] is None  # nothing published: no number invented
    assert {v.name for v in REGISTRY.values() if v.table == "remedies"} >= {"sink-logit", "sgd", "norm-post"}


def test_synthetic_spec_with_more_triggers_than_tokens_is_refused():
    cfg = {
        **CFG,
        "variants": ["baseline"],
        "data": {"source": "bigram_backcopy", "bigram_backcopy": {"n_tokens": 8, "n_triggers": 12}},
    }
    with pytest.raises(
        ValueError, match="ablations.data.bigram_backcopy: n_triggers must be in .* got 12 triggers for 8 tokens"
    ):
        check_ablations(cfg)
    with pytest.raises(ValueError, match="unknown bigram_backcopy config keys: triggers"):
        check_ablations({**cfg, "data": {"source": "bigram_backcopy", "bigram_backcopy": {"triggers": 2}}})


def test_a_valid_section_passes_and_seeds_default_to_the_baseline_seed():
    check_ablations({**CFG, "variants": ["baseline", "dhead-8", "lossfrom-half", "gate-cond-head"]})
    assert seeds(CFG) == [0]
    assert seeds({**CFG, "baseline": {**CFG["baseline"], "train": {**CFG["baseline"]["train"], "seed": 7}}}) == [7]
    assert seeds({**CFG, "seeds": [3, 1]}) == [3, 1]
    with pytest.raises(ValueError, match=r"ablations.seeds: \[1, 1\] repeats a seed"):
        check_ablations({**CFG, "variants": ["baseline"], "seeds": [1, 1]})
