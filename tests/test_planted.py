"""The planted model must behave as its docstring says, or every detector tested on it is moot."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spikesink.acquisition.planted import build_planted_llama, planted_tokenizer, save_planted
from spikesink.metrics import is_massive
from spikesink.settings import SpikeRule

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def planted():
    return build_planted_llama(seed=0)


def post_residual_states(model, input_ids):
    """{block: (B, T, d) post-residual state} for every block, via forward hooks."""
    states, handles = {}, []
    for index, layer in enumerate(model.model.layers):  # Llama's own modules: independent of the taps
        handles.append(
            layer.post_attention_layernorm.register_forward_pre_hook(
                lambda m, args, b=2 * index + 1: states.__setitem__(b, args[0].detach())
            )
        )
        handles.append(
            layer.register_forward_hook(
                lambda m, args, out, b=2 * index + 2: states.__setitem__(
                    b, (out[0] if isinstance(out, tuple) else out).detach()
                )
            )
        )
    try:
        with torch.no_grad():
            model(input_ids)
    finally:
        for h in handles:
            h.remove()
    return states


def massive_mask(state):
    mag, rule = state.abs(), SpikeRule()  # the config's spike rule
    return is_massive(mag.max(-1).values, mag.median(-1).values, rule.floor, rule.median_ratio)


def test_position_zero_spikes_exactly_for_trigger_tokens(planted):
    model, info = planted
    vocab = model.config.vocab_size
    states = post_residual_states(model, torch.arange(vocab)[:, None])
    up, down = info["step_up_blocks"][0], info["step_down_blocks"][0]
    triggers = np.zeros(vocab, bool)
    triggers[info["trigger_token_ids"]] = True
    assert set(info["exception_token_ids"]).isdisjoint(info["trigger_token_ids"])
    for block, state in states.items():
        spikes = massive_mask(state[:, 0]).numpy()
        if up <= block < down:
            assert (spikes == triggers).all(), block
        else:
            assert not spikes.any(), block
    # Spike channels are the top channels, with the planted ratio and magnitude.
    state = states[up][info["trigger_token_ids"], 0]
    top = state.abs().topk(len(info["spike_channels"]), dim=-1).indices
    assert (torch.sort(top, dim=-1).values == torch.tensor(sorted(info["spike_channels"]))).all()
    c0, c1 = info["spike_channels"]
    np.testing.assert_allclose((state[:, c1] / state[:, c0]).numpy(), info["channel_ratio"][1], rtol=1e-4)
    np.testing.assert_allclose(state[:, c0].numpy(), info["spike_magnitude"], rtol=0.03)
    assert abs(float(state[:, c0].mean()) / info["spike_magnitude"] - 1) < 0.005


def test_later_positions_do_not_spike_except_delimiters(planted):
    model, info = planted
    tok = planted_tokenizer()
    text = "The quick brown fox jumps over the lazy dog. It ran away.\nThen it slept"
    ids = torch.tensor([tok(text)["input_ids"]])
    states = post_residual_states(model, ids)
    delimiters = np.isin(ids[0].numpy(), info["delimiter_token_ids"])
    assert delimiters.sum() == 3
    up, down = info["step_up_blocks"][0], info["step_down_blocks"][0]
    for block in range(up, down):
        spikes = massive_mask(states[block][0]).numpy()
        assert spikes[0]
        # later positions spike exactly at the delimiters (they attend to themselves)
        assert (spikes[1:] == delimiters[1:]).all(), block
    assert not massive_mask(states[down][0]).any()


def test_step_up_amplifier_is_rank_one_along_s_star(planted):
    model, info = planted
    s_star = torch.as_tensor(info["s_star"])
    mlp = model.model.layers[info["step_up_blocks"][0] // 2 - 1].mlp
    gate, up, down = (p.weight.detach() for p in (mlp.gate_proj, mlp.up_proj, mlp.down_proj))
    for channel in info["spike_channels"]:
        u_k = torch.einsum("i,ia,ib->ab", down[channel], gate, up)  # naive definition
        eigvals, eigvecs = torch.linalg.eigh((u_k + u_k.T) / 2)
        top = eigvals.abs().argmax()
        assert abs(float(eigvecs[:, top] @ s_star)) > 0.999
        assert eigvals.abs().sort(descending=True).values[1] < 0.01 * eigvals.abs().max()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        build_planted_llama(step_up_block=3)
    with pytest.raises(ValueError):
        build_planted_llama(step_up_block=10, step_down_block=4)
    with pytest.raises(ValueError):
        build_planted_llama(spike_channels=(1, 2, 3))


def test_seed_changes_direction_but_not_structure():
    _, a = build_planted_llama(seed=0)
    _, b = build_planted_llama(seed=1)
    assert abs(float(a["s_star"] @ b["s_star"])) < 0.9
    assert a["spike_channels"] == b["spike_channels"]


def test_save_planted_round_trip(tmp_path, planted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    manifest = save_planted(tmp_path / "planted", seed=0)
    directory = tmp_path / "planted"
    assert (directory / "model.safetensors").exists()
    on_disk = json.loads((directory / "manifest.json").read_text())
    assert on_disk["planted"]["spike_channels"] == manifest["planted"]["spike_channels"]
    np.testing.assert_allclose(on_disk["planted"]["s_star"], planted[1]["s_star"], atol=1e-7)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    ids = tokenizer("Hi there.\n")["input_ids"]
    assert ids == list(b"Hi there.\n")  # byte ids, no BOS
    assert tokenizer.decode(ids) == "Hi there.\n"
    with torch.no_grad():
        reloaded = model(torch.tensor([ids])).logits
        original = planted[0](torch.tensor([ids])).logits
    torch.testing.assert_close(reloaded, original)
