"""Shared set-up for the tests that run the whole workflow with `snakemake` on a tiny config.

One end-to-end run costs minutes on a loaded 2-core CI box, so runs are memoised for the whole
pytest session (`shared`): the end-to-end, report, crash-resume and determinism tests all reuse
the same uninterrupted run (`baseline_run`), and the determinism test compares it with the
interrupted-and-resumed run of the crash test (`resumed_run`): two runs in all.

The tiny workspace is the catalog's test config, .test/config/config.yaml: a planted Llama (known
step-up block 4, step-down block 10, spike channels 7 and 23), a seeded random Gemma 3 with no
spike whose name has a dot, and the local text corpus in .test/texts. Each run copies the config
into its own work directory (with the corpus path made absolute), so two runs differ only there.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
TEST_CONFIG = REPO / ".test" / "config" / "config.yaml"
TEST_TEXTS = REPO / ".test" / "texts"
MODELS = ("planted", "tiny-gemma3.1")
PLANTED, RANDOM_MODEL = MODELS
SNAKEMAKE_TIMEOUT_S = 900

_RUNS: dict[str, object] = {}


def snakemake_command(workdir: Path, *args: str, configfile: Path | None = None) -> list[str]:
    """The command line every test uses: this checkout's Snakefile, 2 cores, an explicit config."""
    configfile = configfile or workdir / "config.yaml"
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(SNAKEFILE),
        "-d",
        str(workdir),
        "--configfile",
        str(configfile),
        "--cores",
        "2",
        *args,
    ]


def snakemake(
    workdir: Path, *args: str, check: bool = True, configfile: Path | None = None, timeout: float = SNAKEMAKE_TIMEOUT_S
) -> subprocess.CompletedProcess:
    """Run snakemake to completion; on failure raise with the tail of its output."""
    result = subprocess.run(
        snakemake_command(workdir, *args, configfile=configfile), capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def tiny_config(models: tuple[str, ...] = MODELS, **extraction) -> dict:
    """The test config with the corpus path made absolute, optionally fewer models / other extraction keys."""
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config["models"] = {name: config["models"][name] for name in models}
    config["corpus"]["path"] = str(TEST_TEXTS)
    config["extraction"].update(extraction)
    return config


def shared(key: str, factory: Callable[[], object]) -> object:
    """`factory()` once per pytest session: this module is imported once, so the memo is shared
    by every test module (module-scoped fixtures alone would rebuild per module)."""
    if key not in _RUNS:
        _RUNS[key] = factory()
    return _RUNS[key]


def new_workdir(tmp_path_factory, name: str) -> Path:
    """A fresh work directory with the test config."""
    work = tmp_path_factory.mktemp(name)
    (work / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    return work


def baseline_run(tmp_path_factory) -> Path:
    """The uninterrupted run of the tiny config (both models), once per session."""

    def make() -> Path:
        work = new_workdir(tmp_path_factory, "baseline")
        started = time.perf_counter()
        snakemake(work)
        (work / ".run_seconds").write_text(f"{time.perf_counter() - started:.1f}\n")
        return work

    return shared("baseline", make)


@dataclass
class ResumedRun:
    work: Path
    progress_at_kill: list[int]  # extraction percentages printed before the kill
    outputs_at_kill: list[str]  # files under results/ when the kill landed
    steps: list[str]  # what it took to finish: e.g. ["--unlock", "rerun"]
    first_rerun: str  # output of the plain rerun right after the kill
    final_rerun: str  # output of the rerun that finished the workflow


def mid_extraction(output: str) -> bool:
    """tqdm has reported extraction progress strictly between 0 and 100%."""
    return any(0 < p < 100 for p in extraction_progress(output))


def resumed_run(tmp_path_factory) -> ResumedRun:
    """The same tiny config in a fresh directory: SIGKILL every process of the run in the middle
    of extraction, then finish it with the same command, adding only what snakemake asks for."""

    def make() -> ResumedRun:
        work = new_workdir(tmp_path_factory, "resumed")
        killed, output = run_until(work, mid_extraction)
        assert killed, (
            "the run ended before extraction could be interrupted; make extraction "
            f"longer (extraction in .test/config/config.yaml):\n{output[-3000:]}"
        )
        at_kill = sorted(str(p.relative_to(work)) for p in work.glob("results/**/*") if p.is_file())
        steps, first = [], snakemake(work, check=False)
        result = first
        for _ in range(3):
            if result.returncode == 0:
                break
            text = result.stdout + result.stderr
            if "Directory cannot be locked" in text:
                steps.append("--unlock")
                snakemake(work, "--unlock")
                result = snakemake(work, check=False)
            elif "--rerun-incomplete" in text:
                steps.append("--rerun-incomplete")
                result = snakemake(work, "--rerun-incomplete", check=False)
            else:
                break
        assert result.returncode == 0, (
            f"resuming failed after {steps}:\n{result.stdout[-3000:]}\n{result.stderr[-4000:]}"
        )
        steps.append("rerun")
        return ResumedRun(
            work,
            extraction_progress(output),
            at_kill,
            steps,
            first.stdout + first.stderr,
            result.stdout + result.stderr,
        )

    return shared("resumed", make)


# ---------------------------------------------------------------- interrupting a run


def session_pids(sid: int) -> list[int]:
    """Every live process in session `sid` (the snakemake we started and all its jobs)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # fields after the parenthesised command: state ppid pgrp session ...
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def kill_session(process: subprocess.Popen) -> None:
    """SIGKILL the snakemake process and every job it started (same session), like a power cut."""
    sid = process.pid
    for _ in range(20):
        pids = session_pids(sid)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    process.wait(timeout=30)
    assert not session_pids(sid), "processes of the killed run survived"


def run_until(
    workdir: Path,
    predicate: Callable[[str], bool],
    *args: str,
    timeout: float = SNAKEMAKE_TIMEOUT_S,
    poll_s: float = 0.02,
) -> tuple[bool, str]:
    """Start snakemake in its own session; SIGKILL it as soon as `predicate(stderr so far)` holds.

    Returns (killed, output). killed is False when the run ended before the predicate held.
    """
    log = workdir / ".interrupted_run.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(
            snakemake_command(workdir, *args), stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        try:
            while process.poll() is None and time.monotonic() < deadline:
                if predicate(log.read_text(errors="replace")):
                    kill_session(process)
                    return True, log.read_text(errors="replace")
                time.sleep(poll_s)
        finally:
            if process.poll() is None:
                kill_session(process)
    return False, log.read_text(errors="replace")


def extraction_progress(output: str) -> list[int]:
    """The percentages tqdm printed for the extraction loop so far (`extract:  42%|...`)."""
    return [int(p) for p in re.findall(r"extract:\s+(\d+)%", output)]


# ---------------------------------------------------------------- comparing outputs


def output_files(workdir: Path) -> list[str]:
    """Relative paths of every final and cached output worth comparing between runs."""
    patterns = (
        "paper_tables/*",
        "figures/**/*.pdf",
        "figures/**/*.png",
        "results/**/*.json",
        "results/**/*.npz",
        "results/**/*.parquet",
        "results/**/*.safetensors",
        "resources/corpus/*",
        "resources/models/*/*",
    )
    files = {str(p.relative_to(workdir)) for pattern in patterns for p in workdir.glob(pattern) if p.is_file()}
    return sorted(f for f in files if not Path(f).name.startswith("."))


def npz_equal(a: Path, b: Path) -> bool:
    """Same array names, dtypes, shapes and values (NaN equal to NaN): npz bytes hold zip dates."""
    with np.load(a, allow_pickle=False) as x, np.load(b, allow_pickle=False) as y:
        if sorted(x.files) != sorted(y.files):
            return False
        return all(
            x[k].dtype == y[k].dtype
            and x[k].shape == y[k].shape
            and np.array_equal(x[k], y[k], equal_nan=x[k].dtype.kind in "fc")
            for k in x.files
        )


def safetensors_equal(a: Path, b: Path) -> bool:
    """Same tensor names, dtypes, shapes and values."""
    from safetensors.numpy import load_file

    x, y = load_file(str(a)), load_file(str(b))
    return sorted(x) == sorted(y) and all(
        x[k].dtype == y[k].dtype and x[k].shape == y[k].shape and np.array_equal(x[k], y[k], equal_nan=True) for k in x
    )


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every PNG chunk, IDAT payloads joined and decompressed to pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    chunks, idat, pos = [], b"", 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind, payload = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IDAT":
            idat += payload
        else:
            chunks.append((kind, payload))
    chunks.append((b"IDAT", zlib.decompress(idat)))
    return chunks


PDF_METADATA = re.compile(rb"/(CreationDate|ModDate) \([^)]*\)|/Producer \([^)]*\)|/ID \[[^\]]*\]")


def pdf_without_metadata(data: bytes) -> bytes:
    """PDF bytes with the dates, producer and file ID blanked: what may legitimately vary."""
    return PDF_METADATA.sub(b"", data)


def differing_files(a: Path, b: Path, files: list[str]) -> dict[str, str]:
    """{relative path: how it differs} for files whose bytes differ between work dirs a and b."""
    out = {}
    for rel in files:
        x, y = (a / rel).read_bytes(), (b / rel).read_bytes()
        if x == y:
            continue
        if rel.endswith(".npz"):
            out[rel] = "npz bytes differ, arrays equal" if npz_equal(a / rel, b / rel) else "npz arrays differ"
        elif rel.endswith(".safetensors"):
            same = safetensors_equal(a / rel, b / rel)
            out[rel] = f"safetensors bytes differ, tensors {'equal' if same else 'differ'}"
        elif rel.endswith(".png"):
            cx, cy = png_chunks(x), png_chunks(y)
            pixels = dict(cx).get(b"IDAT") == dict(cy).get(b"IDAT")
            kinds = sorted(
                {k.decode() for (k, v) in cx if (k, v) not in cy} | {k.decode() for (k, v) in cy if (k, v) not in cx}
            )
            out[rel] = f"png chunks differ: {kinds}; pixels {'equal' if pixels else 'differ'}"
        elif rel.endswith(".pdf"):
            same = pdf_without_metadata(x) == pdf_without_metadata(y)
            out[rel] = f"pdf bytes differ; {'equal' if same else 'different'} without dates/producer/ID"
        else:
            out[rel] = f"bytes differ ({len(x)} vs {len(y)} bytes)"
    return out
