"""Spike-channel interventions: the hook edits exactly what it should; the table matches direct runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from analysis_helpers import figure_files, make_job
from transformers import LlamaConfig, LlamaForCausalLM

from spikesink.analyses import runner
from spikesink.analyses.intervention.figure import plot_intervention
from spikesink.analyses.intervention.measure import (
    intervention_table,
    replacement_values,
    spike_intervention,
    spike_token_mask,
)
from spikesink.analyses.intervention.result import Intervention
from spikesink.analyses.lifecycle.result import Lifecycle
from spikesink.extraction.sink_stats import sink_statistics
from spikesink.instrumentation.spikes import SpikeRule
from spikesink.instrumentation.taps import NotEditable
from spikesink.results import PromptSet

torch.set_num_threads(1)
CHANNELS = [3, 17]
RULE = SpikeRule()
EPS = 0.3  # the schema's sinks.eps


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
        with spike_intervention(model, 2, CHANNELS, RULE, "zero") as log:
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
    spikes = spike_token_mask(hidden, RULE)
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
    assert spike_token_mask(dense, RULE)[0].tolist() == [True] + [False] * 39


def test_spike_positions_mode_edits_every_planted_spike_token():
    model = tiny_model()
    ids = torch.randint(0, 97, (1, 8), generator=torch.Generator().manual_seed(3))
    mlp = model.model.layers[1].mlp  # block 4
    plant = plant_spikes(mlp, [0, 4])
    with torch.no_grad(), spike_intervention(model, 4, [5], RULE, "mean", positions="spike") as log:
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
        with spike_intervention(model, 3, CHANNELS, RULE, site="residual"):
            pass
    with pytest.raises(ValueError, match="out of range"):
        with spike_intervention(model, 7, CHANNELS, RULE):
            pass
    with pytest.raises(ValueError, match="channels"):
        with spike_intervention(model, 2, [32], RULE):
            pass
    ids = torch.randint(0, 97, (1, 6))
    with torch.no_grad(), spike_intervention(model, 4, CHANNELS, RULE, "zero", site="residual"):
        seen, handle = capture_output(model.model.layers[1])
        model(input_ids=ids)
        handle.remove()
    assert torch.all(seen[0][:, 0, CHANNELS] == 0)


def test_table_matches_direct_measurements():
    model = tiny_model(seed=4)
    gen = torch.Generator().manual_seed(5)
    batches = [torch.randint(0, 97, (3, 12), generator=gen) for _ in range(2)]
    table = intervention_table(model, batches, block=2, channels=CHANNELS, rule=RULE, eps=EPS, modes=("zero",))
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


def test_intervention_figure_draws_the_table(tmp_path):
    table = pd.DataFrame(
        {
            "condition": ["none", "zero", "mean"], "block": 4, "channels": "507", "site": "block_output",
            "positions": "first", "sink_ratio": [70.0, 20.0, 35.0], "key0_mass": [0.6, 0.2, 0.3],
            "perplexity": [12.0, 30.0, 18.0], "spike_first_token": [2e4, 50.0, 60.0],
        }
    )  # fmt: skip
    drawn = plot_intervention(table, tmp_path / "bars.pdf")
    figure_files(tmp_path / "bars")
    panels = ["sink_ratio", "key0_mass", "perplexity", "spike_first_token"]
    assert list(drawn) == panels
    for column in panels:
        assert list(drawn[column].index) == ["none", "zero", "mean"]
        np.testing.assert_array_equal(drawn[column].to_numpy(), table[column].to_numpy())
    # tables of several step-up blocks concatenated (one "none" row each): one "none" bar, edits by block
    second = table.assign(block=6, perplexity=[12.0, 15.0, 13.0])
    drawn = plot_intervention(pd.concat([second, table]), tmp_path / "two_blocks")
    figure_files(tmp_path / "two_blocks")
    assert list(drawn["perplexity"].index) == ["none", "zero\nb6", "mean\nb6", "zero\nb4", "mean\nb4"]
    assert list(drawn["perplexity"]) == [12.0, 15.0, 13.0, 30.0, 18.0]
    assert list(drawn["sink_ratio"]) == [70.0, 20.0, 35.0, 20.0, 35.0]


def test_measure_and_report_of_a_job(tmp_path):
    """measure(job): every step-up block edited in turn on the held-out prompts; n/a without a spike."""
    model = tiny_model(seed=4)
    gen = torch.Generator().manual_seed(6)
    heldout = PromptSet("heldout", list(torch.randint(0, 97, (4, 10), generator=gen).numpy()), {})
    lifecycle = Lifecycle(step_up=[2, 4], spike_channels=CHANNELS, plateau=(2, 5))
    job = make_job("intervention", {"lifecycle": lifecycle, "prompts.heldout": heldout}, model, {"modes": ["zero"]})
    result = runner.measure(job)
    table = result.table
    assert list(zip(table["condition"], table["block"])) == [("none", 2), ("zero", 2), ("none", 4), ("zero", 4)]
    assert set(table["site"]) == {"residual"} and set(table["channels"]) == {"3,17"}  # the schema's default site
    result.save(tmp_path / "intervention")
    loaded = Intervention.load(tmp_path / "intervention")
    pd.testing.assert_frame_equal(loaded.table, table)
    pd.testing.assert_frame_equal(loaded.per_prompt, result.per_prompt)
    # per held-out prompt, from the same forwards: its rows add up to the table's
    assert len(loaded.per_prompt) == len(table) * 4
    for row in table.itertuples():
        rows = loaded.per_prompt[
            (loaded.per_prompt["block"] == row.block) & (loaded.per_prompt["condition"] == row.condition)
        ]
        assert np.exp(rows["nll_sum"].sum() / rows["n_tokens"].sum()) == pytest.approx(row.perplexity, rel=1e-9)
        assert rows["sink_ratio"].mean() == pytest.approx(row.sink_ratio, rel=1e-5)
    claims = runner.claims(loaded, job)
    assert [c.claim for c in claims] == [f"removing the spike (zero at block {b}) removes the sink" for b in (2, 4)]
    for claim in claims:  # judged with an interval over the 4 prompts, or n/a when no head sinks
        assert claim.verdict == "n/a" or ("over 4 held-out prompts" in claim.ours and claim.value is not None)
    drawn = runner.figures(loaded, job, {"": tmp_path / "m"})[""]
    figure_files(tmp_path / "m")
    assert list(drawn["key0_mass"]) == [table.loc[0, "key0_mass"], table.loc[1, "key0_mass"], table.loc[3, "key0_mass"]]
    # no spike: an explicit n/a row and a labelled placeholder, the model never run
    none = make_job("intervention", {"lifecycle": Lifecycle(), "prompts.heldout": heldout})
    na = runner.measure(none)
    assert na.not_applicable == "no step-up block or spike channel was detected"
    (claim,) = runner.claims(na, none)
    assert claim.holds is None and claim.ours == "n/a: no step-up block or spike channel was detected"
    assert runner.figures(na, none, {"": tmp_path / "na"}) == {"": {}}
    figure_files(tmp_path / "na")
