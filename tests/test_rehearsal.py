"""The paper run's rehearsal: its config is paper.yaml with two kinds of change, its tiny models keep
the paper's architectures, and one of each tokenizer kind goes through the local hub into a
model the pipeline loads in bf16. (The whole chain, `.ci/rehearse`, runs by hand: README.)"""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from workflow_helpers import REPO, TEST_TEXTS

from spikesink.acquisition.models import acquire_model
from spikesink.config import validate_config
from spikesink.rehearsal.architectures import ARCHITECTURES, HEAD_DIM, build_repo, head_dim, tiny_config
from spikesink.rehearsal.costs import cost_table, parameter_count
from spikesink.rehearsal.hub_server import LocalHub
from spikesink.rehearsal.paper import (
    TOKEN,
    differences,
    machine_config,
    publish_paper_models,
    rehearsal_config,
    rehearsal_repo_id,
)
from spikesink.reporting import paper as paper_numbers

PAPER = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
TEXTS = [p.read_text() for p in sorted(TEST_TEXTS.glob("*.txt"))]


def test_rehearsal_config_is_paper_yaml_with_only_endpoint_and_repo_names_changed(tmp_path):
    config = rehearsal_config(PAPER, "http://127.0.0.1:8000")
    changed = differences(PAPER, config)
    hub_models = [m for m, e in PAPER["models"].items() if e["source"] == "hub"]
    assert len(hub_models) == 7
    assert sorted(changed) == sorted(f"models.{m}.{k}" for m in hub_models for k in ("endpoint", "repo_id"))
    for model in hub_models:
        assert config["models"][model]["repo_id"] == rehearsal_repo_id(PAPER["models"][model]["repo_id"])
    assert PAPER == yaml.safe_load((REPO / "config" / "paper.yaml").read_text()), "paper.yaml itself is untouched"
    # what the workflow reads: the config with this machine's overlay merged after it, validated
    merged = rehearsal_config(PAPER, "http://127.0.0.1:8000")
    merged["extraction"].update(machine_config(2, 20000)["extraction"])
    validate_config(merged, workdir=tmp_path)
    assert {e["dtype"] for e in merged["models"].values()} == {"bfloat16"}


@pytest.mark.parametrize("paper_model", sorted(ARCHITECTURES))
def test_tiny_architecture_keeps_what_the_pipeline_reads(paper_model):
    arch = ARCHITECTURES[paper_model]
    real, tiny = arch.config, tiny_config(arch)
    # the real config agrees with the paper's Table 10 and the hub id config/paper.yaml uses
    table10 = paper_numbers.MODELS[paper_model]
    assert (real["num_hidden_layers"], real["hidden_size"], real["num_attention_heads"]) == (
        table10["layers"],
        table10["d_model"],
        table10["heads"],
    )
    assert arch.repo_id == table10["hub_id"]
    assert any(e.get("paper_model") == paper_model and e["repo_id"] == arch.repo_id for e in PAPER["models"].values())
    kept = (
        "model_type",
        "vocab_size",
        "rms_norm_eps",
        "rope_theta",
        "rope_scaling",
        "max_position_embeddings",
        "tie_word_embeddings",
        "bos_token_id",
        "eos_token_id",
        "torch_dtype",
        "attention_bias",
    )
    assert {k: tiny.get(k) for k in kept} == {k: real.get(k) for k in kept}
    assert head_dim(real) == head_dim(tiny) == HEAD_DIM
    ratio = real["num_attention_heads"] // real["num_key_value_heads"]
    assert tiny["num_attention_heads"] == ratio * tiny["num_key_value_heads"]
    assert tiny["hidden_size"] * 16 == real["hidden_size"]
    assert tiny["num_hidden_layers"] == math.ceil(real["num_hidden_layers"] / 8)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["llama-2-7b", "qwen3-8b"])
def test_a_tiny_repository_goes_through_the_hub_into_a_bf16_model(model, tmp_path, monkeypatch):
    """Llama-2 (gated, SentencePiece-style BOS, float16 shards) and Qwen3 (QK-norm, no BOS, a
    tokenizer shorter than its embedding) from the local hub, as the rehearsal config names them."""
    from spikesink.instrumentation.loading import load_model

    paper = {"models": {model: PAPER["models"][model]}}
    arch = ARCHITECTURES[paper["models"][model]["paper_model"]]
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with LocalHub(tmp_path / "hub", tokens={TOKEN: "*"}) as hub:
        published = publish_paper_models(hub, paper, tmp_path / "repos", TEXTS)[model]
        spec = rehearsal_config(paper, hub.url)["models"][model]
        manifest = acquire_model(model, spec, tmp_path / "models" / model, tmp_path / "cache")
        fetched = {r.path.rsplit("/", 1)[-1] for r in hub.downloads()}
    tiny = tiny_config(arch)
    assert manifest["origin"]["commit"] == published["commit"] and not manifest["origin"]["revision_is_commit"]
    assert published["gated"] == model.startswith("llama")
    assert (manifest["n_heads"], manifest["n_kv_heads"], manifest["head_dim"]) == (
        tiny["num_attention_heads"],
        tiny["num_key_value_heads"],
        HEAD_DIM,
    )
    assert manifest["vocab_size"] == arch.config["vocab_size"] and manifest["tokenizer_size"] == arch.tokenizer_size
    assert manifest["bos_added_by_tokenizer"] == (arch.tokenizer != "qwen3")
    assert manifest["dtype"] == arch.config["torch_dtype"]
    assert len(manifest["safetensors_sha256"]) >= 2, "sharded, as published"
    assert not any(name.endswith((".bin", ".pth")) for name in fetched), fetched

    loaded, tokenizer, _ = load_model(tmp_path / "models" / model, dtype="bfloat16", device="cpu")
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    ids = tokenizer("It is a truth universally acknowledged", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hidden = loaded.model(ids).last_hidden_state
    assert hidden.shape == (1, ids.shape[1], tiny["hidden_size"]) and torch.isfinite(hidden.float()).all()


def test_build_repo_is_deterministic(tmp_path):
    arch = ARCHITECTURES["Llama-2-7B"]
    first = build_repo(arch, tmp_path / "a", TEXTS, seed=0)
    second = build_repo(arch, tmp_path / "b", TEXTS, seed=0)
    assert sorted(first) == sorted(second)
    assert all(first[name].read_bytes() == second[name].read_bytes() for name in first), (
        "same seed, same bytes, same commit"
    )


# the models' parameter counts as the hub's safetensors metadata states them
PUBLISHED_PARAMETERS = {
    "Llama-2-7B": 6_738_415_616,
    "Llama-2-13B": 13_015_864_320,
    "Llama-3-8B": 8_030_261_248,
    "Qwen2.5-7B": 7_615_616_512,
    "Qwen2.5-14B": 14_770_033_664,
    "Qwen3-8B": 8_190_735_360,
    "Qwen3-14B": 14_768_307_200,
}


def test_cost_arithmetic_starts_from_the_exact_parameter_counts():
    """The README's cost table: parameters counted from each config agree with the published counts
    (so the configs above are the real ones), bf16 weights are 2 bytes each."""
    for paper_model, published in PUBLISHED_PARAMETERS.items():
        assert parameter_count(ARCHITECTURES[paper_model].config) == published, paper_model
    rows = {row["model"]: row for row in cost_table(PAPER)}
    assert rows["qwen2.5-14b"]["weights_gib"] == pytest.approx(14_770_033_664 * 2 / 2**30)
    assert rows["qwen2.5-14b"]["forwards"] == 64 and rows["llama-2-7b"]["forwards"] == 32  # batch 4 vs 8
    assert rows["llama-2-7b"]["extraction_pflop"] == pytest.approx(2 * 6_738_415_616 * 256 * 512 / 1e15)
