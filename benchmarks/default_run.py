"""Where a workflow run's time goes: per rule, the jobs' wall and CPU seconds and their share of
the run, the cores kept busy, and the fixed start-up cost every model job pays.

    python benchmarks/default_run.py --fresh [--cores all] [-- <snakemake args>]   # clone, run, profile
    python benchmarks/default_run.py <workdir>                                     # profile a finished run

`--fresh` clones this checkout (committed state plus the working tree's diff) into a temporary
directory and runs `snakemake --cores <cores>` there, as a user's first run does (model download
included). Each job's CPU comes from the usage line its rule script writes last to its log
(spikesink.logs: user + system seconds of the process and its children), the timeline from
Snakemake's own log of the run. Shares and the utilisation (job CPU / (cores x run wall)) are
ratios, comparable across machines; the start-up floor is measured in this process's run, beside
the model jobs it is compared with.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
USAGE = re.compile(r"job usage: wall ([\d.]+) s, cpu ([\d.]+) s, peak rss (\d+) MB")
STAMP = re.compile(r"^\[(\w{3} \w{3}\s+\d+ [\d:]+ \d{4})\]$")


def jobs_of_run(workdir: Path) -> list[dict]:
    """Every job of the latest Snakemake run in workdir that ran jobs (later calls such as
    `--report` or a run with nothing to do are skipped): rule, log, start and end (seconds from the
    run's first job), and wall / CPU / peak memory from its log's usage line (None when missing)."""
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        raise SystemExit(f"{workdir}: no .snakemake/log/*.snakemake.log; run the workflow there first")
    for log in reversed(logs):
        rows = _jobs_of_log(workdir, log)
        if rows:
            return rows
    raise SystemExit(f"{workdir}: none of the {len(logs)} Snakemake logs records a job that ran")


def _jobs_of_log(workdir: Path, log: Path) -> list[dict]:
    now, current, jobs, ends = None, None, {}, {}
    for line in log.read_text().splitlines():
        if match := STAMP.match(line):
            now = dt.datetime.strptime(" ".join(match.group(1).split()), "%a %b %d %H:%M:%S %Y")
        elif match := re.match(r"(?:local)?rule (\w+):$", line):
            current = {"rule": match.group(1), "start": now, "log": None}
        elif current and (match := re.match(r"\s+log: (\S+)", line)):
            current["log"] = match.group(1)
        elif current and (match := re.match(r"\s+jobid: (\d+)", line)):
            jobs[int(match.group(1))] = current
        elif match := re.match(r"Finished jobid: (\d+)", line):
            ends[int(match.group(1))] = now
    if not jobs:
        return []
    origin = min(job["start"] for job in jobs.values())
    rows = []
    for jobid, job in jobs.items():
        usage = None
        if job["log"] and (workdir / job["log"]).is_file():
            found = USAGE.findall((workdir / job["log"]).read_text(errors="replace"))
            usage = tuple(map(float, found[-1])) if found else None
        end = ends.get(jobid)
        rows.append(
            {
                "rule": job["rule"],
                "start": (job["start"] - origin).total_seconds(),
                "end": (end - origin).total_seconds() if end else None,
                "wall": usage[0] if usage else None,
                "cpu": usage[1] if usage else None,
                "rss": usage[2] if usage else None,
            }
        )
    return rows


def startup_floor(workdir: Path, model: str | None) -> float | None:
    """CPU seconds of what every model job does before its own work: start Python, import the
    package, torch and transformers, load and check the model (measured now, in a fresh process)."""
    model_dir = workdir / "resources" / "models" / model if model else None
    if not model_dir or not model_dir.is_dir():
        return None
    code = (
        "import resource, spikesink.analyses.jobs\n"
        "from spikesink.instrumentation.model import InstrumentedModel\n"
        f"InstrumentedModel.load({str(model_dir)!r}, dtype='float32', device='cpu', name='floor')\n"
        "u = resource.getrusage(resource.RUSAGE_SELF); print(u.ru_utime + u.ru_stime)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=workdir)
    return float(out.stdout.strip().splitlines()[-1])


def report(workdir: Path, cores: int) -> str:
    rows = jobs_of_run(workdir)
    run_wall = max(r["end"] or r["start"] for r in rows)
    by_rule: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_rule[row["rule"]].append(row)
    total_cpu = sum(r["cpu"] or 0.0 for r in rows)
    missing = sorted({r["rule"] for r in rows if r["cpu"] is None and r["rule"] != "all"})
    lines = [
        f"run: {len(rows)} jobs, {run_wall:.0f} s from the first job's start to the last job's end on {cores} cores;",
        f"jobs' CPU {total_cpu:.0f} s, utilisation {total_cpu / (cores * run_wall):.2f} (job CPU / (cores x wall))",
        "",
        "| rule | jobs | CPU s | share of job CPU | wall s (sum) | CPU s per job | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    ranked = sorted(by_rule.items(), key=lambda item: -sum(r["cpu"] or 0.0 for r in item[1]))
    for rule, jobs in ranked:
        if rule == "all":
            continue
        cpu = sum(r["cpu"] or 0.0 for r in jobs)
        wall = sum(r["wall"] or 0.0 for r in jobs)
        rss = max((r["rss"] or 0.0 for r in jobs), default=0.0)
        lines.append(
            f"| {rule} | {len(jobs)} | {cpu:.1f} | {cpu / max(total_cpu, 1e-9):.1%} | {wall:.1f} | "
            f"{cpu / len(jobs):.1f} | {rss:.0f} |"
        )
    if missing:
        lines.append(f"\n(no usage line in the log of: {', '.join(missing)})")
    models = sorted(p.name for p in (workdir / "resources" / "models").glob("*") if p.is_dir())
    floor = startup_floor(workdir, models[0] if models else None)
    model_rules = {"extract_block_stats", *(e for e in _model_analyses())}
    model_jobs = [r for r in rows if r["rule"] in model_rules and r["cpu"]]
    if floor is not None and model_jobs:
        mean = sum(r["cpu"] for r in model_jobs) / len(model_jobs)
        lines += [
            "",
            f"start-up floor of a model job (Python, imports, loading {models[0]}): {floor:.1f} CPU s, "
            f"{floor / mean:.0%} of a model job's mean CPU ({mean:.1f} s over {len(model_jobs)} jobs); "
            f"{floor * len(model_jobs) / max(total_cpu, 1e-9):.1%} of the run's job CPU",
        ]
    return "\n".join(lines)


def _model_analyses() -> list[str]:
    from spikesink.analyses import registry

    return [name for name, entry in registry().items() if entry.needs_model]


def fresh_run(cores: str, extra: list[str]) -> tuple[Path, float]:
    """Clone this checkout (with its uncommitted diff) and run the workflow there; (dir, wall s)."""
    work = Path(tempfile.mkdtemp(prefix="spikesink-default-run-")) / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(work)], check=True)
    diff = subprocess.run(["git", "diff", "HEAD"], cwd=REPO, capture_output=True, check=True).stdout
    if diff:
        subprocess.run(["git", "apply", "-"], cwd=work, input=diff, check=True)
    start = time.perf_counter()
    with open(work / "run.log", "w") as log:
        subprocess.run(
            [sys.executable, "-m", "snakemake", "--cores", cores, *extra], cwd=work, stdout=log, stderr=log, check=True
        )
    return work, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", nargs="?", type=Path, help="a finished run's directory")
    parser.add_argument("--fresh", action="store_true", help="clone this checkout and run the workflow first")
    parser.add_argument("--cores", default="all")
    parser.add_argument("snakemake_args", nargs="*", help="after --: passed to snakemake (e.g. --configfile ...)")
    args = parser.parse_args(argv)
    if args.fresh == bool(args.workdir):
        parser.error("give a finished run's directory or --fresh (one of them)")
    cores = os.cpu_count() if args.cores == "all" else int(args.cores)
    if args.fresh:
        workdir, wall = fresh_run(args.cores, args.snakemake_args)
        print(f"fresh run in {workdir}: snakemake took {wall:.0f} s wall (start-up and DAG included)\n")
    else:
        workdir = args.workdir
    print(report(workdir, cores))


if __name__ == "__main__":
    main()
