"""config/paper.yaml rehearsed end to end on this machine: local hub -> SLURM -> bf16 -> report.

`rehearsal_config` derives the rehearsal's config from paper.yaml in code: every hub model's
repository is renamed to its tiny stand-in (`tiny-` before the name) and gets the local hub's
`endpoint`; nothing else changes, so the two cannot drift. What this machine cannot take from
paper.yaml (a CUDA device, 8 threads, 64 GB per job) is a separate overlay, `machine_config`,
merged after it on the command line and named as such in the summary.

`rehearse` runs the whole chain: build and publish the seven tiny repositories on a local hub
(the Llama ones gated), start a one-node SLURM cluster (.ci/local-slurm), run the workflow through
profiles/slurm with HF_TOKEN set, write the report, open it in headless Chromium, stop everything
it started, and write `rehearsal.json` with the times and what was checked.
"""

from __future__ import annotations

import copy
import html
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path

import yaml

from spikesink.acquisition.spec import GATED_PREFIXES
from spikesink.io import write_json, write_text
from spikesink.rehearsal.architectures import ARCHITECTURES, build_repo
from spikesink.rehearsal.hub_server import LocalHub

TINY_PREFIX = "tiny-"
# the local hub's only token: gated repositories answer 401 without it, as the real hub does
TOKEN = "hf_rehearsal"


def rehearsal_repo_id(repo_id: str) -> str:
    """meta-llama/Llama-2-7b-hf -> meta-llama/tiny-Llama-2-7b-hf: the same organisation (and so the
    same gating rule), a name that cannot be mistaken for the real model."""
    org, name = repo_id.split("/", 1)
    return f"{org}/{TINY_PREFIX}{name}"


def rehearsal_config(paper: Mapping, endpoint: str) -> dict:
    """paper.yaml for the local hub: each hub model's repo_id renamed and `endpoint` added, nothing else."""
    config = copy.deepcopy(dict(paper))
    for entry in config["models"].values():
        if entry.get("source") == "hub":
            entry["repo_id"] = rehearsal_repo_id(entry["repo_id"])
            entry["endpoint"] = endpoint
    return config


def machine_config(cpus: int, mem_mb: int) -> dict:
    """What this machine changes on top of paper.yaml: no GPU (bf16 on the CPU), one thread and a
    share of the node's memory per model job, so that SLURM can place the jobs at all."""
    return {"extraction": {"device": "cpu", "threads": 1, "mem_mb": max(2000, mem_mb // max(cpus, 1))}}


def differences(a, b, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested mappings (added or removed keys included)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += differences(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def publish_paper_models(hub: LocalHub, paper: Mapping, build_dir: Path, texts: Iterable[str], seed: int = 0) -> dict:
    """Build every hub model of paper.yaml shrunk (by its paper_model) and publish it under its
    rehearsal name, gated where the real one is; return {model: {repo_id, commit, files, bytes}}."""
    texts = list(texts)
    published = {}
    for name, entry in paper["models"].items():
        arch = ARCHITECTURES[entry["paper_model"]]
        if arch.repo_id != entry["repo_id"]:
            raise ValueError(f"models.{name}: repo_id {entry['repo_id']} is not the paper's {arch.repo_id}")
        files = build_repo(arch, build_dir / name, texts, seed=seed)
        gated = entry.get("gated", entry["repo_id"].startswith(GATED_PREFIXES))
        repo_id = rehearsal_repo_id(entry["repo_id"])
        commit = hub.publish(repo_id, files, gated=gated)
        published[name] = {
            "repo_id": repo_id,
            "commit": commit,
            "gated": bool(gated),
            "files": len(files),
            "bytes": sum(p.stat().st_size for p in files.values()),
        }
    return published


# ---------------------------------------------------------------- the whole chain


@contextmanager
def local_slurm(script: Path, folder: Path):
    """A one-node cluster from `script` (.ci/local-slurm) for the duration of the block."""
    started = subprocess.run([str(script), "start", str(folder)], capture_output=True, text=True)
    if started.returncode != 0:
        raise RuntimeError(f"local SLURM did not start: {started.stderr.strip() or started.stdout.strip()}")
    try:
        yield folder
    finally:
        subprocess.run([str(script), "stop", str(folder)], capture_output=True, text=True)


def slurm_arguments(folder: Path, profile: Path) -> list[str]:
    """The cluster profile as on a cluster, plus this cluster's partition file and status source."""
    return [
        "--workflow-profile",
        str(profile),
        "--slurm-partition-config",
        str(folder / "partitions.yaml"),
        "--slurm-status-command",
        "squeue",  # no accounting database (sacct) here
        "--slurm-init-seconds-before-status-checks",
        "5",
    ]


def node_resources() -> tuple[int, int]:
    mem_kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return os.cpu_count() or 1, int(mem_kb / 1024 * 0.9)


def rehearse(repo: Path, work: Path, texts: Iterable[str], seed: int = 0, log=print) -> dict:
    """Run config/paper.yaml's chain on this machine (module doc); return the summary written to
    work/rehearsal.json. Raises when a stage fails, after stopping what it started."""
    from spikesink.rehearsal.browser import check_report

    repo, work = Path(repo).resolve(), Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    paper = yaml.safe_load((repo / "config" / "paper.yaml").read_text())
    summary: dict = {"work": str(work), "seconds": {}}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        summary["seconds"][stage] = round(now - clock, 1)
        clock = now
        log(f"rehearsal: {stage} done in {summary['seconds'][stage]:.0f} s")

    with LocalHub(work / "hub", tokens={TOKEN: "*"}) as hub:
        summary["published"] = publish_paper_models(hub, paper, work / "repos", texts, seed=seed)
        lap("build and publish the tiny repositories")
        config = rehearsal_config(paper, hub.url)
        summary["config_differs_from_paper_yaml_in"] = sorted({d.rsplit(".", 1)[1] for d in differences(paper, config)})
        cpus, mem_mb = node_resources()
        machine = machine_config(cpus, mem_mb)
        summary["machine_overlay"] = machine
        write_text(
            work / "config.yaml",
            "# generated from config/paper.yaml by spikesink.rehearsal\n" + yaml.safe_dump(config, sort_keys=False),
        )
        write_text(work / "machine.yaml", "# this machine: no GPU, fewer cores\n" + yaml.safe_dump(machine))
        env = os.environ | {"HF_TOKEN": TOKEN, "HF_HOME": str(work / "hf-home")}
        env.pop("HF_HUB_OFFLINE", None)
        base = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(work)]
        configs = ["--configfile", str(work / "config.yaml"), str(work / "machine.yaml")]
        with local_slurm(repo / ".ci" / "local-slurm", work / "slurm") as folder:
            lap("start SLURM")
            run = subprocess.run(
                [*base, *configs, *slurm_arguments(folder, repo / "profiles" / "slurm")],
                env=env,
                capture_output=True,
                text=True,
            )
            write_text(work / "snakemake.log", run.stdout + run.stderr)
            lap("workflow through SLURM")
            if run.returncode != 0:
                raise RuntimeError(f"the workflow failed (exit {run.returncode}); see {work / 'snakemake.log'}")
            summary["slurm_jobs"] = len(set(_submitted(run.stdout + run.stderr)))
    report = work / "report.html"
    made = subprocess.run(
        [*base, *configs, "--cores", "1", "--report", str(report)], env=env, capture_output=True, text=True
    )
    if made.returncode != 0:
        raise RuntimeError(f"snakemake --report failed: {made.stderr[-2000:]}")
    lap("snakemake --report")
    check = check_report(report, work / "report.png")
    lap("report in Chromium")
    summary["report"] = {
        "ok": check.ok,
        "problems": check.problems(),
        "scorecard_rows": check.scorecard_rows,
        "results_loaded": sum(bool(r.get("ok")) for r in check.results),
        "results": len(check.results),
        "links": len(check.links),
        "screenshot": check.screenshot,
    }
    # paper.yaml asks for `main`: every model must be named as unpinned on the report's first page
    landing = html.unescape(report.read_text(encoding="utf-8").split('<script id="results">', 1)[0])
    warning = landing.split("Not reproducible as configured", 1)[1][:2000] if "Not reproducible" in landing else ""
    summary["report"]["unpinned_named_on_first_page"] = sorted(m for m in paper["models"] if f"{m} (main)" in warning)
    summary["seconds"]["total"] = round(sum(summary["seconds"].values()), 1)
    write_json(work / "rehearsal.json", summary)
    if not check.ok:
        raise RuntimeError("the report check failed: " + "; ".join(check.problems()))
    if summary["report"]["unpinned_named_on_first_page"] != sorted(paper["models"]):
        raise RuntimeError("the report's first page does not name every unpinned revision")
    return summary


def _submitted(output: str) -> list[str]:
    import re

    return re.findall(r"submitted with SLURM jobid (\d+)", output)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m spikesink.rehearsal.paper", description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path, help="a new folder for the run (hub, repositories, cluster, results)")
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="the spikesink checkout (default: here)")
    parser.add_argument("--texts", type=Path, default=None, help="text files to train the tiny tokenizers on")
    args = parser.parse_args(argv)
    texts_dir = args.texts or args.repo / ".test" / "texts"
    texts = [p.read_text(encoding="utf-8") for p in sorted(texts_dir.glob("*.txt"))]
    summary = rehearse(args.repo, args.work, texts)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
