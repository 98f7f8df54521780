"""GGUF files: header and tensor-table check, and the one-time dequantisation to safetensors."""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spikesink.acquisition.spec import PROBE_TEXT, ModelSourceError, check_model_type, key


@dataclass(frozen=True)
class GgufInfo:
    architecture: str
    version: int
    n_tensors: int
    data_end: int  # byte offset just past the last tensor
    file_size: int


_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def inspect_gguf(path: Path, name: str = "?") -> GgufInfo:
    """Parse a GGUF header and tensor table and check that every tensor's bytes are present.

    transformers reads a truncated GGUF without noticing until a tensor is materialised (or not
    at all for metadata), so the check is done here, cheaply: strings are skipped, not decoded.
    """
    size = path.stat().st_size

    def corrupt(reason: str) -> ModelSourceError:
        return ModelSourceError(
            f"{path} is not a complete GGUF file ({reason}; {size} bytes): it is truncated or "
            f"corrupt. Check {key(name, 'packages')} / {key(name, 'files')} / {key(name, 'sha256')}"
        )

    if size < 24:
        raise corrupt("shorter than a GGUF header")
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as blob:
        if blob[:4] != b"GGUF":
            raise corrupt("no GGUF magic bytes")
        try:
            version, n_tensors, n_kv = struct.unpack_from("<IQQ", blob, 4)
            if version not in (2, 3):
                raise corrupt(f"unsupported GGUF version {version}")
            pos, meta = 24, {}
            for _ in range(n_kv):
                field, pos = _gguf_string(blob, pos)
                (kind,) = struct.unpack_from("<I", blob, pos)
                value, pos = _gguf_value(blob, pos + 4, kind)
                meta[field] = value
            tensors = []
            for _ in range(n_tensors):
                _, pos = _gguf_string(blob, pos)
                (n_dims,) = struct.unpack_from("<I", blob, pos)
                dims = struct.unpack_from(f"<{n_dims}Q", blob, pos + 4)
                ggml_type, offset = struct.unpack_from("<IQ", blob, pos + 4 + 8 * n_dims)
                pos += 4 + 8 * n_dims + 12
                tensors.append((dims, ggml_type, offset))
        except (struct.error, UnicodeDecodeError, IndexError) as error:
            raise corrupt(f"header cut short: {error}") from None
    alignment = int(meta.get("general.alignment", 32))
    data_start = (pos + alignment - 1) // alignment * alignment
    data_end = data_start + max((o + _gguf_nbytes(d, t) for d, t, o in tensors), default=0)
    if data_end > size:
        raise corrupt(f"its tensors need {data_end} bytes")
    architecture = meta.get("general.architecture")
    if not isinstance(architecture, str):
        raise corrupt("no general.architecture")
    return GgufInfo(architecture, version, len(tensors), data_end, size)


def _gguf_string(blob, pos: int, decode: bool = True) -> tuple[str | None, int]:
    (length,) = struct.unpack_from("<Q", blob, pos)
    end = pos + 8 + length
    if end > len(blob):
        raise IndexError("string runs past the end of the file")
    return (blob[pos + 8 : end].decode("utf-8") if decode else None), end


def _gguf_value(blob, pos: int, kind: int) -> tuple[Any, int]:
    """One metadata value; arrays are skipped (their length is all we need) except numbers."""
    if kind in _GGUF_SCALARS:
        fmt = "<" + _GGUF_SCALARS[kind]
        return struct.unpack_from(fmt, blob, pos)[0], pos + struct.calcsize(fmt)
    if kind == 8:
        return _gguf_string(blob, pos)
    if kind == 9:
        element, count = struct.unpack_from("<IQ", blob, pos)
        pos += 12
        if element in _GGUF_SCALARS:
            width = struct.calcsize("<" + _GGUF_SCALARS[element])
            if pos + count * width > len(blob):
                raise IndexError("array runs past the end of the file")
            return count, pos + count * width
        for _ in range(count):
            if element == 8:
                _, pos = _gguf_string(blob, pos, decode=False)
            else:
                _, pos = _gguf_value(blob, pos, element)
        return count, pos
    raise ValueError(f"unknown GGUF metadata type {kind}")


def _gguf_nbytes(dims: tuple[int, ...], ggml_type: int) -> int:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    n = 1
    for dim in dims:
        n *= int(dim)
    return n // block * type_size


def load_gguf(gguf_path: Path):
    """(model, tokenizer) from a GGUF, dequantized to plain float32 `nn.Linear` weights.

    `GgufConfig(dequantize=True)` is transformers' own way to unpack every weight at load time;
    with it the quantizer removes itself after loading (`remove_quantization_config`), so the
    model is an ordinary float32 model that `save_pretrained` accepts. Without it, transformers
    5.x may keep weights packed (when the `kernels` package is installed), and an attached GGUF
    quantizer makes `save_pretrained` refuse ("quantized with gguf and is not serializable").
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent,
        gguf_file=gguf_path.name,
        dtype=torch.float32,
        quantization_config=GgufConfig(dequantize=True),
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    return model.eval(), tokenizer


def detach_quantizer(model) -> None:
    """Make sure no GGUF quantizer state is left on a dequantized model (a no-op when clean).

    Older transformers versions left `hf_quantizer` and `config.quantization_config` in place
    even though every weight was already float32; the base quantizer's own
    `remove_quantization_config` clears exactly those.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config


def convert_gguf_to_safetensors(gguf_path: Path, out_dir: Path, name: str = "?") -> None:
    """Dequantize a GGUF once and save safetensors + tokenizer; verify the copy reloads exactly.

    Every saved tensor must be bit-identical to the GGUF-loaded one, and the reloaded directory
    must give bit-identical logits on a probe text (this also covers the config round trip:
    rope, eps, tied embeddings). The GGUF model is freed before the reload, so peak memory is
    one model, not two (Qwen2.5-0.5B in float32 is 2.5 GB).
    """
    import gc

    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    try:
        model, tokenizer = load_gguf(gguf_path)
    except Exception as error:  # transformers raises many types for a bad file
        raise ModelSourceError(
            f"{gguf_path} could not be loaded as a GGUF model ({type(error).__name__}: {error}). "
            f"Check {key(name, 'packages')} / {key(name, 'files')} / {key(name, 'sha256')}"
        ) from error
    detach_quantizer(model)
    packed = [n for n, m in model.named_modules() if type(m).__name__.lower().startswith("gguf")]
    if packed or any(p.dtype != torch.float32 for p in model.parameters()):
        raise ModelSourceError(f"{gguf_path} did not dequantize to float32 (packed: {packed[:3]})")
    check_model_type(name, model.config.model_type, "source")
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)

    state = model.state_dict()
    for path in sorted(out_dir.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as saved:
            for tensor_name in saved.keys():
                same = tensor_name in state and torch.equal(saved.get_tensor(tensor_name), state[tensor_name])
                if not same:
                    raise ModelSourceError(f"{path} holds {tensor_name} unlike the GGUF-loaded model")
    ids = torch.tensor([tokenizer(PROBE_TEXT)["input_ids"]])
    with torch.no_grad():
        expected = model(ids).logits
    del model, state
    gc.collect()
    reloaded = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32, use_safetensors=True)
    with torch.no_grad():
        if not torch.equal(reloaded.eval()(ids).logits, expected):
            raise ModelSourceError(f"the safetensors copy of {gguf_path} gives different logits")


def acquire_gguf_file(name: str, gguf_path: Path, out_dir: Path) -> dict:
    """An acquired model directory from a GGUF file on disk (`spikesink scan model.gguf`).

    The same checks and conversion as the pypi_gguf source: header, model type, dequantisation
    with a bit-exact reload; the manifest records the file and its sha256.
    """
    from spikesink.acquisition.manifest import build_manifest
    from spikesink.acquisition.spec import MANIFEST
    from spikesink.instrumentation.families import model_type_of_gguf
    from spikesink.io import atomic_path, sha256_file, write_json

    info = inspect_gguf(gguf_path, name)
    check_model_type(name, model_type_of_gguf(info.architecture), "source")
    digest = sha256_file(gguf_path)
    with atomic_path(out_dir) as staged:
        staged.mkdir(parents=True)
        convert_gguf_to_safetensors(gguf_path, staged, name)
        origin = {
            "gguf_file": str(gguf_path),
            "gguf_architecture": info.architecture,
            "gguf_sha256": digest,
            "original_sha256": {gguf_path.name: digest},
        }
        manifest = build_manifest(name, "gguf_file", origin, staged)
        write_json(staged / MANIFEST, manifest)
    return manifest
