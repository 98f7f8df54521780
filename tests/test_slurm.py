"""The tiny .test config through `profiles/slurm` on a real single-node SLURM cluster.

`.ci/local-slurm` starts munged, slurmctld and slurmd (Debian's slurm-wlm and munge) with every
file in a scratch folder; the workflow then runs with the cluster profile exactly as on a cluster,
plus what this cluster needs: its partition file and squeue as the status source (there is no
accounting database). Every job must go through sbatch and finish COMPLETED in SLURM, the
planted model must be recovered as in the local run, and the run's report must pass the browser
check (scorecard first, every figure loads, no broken link).

Marked `slurm` (deselected by default: about 10 minutes, root, and the apt packages); `.ci/slurm`
runs it: `pytest -m slurm`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from workflow_helpers import REPO, new_workdir, snakemake_command

LOCAL_SLURM = REPO / ".ci" / "local-slurm"
SLURM_PROFILE = REPO / "profiles" / "slurm"

pytestmark = pytest.mark.slurm


def cluster_unavailable() -> str | None:
    """Why a local cluster cannot be started here, or None."""
    missing = [tool for tool in ("munged", "slurmctld", "slurmd", "sbatch", "squeue") if not shutil.which(tool)]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install -y slurm-wlm munge)"
    if os.geteuid() != 0:
        return "a local slurmd needs root"
    if subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode == 0:
        return "a SLURM controller already runs on this machine"
    if Path("/etc/slurm/slurm.conf").exists():
        return "/etc/slurm/slurm.conf exists: this machine has a SLURM configuration of its own"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running one-node cluster: (its folder, the environment that points the SLURM tools at it)."""
    if reason := cluster_unavailable():
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("slurm")
    started = subprocess.run([str(LOCAL_SLURM), "start", str(folder)], capture_output=True, text=True)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield folder, os.environ | {"SLURM_CONF": str(folder / "slurm.conf")}
    finally:
        stopped = subprocess.run([str(LOCAL_SLURM), "stop", str(folder)], capture_output=True, text=True)
        assert "stopped slurmctld" in stopped.stdout, stopped.stdout + stopped.stderr


def slurm_args(folder) -> list[str]:
    """The cluster profile plus this cluster's partition file and status source."""
    return [
        "--workflow-profile",
        str(SLURM_PROFILE),
        "--slurm-partition-config",
        str(folder / "partitions.yaml"),
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "5",
    ]


def test_local_slurm_refuses_a_second_cluster_and_stops_only_its_own(cluster, tmp_path):
    folder, _ = cluster
    second = subprocess.run([str(LOCAL_SLURM), "start", str(tmp_path)], capture_output=True, text=True)
    assert second.returncode == 1 and "already runs on this machine" in second.stderr
    again = subprocess.run([str(LOCAL_SLURM), "start", str(folder)], capture_output=True, text=True)
    assert again.returncode == 1 and "already runs from" in again.stderr
    nothing = subprocess.run([str(LOCAL_SLURM), "stop", str(tmp_path)], capture_output=True, text=True)
    assert "nothing of" in nothing.stdout
    assert subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """The tiny config run through the cluster: (work dir, snakemake's output, SLURM's job states)."""
    folder, env = cluster
    work = new_workdir(tmp_path_factory, "slurm_run")
    started = time.perf_counter()
    result = subprocess.run(
        snakemake_command(work, *slurm_args(folder)), capture_output=True, text=True, env=env, timeout=2400
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    (work / ".slurm_run_seconds").write_text(f"{time.perf_counter() - started:.1f}\n")
    lines = subprocess.run(
        ["squeue", "--states=all", "-h", "-o", "%i %T"], capture_output=True, text=True, env=env
    ).stdout.splitlines()
    return work, output, dict(line.split() for line in lines if line.strip())


def test_tiny_config_runs_every_job_through_slurm(slurm_run):
    work, output, states = slurm_run
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", output)
    total = int(re.search(r"^total\s+(\d+)$", output, re.M).group(1))
    local = set(re.findall(r"^localrule (\w+):", output, re.M))
    assert local <= {"all"}, f"jobs that ran outside SLURM: {local}"
    assert len(submitted) == total - len(local) > 20, (len(submitted), total)
    # SLURM's own record: every submitted job COMPLETED (finished jobs stay visible for MinJobAge)
    assert {states.get(job) for job in submitted} == {"COMPLETED"}, states

    table = pd.read_csv(work / "paper_tables/table1_step_up_down.csv", dtype=str)
    planted = table[table["model"] == "planted"].iloc[0]
    assert str(planted["step-up"]) == "4" and str(planted["step-down"]) == "10"
    assert (work / "paper_tables/scorecard.csv").stat().st_size > 0


def test_report_of_the_slurm_run_in_a_browser(slurm_run):
    """The same run's `snakemake --report`, opened in headless Chromium (spikesink.rehearsal.browser)."""
    from spikesink.rehearsal.browser import check_report

    if not shutil.which("chromium"):
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    work, _, _ = slurm_run
    report = work / "report.html"
    result = subprocess.run(snakemake_command(work, "--report", str(report)), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    check = check_report(report, work / "report.png")
    assert check.ok, check.problems()
    assert check.scorecard_rows == len(pd.read_csv(work / "paper_tables/scorecard.csv"))
