"""Spike-channel interventions: the hook edits exactly what it should; the table matches direct runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from spikesink.analyses.intervention import (
    intervention_table,
    replacement_values,
    spike_intervention,
    spike_token_mask,
)
from spikesink.extraction.sink_stats import sink_statistics
from spikesink.instrumentation.taps import NotEditable

torch.set_num_threads(1)
CHANNELS = [3, 17]


def tiny_model(seed=0):
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "q_proj" in name or "k_proj" in name:
                param.mul_(25.0)
    model.set_attn_implementation("sdpa")
    return model


def capture_output(module):
    """A hook registered after the intervention: sees the edited output."""
    seen = []
    handle = module.register_forward_hook(
        lambda _m, _a, out: seen.append((out[0] if isinstance(out, tuple) else out).clone())
    )
    return seen, handle


def plant_spikes(module, positions, channel=5, value=5000.0):
    """A hook registered *before* the intervention: writes a massive value at given tokens."""

    def hook(_m, _a, out):
        out = out.clone()
        out[:, positions, channel] = value
        return out

    return module.register_forward_hook(hook)


def test_zero_mode_edits_only_the_first_token_channels():
    model = tiny_model()
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(1))
    mlp = model.model.layers[0].mlp  # block 2
    with torch.no_grad():
        seen, handle = capture_output(mlp)
        model(input_ids=ids)
        handle.remove()
        with spike_intervention(model, 2, CHANNELS, "zero") as log:
            seen_edit, handle = capture_output(mlp)
            model(input_ids=ids)
            handle.remove()
    before, after = seen[0], seen_edit[0]
    assert torch.all(after[:, 0, CHANNELS] == 0)
    mask = torch.ones_like(before, dtype=torch.bool)
    mask[:, 0, CHANNELS] = False
    assert torch.equal(before[mask], after[mask])
    assert log.calls == 1 and log.edited_tokens == 2 and log.max_after == 0.0
    assert log.max_before == pytest.approx(float(before[:, 0, CHANNELS].abs().max()))
    # hook removed on exit
    seen_again, handle = capture_output(mlp)
    with torch.no_grad():
        model(input_ids=ids)
    handle.remove()
    assert torch.equal(seen_again[0], before)


def test_spike_token_mask_and_mean_values_on_planted_state():
    gen = torch.Generator().manual_seed(2)
    hidden = torch.randn(2, 6, 16, generator=gen)
    hidden[0, 0, 5] = 4000.0
    hidden[1, 3, 5] = -4000.0
    spikes = spike_token_mask(hidden)
    expected = torch.zeros(2, 6, dtype=torch.bool)
    expected[0, 0] = expected[1, 3] = True
    assert torch.equal(spikes, expected)
    channels = torch.tensor([5, 9])
    keep = ~expected
    keep[:, 0] = False
    manual = hidden[..., channels][keep].mean(0)
    torch.testing.assert_close(replacement_values(hidden, channels, "mean", spikes), manual)
    assert torch.equal(replacement_values(hidden, channels, "zero", spikes), torch.zeros(2))
    # a spike token that is large in *every* channel (own median ~ 300, as SmolLM2's first
    # token): massive against the median of the whole state, not against its own
    dense = torch.randn(1, 40, 16, generator=gen)
    dense[0, 0] = 300.0
    dense[0, 0, 7] = 2e4
    assert spike_token_mask(dense)[0].tolist() == [True] + [False] * 39


def test_spike_positions_mode_edits_every_planted_spike_token():
    model = tiny_model()
    ids = torch.randint(0, 97, (1, 8), generator=torch.Generator().manual_seed(3))
    mlp = model.model.layers[1].mlp  # block 4
    plant = plant_spikes(mlp, [0, 4])
    with torch.no_grad(), spike_intervention(model, 4, [5], "mean", positions="spike") as log:
        seen, handle = capture_output(mlp)
        model(input_ids=ids)
        handle.remove()
    plant.remove()
    out = seen[0]
    assert log.edited_tokens == 2 and log.max_before == pytest.approx(5000.0)
    # both spike tokens now carry the mean of the non-spike tokens (positions 1-3, 5-7)
    assert out[0, 0, 5] == out[0, 4, 5]
    assert abs(float(out[0, 0, 5])) < 100
    assert torch.all(out[0, [1, 2, 3, 5, 6, 7], 5] != 5000.0)


def test_residual_site_and_errors():
    model = tiny_model()
    # an attention block's post-residual is read by two consumers: no hook can edit it faithfully
    with pytest.raises(NotEditable, match="post_residual of FFN"):
        with spike_intervention(model, 3, CHANNELS, site="residual"):
            pass
    with pytest.raises(ValueError, match="out of range"):
        with spike_intervention(model, 7, CHANNELS):
            pass
    with pytest.raises(ValueError, match="channels"):
        with spike_intervention(model, 2, [32]):
            pass
    ids = torch.randint(0, 97, (1, 6))
    with torch.no_grad(), spike_intervention(model, 4, CHANNELS, "zero", site="residual"):
        seen, handle = capture_output(model.model.layers[1])
        model(input_ids=ids)
        handle.remove()
    assert torch.all(seen[0][:, 0, CHANNELS] == 0)


def test_table_matches_direct_measurements():
    model = tiny_model(seed=4)
    gen = torch.Generator().manual_seed(5)
    batches = [torch.randint(0, 97, (3, 12), generator=gen) for _ in range(2)]
    table = intervention_table(model, batches, block=2, channels=CHANNELS, modes=("zero",))
    assert list(table["condition"]) == ["none", "zero"]

    def direct():
        stats = sink_statistics(model, batches)
        with torch.no_grad():
            losses = [float(model(input_ids=b, labels=b).loss) for b in batches]
        return float(stats["sink_ratio"]), float(stats["key0_mass_mean"]), math.exp(np.mean(losses))

    none = table.iloc[0]
    assert (none["sink_ratio"], none["key0_mass"]) == pytest.approx(direct()[:2])
    assert none["perplexity"] == pytest.approx(direct()[2], rel=1e-6)

    def zero_hook(_m, _a, out):  # an independent implementation of the same edit
        out = out.clone()
        out[:, 0, CHANNELS] = 0
        return out

    handle = model.model.layers[0].mlp.register_forward_hook(zero_hook)
    try:
        ratio, mass, ppl = direct()
    finally:
        handle.remove()
    zero = table.iloc[1]
    assert zero["key0_mass"] == pytest.approx(mass) and zero["sink_ratio"] == pytest.approx(ratio)
    assert zero["perplexity"] == pytest.approx(ppl, rel=1e-6)
    assert zero["perplexity"] != none["perplexity"]  # the edit changed the model's output
    assert zero["delta_key0_mass"] == pytest.approx(zero["key0_mass"] - none["key0_mass"])
    assert zero["edited_tokens"] == 6 and zero["max_after"] == 0.0
    assert set(table["block"]) == {2} and set(table["channels"]) == {"3,17"}


def test_intervention_figure_is_written(tmp_path):
    import pandas as pd

    from spikesink.figures_sinks import plot_intervention

    table = pd.DataFrame(
        {
            "condition": ["none", "zero", "mean"], "block": 4, "channels": "507", "site": "block_output",
            "positions": "first", "sink_ratio": [70.0, 20.0, 35.0], "key0_mass": [0.6, 0.2, 0.3],
            "perplexity": [12.0, 30.0, 18.0], "spike_first_token": [2e4, 50.0, 60.0],
        }
    )  # fmt: skip
    written = plot_intervention(table, tmp_path / "bars.pdf")
    assert [p.name for p in written] == ["bars.pdf", "bars.png"] and all(p.stat().st_size > 1000 for p in written)
    # tables of several step-up blocks concatenated (one "none" row each)
    second = table.assign(block=6, perplexity=[12.0, 15.0, 13.0])
    written = plot_intervention(pd.concat([second, table]), tmp_path / "two_blocks")
    assert all(p.stat().st_size > 1000 for p in written)
