"""Nothing silent: weights that do not fit their config, NaN weights and non-finite hidden states
stop the job with a clear error before any result is written.

The bad checkpoints are built here from one tiny random Llama: its config.json rewritten to
another supported family or to other sizes, a shard or config.json removed, a NaN put into one
weight of the safetensors file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAMILY_CONFIGS, family_spec, tiny_config_dict

from spikesink.acquisition.models import acquire_model
from spikesink.extraction.block_stats import NonFiniteHiddenState, extract_block_stats
from spikesink.instrumentation.loading import ModelLoadError, load_model

SPEC = {
    "source": "random",
    "model_type": "llama",
    "seed": 5,
    "config": tiny_config_dict(num_hidden_layers=2, vocab_size=260, max_position_embeddings=64),
}
DOWN = "model.layers.1.mlp.down_proj.weight"  # the FFN of layer 1 = block 4


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad")


@pytest.fixture(scope="module")
def good(root) -> Path:
    acquire_model("good", SPEC, root / "good", root / "cache")
    return root / "good"


def hf_copy(good: Path, target: Path) -> Path:
    """A plain Hugging Face directory (no manifest) with the tiny Llama's files."""
    shutil.copytree(good, target)
    (target / "manifest.json").unlink()
    return target


def edit_config(directory: Path, **changes) -> None:
    path = directory / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def acquire_local(source: Path) -> Path:
    """`source: local` acquisition, which reads headers but no weights: the bad ones get through."""
    out = source.parent / f"{source.name}-acquired"
    acquire_model(source.name, {"source": "local", "path": str(source)}, out, source.parent / "cache")
    return out


def with_weight(source: Path, name: str, value: float) -> None:
    """Set one entry of weight `name` in the safetensors file to `value`."""
    from safetensors.torch import load_file, save_file

    weights = load_file(source / "model.safetensors")
    weights[name][3, 5] = value
    save_file(weights, source / "model.safetensors", metadata={"format": "pt"})


def test_a_checkpoint_of_another_family_is_refused(good, tmp_path):
    # a Llama whose config.json names GPT-NeoX: transformers would only warn and run on random weights
    raw = hf_copy(good, tmp_path / "neox")
    edit_config(raw, model_type="gpt_neox", architectures=["GPTNeoXForCausalLM"])
    with pytest.raises(ModelLoadError) as info:
        load_model(acquire_local(raw))
    message = str(info.value)
    assert "missing" in message and "gpt_neox.embed_in.weight" in message
    assert "not used" in message and "model.embed_tokens.weight" in message
    assert "config.json" in message and "model_type" in message


def test_weights_whose_shapes_disagree_with_config_json_are_refused(good, tmp_path):
    raw = hf_copy(good, tmp_path / "shapes")
    edit_config(raw, intermediate_size=48)
    with pytest.raises(
        ModelLoadError, match=r"model\.layers\.0\.mlp\.down_proj\.weight: 32x64 in the checkpoint vs 32x48 from config"
    ):
        load_model(acquire_local(raw))


def test_a_missing_shard_is_named(good, tmp_path):
    from transformers import AutoModelForCausalLM

    raw = hf_copy(good, tmp_path / "sharded")
    (raw / "model.safetensors").unlink()
    AutoModelForCausalLM.from_pretrained(good).save_pretrained(raw, max_shard_size="40KB")
    acquired = acquire_local(raw)
    shards = sorted(acquired.glob("model-*.safetensors"))
    assert len(shards) > 2
    shards[1].unlink()
    with pytest.raises(
        ModelLoadError, match=rf"index names shards that are not there: {shards[1].name} \(1 of \d+\); re-acquire"
    ):
        load_model(acquired)


def test_a_directory_without_config_json_is_named(good, tmp_path):
    copy = tmp_path / "noconfig"
    shutil.copytree(good, copy)
    (copy / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="has no config.json"):
        load_model(copy)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_weight_is_found_at_load(good, tmp_path, value):
    raw = hf_copy(good, tmp_path / "nan")
    with_weight(raw, DOWN, value)
    with pytest.raises(ModelLoadError, match=rf"{DOWN} holds non-finite values"):
        load_model(acquire_local(raw))


@pytest.mark.parametrize(
    "model_type, extra",
    [(t, {}) for t in sorted(FAMILY_CONFIGS)] + [("llama", {"tie_word_embeddings": True})],
    ids=[*sorted(FAMILY_CONFIGS), "llama-tied"],
)
def test_no_supported_family_is_refused(root, model_type, extra):
    """Tied weights (lm_head = embedding) and buffers are no false alarms."""
    name = f"{model_type.replace('/', '-')}{'-tied' if extra else ''}"
    acquire_model(name, family_spec(model_type, **extra), root / name, root / "cache")
    model, _, _ = load_model(root / name)
    assert not model.training


def test_a_gpt_oss_checkpoint_without_its_sink_logits_is_refused(root, tmp_path):
    """transformers would initialise the missing sinks at random and attend through them."""
    from safetensors.torch import load_file, save_file

    acquire_model("gpt-oss", family_spec("gpt_oss"), root / "gpt-oss-nosinks", root / "cache")
    raw = hf_copy(root / "gpt-oss-nosinks", tmp_path / "nosinks")
    weights = {k: v for k, v in load_file(raw / "model.safetensors").items() if not k.endswith(".sinks")}
    save_file(weights, raw / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=r"missing.*model\.layers\.0\.self_attn\.sinks"):
        load_model(acquire_local(raw))


def test_leftover_buffers_of_older_checkpoints_are_no_false_alarm(root, tmp_path):
    """Old checkpoints carry buffers the model now computes itself (rotary frequencies, GPT-2's mask)."""
    from safetensors.torch import load_file, save_file

    extras = {"llama": "model.layers.0.self_attn.rotary_emb.inv_freq", "gpt2": "transformer.h.0.attn.bias"}
    for model_type, name in extras.items():
        acquire_model(f"old-{model_type}", family_spec(model_type), root / f"old-{model_type}", root / "cache")
        raw = hf_copy(root / f"old-{model_type}", tmp_path / f"old-{model_type}")
        weights = load_file(raw / "model.safetensors")
        weights[name] = torch.ones(4)
        save_file(weights, raw / "model.safetensors", metadata={"format": "pt"})
        load_model(acquire_local(raw))


# ------------------------------------------------------------------------------------------
# non-finite hidden states during the extraction forward


def ids(n: int = 3, seq_len: int = 12) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(n, seq_len))


def test_a_nan_hidden_state_stops_the_extraction_at_its_first_block(good):
    model, _, _ = load_model(good)
    with torch.no_grad():  # a NaN that appears after loading (the load check would refuse it)
        model.get_parameter(DOWN)[3, 5] = float("nan")
    with pytest.raises(NonFiniteHiddenState, match=r"block 4 \(output\).*prompt 0"):
        extract_block_stats(model, ids(), batch_size=2, progress=False)


def test_an_overflow_to_inf_stops_the_extraction(good):
    # what a spike of 1e5 does in float16 (largest value 65504), here in float32: with gate = up = 1
    # every FFN unit computes silu(s) * s >= 0 of the same s, so the sum of 64 of them times 3e38 is inf
    model, _, _ = load_model(good)
    with torch.no_grad():
        for name, value in (("gate_proj", 1.0), ("up_proj", 1.0), ("down_proj", 3e38)):
            model.get_parameter(f"model.layers.0.mlp.{name}.weight").fill_(value)
    with pytest.raises(NonFiniteHiddenState, match=r"block 2 \(output\).*bfloat16 or float32"):
        extract_block_stats(model, ids(), batch_size=3, progress=False, collect_sinks=True)
