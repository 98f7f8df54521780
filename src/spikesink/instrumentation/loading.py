"""Load an acquired model directory (`resources/models/<name>/`) for analysis.

Every stage loads models through `load_model`, so all of them agree on the weights format
(safetensors only), evaluation mode, the architecture check and how dtype and device are chosen.
The manifest written by `spikesink.acquisition.models` is the source of truth for remote code and provenance.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from spikesink.acquisition.manifest import safetensors_hashes
from spikesink.acquisition.spec import MANIFEST
from spikesink.instrumentation.families import adapter_for
from spikesink.io import read_json

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEVICES = ("cpu", "cuda", "auto")


class ModelLoadError(RuntimeError):
    """An acquired model directory that cannot be loaded as asked; the message says why."""


def read_manifest(model_dir: str | Path) -> dict:
    """The manifest of an acquired model; a directory without one was never (fully) acquired."""
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        raise ModelLoadError(
            f"{model_dir} has no {MANIFEST}: it is not an acquired model directory. Run the acquire "
            "step (spikesink.acquisition.models.acquire_model / the `acquire_model` rule) first"
        )
    return read_json(path)


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; asking for cuda without a GPU is an error."""
    if device not in DEVICES:
        raise ModelLoadError(f"device {device!r} is not one of {', '.join(DEVICES)}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was asked for but torch sees no CUDA GPU; use 'cpu' or 'auto'")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The torch dtype to load in; 'auto' is bfloat16 on CUDA and float32 on CPU.

    bfloat16 keeps float32's exponent range, so spikes of 1e4+ stay representable on GPU;
    on CPU half types are slow and gain nothing, so asking for them there logs a warning.
    """
    if dtype == "auto":
        dtype = "bfloat16" if device.type == "cuda" else "float32"
    if dtype not in DTYPES:
        raise ModelLoadError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)} or 'auto'")
    if device.type == "cpu" and dtype != "float32":
        log.warning("loading in %s on CPU: slow on most CPUs; float32 is the CPU default", dtype)
    return DTYPES[dtype]


def verify_weights(model_dir: str | Path, manifest: dict | None = None) -> None:
    """Re-hash the safetensors files and compare with the manifest (slow for large models)."""
    model_dir = Path(model_dir)
    manifest = manifest or read_manifest(model_dir)
    expected = manifest.get("safetensors_sha256", {})
    got = safetensors_hashes(model_dir, {})
    if got != expected:
        changed = sorted(set(got.items()) ^ set(expected.items()))
        raise ModelLoadError(f"{model_dir}: safetensors files differ from the manifest ({changed[:4]}); re-acquire it")


def load_model(
    model_dir: str | Path,
    dtype: str = "float32",
    device: str = "cpu",
    attn_implementation: str | None = None,
    verify: bool = False,
):
    """(model, tokenizer, manifest) for an acquired model directory, in eval mode.

    The architecture is checked from the config before any weight is read, so an unsupported
    family fails fast. attn_implementation defaults to the family's base implementation (sdpa;
    eager for Gemma 2, whose logit soft-capping sdpa refuses). `verify=True` re-hashes the
    weights against the manifest first.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    if verify:
        verify_weights(model_dir, manifest)
    trust = bool(manifest.get("trust_remote_code", False))
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust)
    try:
        adapter = adapter_for(config)
    except ValueError as error:
        raise ModelLoadError(f"{model_dir}: {error}") from None
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir,
        config=config,
        dtype=torch_dtype,
        use_safetensors=True,
        trust_remote_code=trust,
        attn_implementation=attn_implementation or adapter.base_attention,
    )
    model.to(torch_device).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust)
    return model, tokenizer, manifest


def load_tokenizer(model_dir: str | Path):
    """(tokenizer, max positions) of an acquired model directory, without reading weights."""
    from transformers import AutoConfig, AutoTokenizer

    manifest = read_manifest(model_dir)
    trust = bool(manifest.get("trust_remote_code", False))
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust)
    return AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust), _max_positions(config)


def _max_positions(config) -> int:
    value = getattr(config, "max_position_embeddings", None)
    if not value:
        raise ModelLoadError(f"{type(config).__name__} states no max_position_embeddings")
    return int(value)


def max_positions(model) -> int:
    """The longest sequence the model was configured for (its position / rope limit)."""
    return _max_positions(model.config)
