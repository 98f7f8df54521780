"""The manifest written beside every acquired model: provenance, hashes and shape, read back
from the files on disk (not trusted from the builder)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from spikesink import __version__
from spikesink.acquisition.spec import ModelSourceError, check_model_type, key
from spikesink.io import sha256_file


def build_manifest(name: str, source: str, origin: dict, model_dir: Path) -> dict:
    """Provenance plus the shape facts the analyses need, read back from the written files.

    Reading back (rather than trusting the builder) makes the manifest describe what is on disk.
    """
    from transformers import AutoConfig, AutoTokenizer

    trust = bool(origin.get("trust_remote_code", False))
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust)
    check_model_type(name, config.model_type, "source")
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust)
    vocab_size = int(config.vocab_size)
    if len(tokenizer) > vocab_size:
        raise ModelSourceError(
            f"{key(name, 'config.vocab_size')}: the tokenizer has {len(tokenizer)} ids but the model "
            f"only {vocab_size} embeddings; raise vocab_size to at least {len(tokenizer)}"
        )
    import tokenizers
    import torch
    import transformers

    n_heads = int(config.num_attention_heads)
    return {
        "name": name,
        "source": source,
        "origin": {k: v for k, v in origin.items() if k not in ("original_sha256",)},
        "original_sha256": origin.get("original_sha256", {}),
        "safetensors_sha256": safetensors_hashes(model_dir, origin.get("original_sha256", {})),
        "dtype": safetensors_dtype(model_dir),
        "model_type": config.model_type,
        "architectures": list(getattr(config, "architectures", None) or []),
        "n_layers": int(config.num_hidden_layers),
        "d_model": int(config.hidden_size),
        "n_heads": n_heads,
        "n_kv_heads": int(getattr(config, "num_key_value_heads", None) or n_heads),
        "head_dim": int(getattr(config, "head_dim", None) or config.hidden_size // n_heads),
        # GPT-2 names it n_inner (None: 4 d_model)
        "intermediate_size": int(
            getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * config.hidden_size
        ),
        "vocab_size": vocab_size,
        "tokenizer_size": len(tokenizer),
        "max_position_embeddings": int(config.max_position_embeddings),
        "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
        "bos_added_by_tokenizer": tokenizer_adds_bos(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "trust_remote_code": trust,
        "created_by": f"spikesink {__version__}",
        "library_versions": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "tokenizers": tokenizers.__version__,
        },
    }


def safetensors_hashes(model_dir: Path, known: dict[str, str]) -> dict[str, str]:
    """sha256 of each safetensors file in `model_dir`.

    `known` holds hashes a builder already computed on these very files (the copies it wrote),
    so multi-gigabyte checkpoints are hashed once, not twice.
    """
    return {path.name: known.get(path.name) or sha256_file(path) for path in sorted(model_dir.glob("*.safetensors"))}


def tokenizer_adds_bos(tokenizer) -> bool:
    """Whether encoding plain text puts the BOS id at position 0.

    This decides what the paper's "first token" is: a BOS token for Llama tokenizers, the first
    text token for Qwen and SmolLM2. Checked by encoding, not read from a flag, because flags and
    post-processors disagree across tokenizer classes.
    """
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    with_special = tokenizer("a b", add_special_tokens=True)["input_ids"]
    without = tokenizer("a b", add_special_tokens=False)["input_ids"]
    return len(with_special) > len(without) and with_special[0] == bos


_SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}


def safetensors_dtype(model_dir: Path) -> str:
    """The floating dtype that holds most weight elements, read from the safetensors headers."""
    counts: dict[str, int] = {}
    for path in model_dir.glob("*.safetensors"):
        for entry in safetensors_header(path).values():
            if not isinstance(entry, dict) or entry.get("dtype") not in _SAFETENSORS_DTYPES:
                continue
            n = 1
            for dim in entry["shape"]:
                n *= int(dim)
            dtype = _SAFETENSORS_DTYPES[entry["dtype"]]
            counts[dtype] = counts.get(dtype, 0) + n
    if not counts:
        raise ModelSourceError(f"{model_dir} holds no floating-point safetensors weights")
    return max(counts, key=counts.get)


def safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file (8-byte little-endian length, then JSON).

    Reading it also proves the file is not truncated before its header ends; a header that
    promises more bytes than the file has is reported as truncated.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) < 8:
            raise ModelSourceError(f"{path} is not a safetensors file (only {size} bytes)")
        (length,) = struct.unpack("<Q", raw)
        if length > size - 8:
            raise ModelSourceError(f"{path} is truncated or not a safetensors file")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ModelSourceError(f"{path} has a corrupt safetensors header: {error}") from None
    ends = [entry["data_offsets"][1] for k, entry in header.items() if k != "__metadata__"]
    if ends and 8 + length + max(ends) > size:
        raise ModelSourceError(
            f"{path} is truncated: its header needs {8 + length + max(ends)} bytes, the file has {size}"
        )
    return header
