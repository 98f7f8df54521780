"""Shared set-up for the tests that run the whole workflow with `snakemake` on a tiny config.

One end-to-end run costs minutes on a loaded 2-core CI box, so runs are memoised for the whole
pytest session (`shared`): the end-to-end, report, crash-resume and determinism tests all reuse
the same uninterrupted run (`baseline_run`), and the determinism test compares it with the
interrupted-and-resumed run of the crash test (`resumed_run`): two runs in all.

The tiny workspace: a planted Llama (known step-up block 4, step-down block 10, spike channels
7 and 23) saved as a `local` model, a seeded random Qwen3 with no spike, and a local text corpus.
Model and corpus live outside the work directory and are shared by every run, so two runs differ
only in their work directory; the config files are byte-identical.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
TEXT = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife. However little known the feelings or views of such a man may be "
    "on his first entering a neighbourhood, this truth is so well fixed in the minds of the "
    "surrounding families, that he is considered the rightful property of some one or other of "
    "their daughters.\n\n"
)
TINY_QWEN3 = {
    "source": "random",
    "model_type": "qwen3",
    "seed": 0,
    "config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
               "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
               "vocab_size": 260, "max_position_embeddings": 256},
}
# 96 prompts in batches of 2: 48 forward passes per model, long enough (a second or more) for
# the crash test to interrupt extraction mid-way; the run's cost is dominated by job start-up
TINY_EXTRACTION = {"n_prompts": 96, "seq_len": 48, "batch_size": 2, "seed": 0, "threads": 1}
SNAKEMAKE_TIMEOUT_S = 900

_RUNS: dict[str, object] = {}


def snakemake_command(workdir: Path, *args: str, configfile: Path | None = None) -> list[str]:
    """The command line every test uses: this checkout's Snakefile, 2 cores, an explicit config."""
    configfile = configfile or workdir / "config.yaml"
    return [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir),
            "--configfile", str(configfile), "--cores", "2", *args]


def snakemake(workdir: Path, *args: str, check: bool = True, configfile: Path | None = None,
              timeout: float = SNAKEMAKE_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run snakemake to completion; on failure raise with the tail of its output."""
    result = subprocess.run(snakemake_command(workdir, *args, configfile=configfile),
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def write_inputs(directory: Path) -> tuple[Path, Path]:
    """Write the planted model and the text corpus once; return (model dir, text dir)."""
    from spikesink.acquisition.planted import save_planted

    model_dir, texts = directory / "planted_model", directory / "texts"
    if not model_dir.exists():
        save_planted(model_dir, spike_magnitude=5e3)
    if not texts.exists():
        texts.mkdir(parents=True)
        # 4 x 32 paragraphs of ~400 characters: enough passage-aligned spans for TINY_EXTRACTION
        for i in range(4):
            (texts / f"doc{i}.txt").write_text("".join(f"Passage {j} of document {i}. " + TEXT for j in range(32)))
    return model_dir, texts


def tiny_config(model_dir: Path, texts: Path, models: tuple[str, ...] = ("planted", "tiny-qwen3"),
                **extraction) -> dict:
    """The tiny config: the planted model and/or the random Qwen3 on the local corpus."""
    entries = {"planted": {"source": "local", "path": str(model_dir)}, "tiny-qwen3": TINY_QWEN3}
    return {
        "models": {name: entries[name] for name in models},
        "corpus": {"source": "local", "path": str(texts)},
        "extraction": {**TINY_EXTRACTION, **extraction},
        # the tiny corpus has ~130 distinct sentences
        "mechanisms": {"silu": {"n_sentences": 64}},
    }


def shared(key: str, factory: Callable[[], object]) -> object:
    """`factory()` once per pytest session: this module is imported once, so the memo is shared
    by every test module (module-scoped fixtures alone would rebuild per module)."""
    if key not in _RUNS:
        _RUNS[key] = factory()
    return _RUNS[key]


def shared_inputs(tmp_path_factory) -> tuple[Path, Path]:
    """(planted model dir, text dir), written once per session."""
    return shared("inputs", lambda: write_inputs(tmp_path_factory.mktemp("inputs")))


def new_workdir(tmp_path_factory, name: str) -> Path:
    """A fresh work directory whose config.yaml names the session's shared tiny inputs."""
    work = tmp_path_factory.mktemp(name)
    (work / "config.yaml").write_text(yaml.safe_dump(tiny_config(*shared_inputs(tmp_path_factory))))
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
    progress_at_kill: list[int]    # extraction percentages printed before the kill
    outputs_at_kill: list[str]     # files under results/ when the kill landed
    steps: list[str]               # what it took to finish: e.g. ["--unlock", "rerun"]
    first_rerun: str               # output of the plain rerun right after the kill
    final_rerun: str               # output of the rerun that finished the workflow


def mid_extraction(output: str) -> bool:
    """tqdm has reported extraction progress strictly between 0 and 100%."""
    return any(0 < p < 100 for p in extraction_progress(output))


def resumed_run(tmp_path_factory) -> ResumedRun:
    """The same tiny config in a fresh directory: SIGKILL every process of the run in the middle
    of extraction, then finish it with the same command, adding only what snakemake asks for."""

    def make() -> ResumedRun:
        work = new_workdir(tmp_path_factory, "resumed")
        killed, output = run_until(work, mid_extraction)
        assert killed, ("the run ended before extraction could be interrupted; make extraction "
                        f"longer (TINY_EXTRACTION):\n{output[-3000:]}")
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
        assert result.returncode == 0, f"resuming failed after {steps}:\n{result.stdout[-3000:]}\n{result.stderr[-4000:]}"
        steps.append("rerun")
        return ResumedRun(work, extraction_progress(output), at_kill, steps,
                          first.stdout + first.stderr, result.stdout + result.stderr)

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
        fields = stat[stat.rindex(")") + 2:].split()
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


def run_until(workdir: Path, predicate: Callable[[str], bool], *args: str, timeout: float = SNAKEMAKE_TIMEOUT_S,
              poll_s: float = 0.02) -> tuple[bool, str]:
    """Start snakemake in its own session; SIGKILL it as soon as `predicate(stderr so far)` holds.

    Returns (killed, output). killed is False when the run ended before the predicate held.
    """
    log = workdir / ".interrupted_run.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(snakemake_command(workdir, *args), stdout=handle, stderr=subprocess.STDOUT,
                                   start_new_session=True)
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
    patterns = ("paper_tables/*", "figures/**/*.pdf", "figures/**/*.png", "results/**/*.json",
                "results/**/*.npz", "results/**/*.parquet", "resources/corpus/*", "resources/models/*/*")
    files = {str(p.relative_to(workdir)) for pattern in patterns for p in workdir.glob(pattern) if p.is_file()}
    return sorted(f for f in files if not Path(f).name.startswith("."))


def npz_equal(a: Path, b: Path) -> bool:
    """Same array names, dtypes, shapes and values (NaN equal to NaN): npz bytes hold zip dates."""
    with np.load(a, allow_pickle=False) as x, np.load(b, allow_pickle=False) as y:
        if sorted(x.files) != sorted(y.files):
            return False
        return all(x[k].dtype == y[k].dtype and x[k].shape == y[k].shape
                   and np.array_equal(x[k], y[k], equal_nan=x[k].dtype.kind in "fc") for k in x.files)


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every PNG chunk, IDAT payloads joined and decompressed to pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    chunks, idat, pos = [], b"", 8
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind, payload = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
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
        elif rel.endswith(".png"):
            cx, cy = png_chunks(x), png_chunks(y)
            pixels = dict(cx).get(b"IDAT") == dict(cy).get(b"IDAT")
            kinds = sorted({k.decode() for (k, v) in cx if (k, v) not in cy} | {k.decode() for (k, v) in cy if (k, v) not in cx})
            out[rel] = f"png chunks differ: {kinds}; pixels {'equal' if pixels else 'differ'}"
        elif rel.endswith(".pdf"):
            same = pdf_without_metadata(x) == pdf_without_metadata(y)
            out[rel] = f"pdf bytes differ; {'equal' if same else 'different'} without dates/producer/ID"
        else:
            out[rel] = f"bytes differ ({len(x)} vs {len(y)} bytes)"
    return out
