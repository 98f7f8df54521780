"""Cost of planning the workflow: `snakemake -n` on the full DAG of the default config, against
the cost of merely starting Python and importing snakemake, measured in the same run.

    python benchmarks/bench_dag.py [--repeats 5] [--configfile config/config.yaml]

The dry run happens in a fresh empty work directory, so every job of the config is scheduled
(the full DAG, nothing cached). The commands alternate so that machine load hits all alike; min
and median wall seconds are printed for each, and the ratios of the dry run to the baselines:
`import snakemake` (interpreter + package, the floor) and `snakemake --version` (the command-line
start-up every snakemake call pays). The second ratio is what the Snakefile, its imports, config
validation and DAG building add; ratios stay comparable across machines, seconds do not.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(command: list[str], env: dict) -> tuple[float, str]:
    """Wall seconds of one run of `command`; fails loudly if it fails."""
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return elapsed, result.stdout + result.stderr


def summary(values: list[float]) -> str:
    return f"min {min(values):.2f} s  median {statistics.median(values):.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--configfile", default=str(REPO / "config" / "config.yaml"))
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="bench_dag_") as work:
        commands = {
            "import": [sys.executable, "-c", "import snakemake"],
            "version": [sys.executable, "-m", "snakemake", "--version"],
            "dry-run": [
                sys.executable,
                "-m",
                "snakemake",
                "-n",
                "-s",
                str(REPO / "Snakefile"),
                "-d",
                work,
                "--configfile",
                args.configfile,
                "--cores",
                "1",
            ],
        }
        _, output = timed(commands["dry-run"], env)  # warm-up (file cache), and the DAG size
        jobs = int(re.search(r"^total\s+(\d+)$", output, re.M).group(1))
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, command in commands.items():
                times[name].append(timed(command, env)[0])
    for name, values in times.items():
        print(f"{name:>8}: {summary(values)}")
    print(f"dry run of {jobs} jobs ({Path(args.configfile).name}), {args.repeats} repeats")
    for baseline, label in (("import", "import snakemake"), ("version", "snakemake --version")):
        ratio_min = min(times["dry-run"]) / min(times[baseline])
        ratio_median = statistics.median(times["dry-run"]) / statistics.median(times[baseline])
        print(f"ratio dry-run / {label}: min {ratio_min:.2f}x  median {ratio_median:.2f}x")


if __name__ == "__main__":
    main()
