"""Writing and reading analysis results: one file per stored field, result.json last (torch-free).

Every write is atomic (spikesink.io), and result.json, which holds the analysis name, the n/a
reason and the plain fields, is written after the others: a result directory without it was
interrupted. Empty fields of an n/a result are written as empty files of their kind, so the
workflow's outputs always exist.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from spikesink.analyses.unit import RESULT_FILE, STORES, Result
from spikesink.io import load_npz, read_json, write_json, write_npz, write_parquet


def _write(kind: str, path: Path, value) -> None:
    if kind == "parquet":
        import pandas as pd

        write_parquet(path, value if value is not None else pd.DataFrame())
    elif kind == "json":
        write_json(path, value if value is not None else {})
    elif kind == "npz":
        write_npz(path, **(value or {}))
    elif kind == "safetensors":
        import numpy as np
        from safetensors.numpy import save_file

        from spikesink.io import atomic_path

        with atomic_path(path) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in (value or {}).items()}, str(tmp))


def _read(kind: str, path: Path):
    if kind == "parquet":
        import pandas as pd

        return pd.read_parquet(path)
    if kind == "json":
        return _int_keys(read_json(path))
    if kind == "npz":
        return load_npz(path)
    from safetensors.numpy import load_file

    return load_file(str(path))


def save(result: Result, directory: Path) -> list[Path]:
    written = []
    plain = {"analysis": _analysis_name(type(result))}
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if "store" in f.metadata:
            path = directory / f"{f.name}{STORES[f.metadata['store']]}"
            _write(f.metadata["store"], path, value)
            written.append(path)
        else:
            plain[f.name] = value
    write_json(directory / RESULT_FILE, plain)
    return [*written, directory / RESULT_FILE]


def load(cls: type[Result], directory: Path) -> Result:
    marker = directory / RESULT_FILE
    if not marker.is_file():
        raise FileNotFoundError(f"{directory} holds no finished {_analysis_name(cls)} result ({RESULT_FILE} missing)")
    plain = read_json(marker)
    values = {}
    for f in dataclasses.fields(cls):
        if "store" in f.metadata:
            values[f.name] = _read(f.metadata["store"], directory / f"{f.name}{STORES[f.metadata['store']]}")
        elif f.name in plain:
            values[f.name] = plain[f.name]
    return cls(**values)


def _int_keys(value):
    """JSON turns integer keys (blocks, channels) into strings: turn them back, so a loaded result
    reads like the measured one."""
    if isinstance(value, dict):
        keys = list(value)
        if keys and all(isinstance(k, str) and k.lstrip("-").isdigit() for k in keys):
            return {int(k): _int_keys(v) for k, v in value.items()}
        return {k: _int_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_int_keys(v) for v in value]
    return value


def _analysis_name(cls: type) -> str:
    # spikesink.analyses.<name>.result
    return cls.__module__.split(".")[-2]
