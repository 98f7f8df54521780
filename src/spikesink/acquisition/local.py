"""Source local: an existing Hugging Face model directory (safetensors only), also the shared
validation and copy of a downloaded hub snapshot."""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
from pathlib import Path

from spikesink.acquisition.manifest import safetensors_header
from spikesink.acquisition.spec import (
    MODEL_FILE_PATTERNS,
    PICKLE_SUFFIXES,
    TOKENIZER_FILES,
    ModelSourceError,
    check_model_type,
    key,
)
from spikesink.io import sha256_file

log = logging.getLogger(__name__)


def build_local(name: str, spec: dict, staged: Path, cache_dir: Path) -> dict:
    if not spec.get("path"):
        raise ModelSourceError(f"{key(name, 'path')} is required for source 'local'")
    source = Path(str(spec["path"])).expanduser()
    files = select_model_files(source, name, "path")
    copied = copy_model_files(files, staged)
    return {
        "path": str(source.resolve()),
        "trust_remote_code": trust_remote_code(name, spec, source),
        "original_sha256": {f.name: sha256_file(f) for f in copied},
    }


def select_model_files(source: Path, name: str, field: str) -> list[Path]:
    """The files of a Hugging Face model directory to copy, after checking it is complete.

    Only safetensors weights are accepted: pickle checkpoints (.bin, .pt...) can run code when
    loaded, so they are never copied or read, and a directory that has nothing else is refused.
    """
    where = key(name, field)
    if not source.exists():
        raise ModelSourceError(f"{where}: {source} does not exist; point it at a Hugging Face model directory")
    if not source.is_dir():
        raise ModelSourceError(f"{where}: {source} is not a directory")
    if not (source / "config.json").is_file():
        raise ModelSourceError(f"{where}: {source} has no config.json")
    check_model_type(name, json.loads((source / "config.json").read_text()).get("model_type"), field)
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
        raise ModelSourceError(f"{where}: {source} has no tokenizer files ({', '.join(TOKENIZER_FILES)})")
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


def trust_remote_code(name: str, spec: dict, source: Path) -> bool:
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
