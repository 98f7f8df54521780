"""Atomic writes and hashing: an interrupted run must never leave a file that looks complete."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

OUTPUT_SUFFIXES = (".pdf", ".png", ".csv", ".md", ".tex")


def output_stem(path: str | os.PathLike) -> Path:
    """`path` without a figure/table suffix; other dots stay (`qwen2.5-0.5b` is a name, not a suffix)."""
    path = Path(path)
    return path.with_name(path.name[: -len(path.suffix)]) if path.suffix.lower() in OUTPUT_SUFFIXES else path


def with_extension(stem: str | os.PathLike, extension: str) -> Path:
    """stem + extension, never replacing part of a dotted name (unlike Path.with_suffix)."""
    stem = Path(stem)
    return stem.with_name(stem.name + extension)


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


# staged writes waiting for the end of an `outputs_together` block (innermost block last)
_deferred: list[list[tuple[Path, Path, Path]]] = []


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; move it into place only if the block succeeds.

    Works for files and directories alike. The temporary name starts with a dot so a glob
    for finished outputs never picks it up. Inside `outputs_together` the move waits for the
    end of that block.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    staged = tmp / target.name
    deferred = False
    try:
        yield staged
        if not staged.exists():
            raise FileNotFoundError(f"nothing was written to the staged path for {target}")
        if _deferred:
            _deferred[-1].append((staged, target, tmp))
            deferred = True
        else:
            _move_into_place(staged, target)
    finally:
        if not deferred:
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def outputs_together() -> Iterator[None]:
    """All atomic writes inside the block land together at its end, or none of them does.

    A job with several outputs (sinks.npz, block_stats.npz, block_stats.json) killed between two
    writes would otherwise leave some finished-looking outputs beside missing ones.
    """
    if _deferred:  # nested: the outermost block decides
        yield
        return
    batch: list[tuple[Path, Path, Path]] = []
    _deferred.append(batch)
    try:
        yield
    except BaseException:
        for _, _, tmp in batch:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        _deferred.pop()
    try:
        for staged, target, _ in batch:
            _move_into_place(staged, target)
    finally:
        for _, _, tmp in batch:
            shutil.rmtree(tmp, ignore_errors=True)


def _move_into_place(staged: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    os.replace(staged, target)


def remove_stale_staging(target: Path) -> None:
    """Delete staging folders a killed writer of `target` left behind (SIGKILL skips `finally`).

    A workflow gives each output one writer, so any earlier staging folder of the same target
    belongs to an interrupted run. The pattern is exact (mkdtemp's 8 random characters), so a
    sibling whose name merely starts the same way (`a.npz` vs `a.npz.gz`) is never touched.
    """
    pattern = re.compile(re.escape(f".{target.name}.") + r"[a-z0-9_]{8}\.tmp")
    for child in target.parent.iterdir():
        if pattern.fullmatch(child.name):
            shutil.rmtree(child, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def write_parquet(path: str | os.PathLike, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")
