"""Loading an acquired model directory: eval mode, dtype/device choice, architecture check."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from conftest import tiny_config_dict

from spikesink.acquisition.models import acquire_model
from spikesink.instrumentation.loading import (
    ModelLoadError,
    load_model,
    max_positions,
    read_manifest,
    resolve_device,
    resolve_dtype,
    verify_weights,
)

SPEC = {
    "source": "random",
    "model_type": "llama",
    "seed": 11,
    "config": tiny_config_dict(num_hidden_layers=2, vocab_size=260, max_position_embeddings=96),
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    acquire_model("tiny", SPEC, root / "tiny", root / "cache")
    return root / "tiny"


def test_load_model_returns_eval_float32_model_tokenizer_and_manifest(model_dir):
    model, tokenizer, manifest = load_model(model_dir)
    assert not model.training
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert next(model.parameters()).device.type == "cpu"
    assert model.config._attn_implementation == "sdpa"
    assert manifest == read_manifest(model_dir) and manifest["name"] == "tiny"
    assert tokenizer("ab")["input_ids"] == [tokenizer.bos_token_id, 97, 98]
    assert max_positions(model) == 96
    # Weights are the acquired ones: two loads agree exactly, and differ from another seed.
    again, _, _ = load_model(model_dir, attn_implementation="eager")
    ids = torch.tensor([[256, 104, 105, 33]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, again(ids).logits, atol=1e-5)
    assert again.config._attn_implementation == "eager"


def test_bfloat16_on_cpu_is_allowed_with_a_warning(model_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="spikesink.instrumentation.loading"):
        model, _, _ = load_model(model_dir, dtype="bfloat16", device="cpu")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert "bfloat16 on CPU" in caplog.text
    auto, _, _ = load_model(model_dir, dtype="auto")
    assert next(auto.parameters()).dtype == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("float16", torch.device("cuda")) == torch.float16
    with pytest.raises(ModelLoadError, match="dtype 'float8'"):
        load_model(model_dir, dtype="float8")


def test_resolve_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ModelLoadError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(ModelLoadError, match="'tpu' is not one of cpu, cuda, auto"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_unsupported_architecture_is_refused_before_loading_weights(tmp_path, model_dir):
    from transformers import BloomConfig, BloomForCausalLM

    other = tmp_path / "bloom"
    BloomForCausalLM(BloomConfig(n_layer=1, hidden_size=32, n_head=4, vocab_size=260)).save_pretrained(other)
    shutil.copy(model_dir / "manifest.json", other / "manifest.json")
    with pytest.raises(ModelLoadError, match=r"'bloom' has no family adapter; supported: llama, mistral, qwen2, qwen3"):
        load_model(other)


def test_missing_manifest_and_changed_weights_are_reported(tmp_path, model_dir):
    with pytest.raises(ModelLoadError, match="no manifest.json.*acquire"):
        load_model(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    verify_weights(copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["safetensors_sha256"]["model.safetensors"] = "f" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="differ from the manifest"):
        load_model(copy, verify=True)
