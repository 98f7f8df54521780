"""The workflow profiles: they parse, and a dry run with them schedules every job with the
resources a cluster needs (jobs asking for a GPU on a GPU partition with `--gpus`, the rest on a
CPU partition, memory and time growing with each retry)."""

import importlib.util
import re
from pathlib import Path

import pytest
import yaml
from workflow_helpers import REPO, TEST_TEXTS, snakemake

SLURM = REPO / "profiles" / "slurm"
LOCAL = REPO / "profiles" / "local"


def load_profile(directory: Path) -> dict:
    """The profile as Snakemake reads it (YTE templating included)."""
    import yte

    with open(directory / "config.yaml") as handle:
        return yte.process_yaml(handle, require_use_yte=True)


def dry_run_jobs(output: str) -> list[dict]:
    """Every job block of `snakemake -n` output: rule, wildcards and resources."""
    jobs = []
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", output):
        head = re.search(r"^(?:local)?rule (\S+):$", block, re.M)
        if not head:
            continue
        job = {"rule": head.group(1), "wildcards": "", "resources": {}}
        if match := re.search(r"^\s+wildcards: (.*)$", block, re.M):
            job["wildcards"] = match.group(1)
        if match := re.search(r"^\s+resources: (.*)$", block, re.M):
            job["resources"] = dict(item.split("=", 1) for item in match.group(1).split(", "))
        jobs.append(job)
    return jobs


def job_total(output: str) -> int:
    return int(re.search(r"^total\s+(\d+)$", output, re.M).group(1))


def test_profiles_parse_and_only_use_known_options():
    """Every key of both profiles is a snakemake command-line option (a typo would be ignored)."""
    from snakemake.cli import get_argument_parser

    known = {opt.lstrip("-") for action in get_argument_parser()._actions for opt in action.option_strings}
    for directory in (SLURM, LOCAL):
        profile = load_profile(directory)
        unknown = sorted(k for k in profile if k not in known)
        if directory == SLURM and importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
            # the plugin adds its `slurm-*` options to the parser only when installed
            unknown = [k for k in unknown if not k.startswith("slurm-")]
        assert not unknown, f"{directory.name}: not snakemake options: {unknown}"
    assert load_profile(SLURM)["executor"] == "slurm"
    assert "executor" not in load_profile(LOCAL)


def test_slurm_memory_and_runtime_grow_with_each_retry():
    """Resource expressions are evaluated by Snakemake with `attempt` = 1, 2, ...: check the growth."""
    profile = load_profile(SLURM)
    assert profile["retries"] >= 1
    tables = [profile["default-resources"], *profile["set-resources"].values()]
    for table in tables:
        for key in ("mem_mb", "runtime"):
            if key in table:
                first, second = (eval(str(table[key]), {"attempt": a}) for a in (1, 2))
                assert second > first > 0, f"{key}: {table[key]} does not grow with attempt"
    assert "mem_mb" in profile["default-resources"] and "runtime" in profile["default-resources"]


@pytest.fixture(scope="module")
def paper_like(tmp_path_factory):
    """A paper-like config that a dry run resolves offline: extraction on CUDA for two `local`
    models, and Section 4 ablations configured without a GPU (their trainer is GPU-capable)."""
    work = tmp_path_factory.mktemp("paper_like")
    ablations = yaml.safe_load((REPO / "config/ablations-cpu.yaml").read_text())["ablations"]
    ablations.update(variants=["baseline", "dhead-8"], seeds=[0], gpu=False)
    config = {
        "models": {name: {"source": "planted", "planted": {}} for name in ("model-a", "model-b")},
        "corpus": {"source": "local", "path": str(TEST_TEXTS)},
        "extraction": {"device": "cuda", "n_prompts": 8, "seq_len": 48, "batch_size": 4, "threads": 4, "mem_mb": 48000},
        "ablations": ablations,
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    return work


def model_rules_on_gpu() -> set[str]:
    """Rules that run a model and so ask for the GPU when extraction.device is cuda: the written-out
    rules with gpu=GPUS, and the generated measure rule of every analysis that reads a model and
    runs on the GPU (its registry entry's `gpu`)."""
    from spikesink.analyses import registry

    rules = set()
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^rule ", path.read_text(), flags=re.MULTILINE)[1:]:
            if re.search(r"^\s+gpu=GPUS,", block, flags=re.MULTILINE):
                rules.add(block.split(":", 1)[0])
    assert "gpu=GPUS if model_job and entry.gpu else 0" in (REPO / "workflow/rules/analyses.smk").read_text()
    return rules | {name for name, entry in registry().items() if entry.needs_model and entry.gpu}


class _PluginJob:
    """What the plugin's sbatch helpers read from a Snakemake job: name, threads, typed resources."""

    def __init__(self, job: dict):
        self.name = job["rule"]
        self.threads = 1
        self.resources = _Resources({k: int(v) if v.isdigit() else v for k, v in job["resources"].items()})


class _Resources(dict):
    __getattr__ = dict.__getitem__


class _Logger:
    def __getattr__(self, _name):
        return lambda *args, **kwargs: None


@pytest.mark.slow
def test_slurm_dry_run_sends_gpu_jobs_to_gpu_partitions(paper_like):
    """Every job that asks for a GPU gets `--gpus` and a GPU partition; every other job a CPU one.

    The dry run gives each job's resources as Snakemake evaluates them with this profile; the
    plugin's own functions then choose the partition (from profiles/slurm/partitions.yaml) and
    the GPU flags, exactly as they would at submission, without a cluster.
    """
    pytest.importorskip(
        "snakemake_executor_plugin_slurm",
        reason="the SLURM profile needs the optional extra: pip install -e '.[slurm]'",
    )
    from snakemake_executor_plugin_slurm.partitions import get_best_partition, read_partition_file
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    result = snakemake(paper_like, "-n", "--workflow-profile", str(SLURM))
    output = result.stdout + result.stderr
    assert f"Using workflow specific profile {SLURM}" in output
    jobs = dry_run_jobs(output)
    assert len(jobs) == job_total(output), "the dry run must list every job"
    rules = {job["rule"] for job in jobs}
    assert {"acquire_model", "extract_block_stats", "lifecycle", "ablation_train", "scorecard", "all"} <= rules

    partitions = read_partition_file(SLURM / load_profile(SLURM)["slurm-partition-config"])
    gpu_partitions = {p.name for p in partitions if p.limits.max_gpu > 0}
    assert gpu_partitions and gpu_partitions != {p.name for p in partitions}
    gpu_jobs = []
    for job in jobs:
        res, name = job["resources"], f"{job['rule']} {job['wildcards']}"
        assert int(res["mem_mb"]) > 0 and int(res["runtime"]) > 0, name
        gpus = int(res.get("gpu", 0))
        partition = get_best_partition(partitions, _PluginJob(job), _Logger())
        gres = set_gres_string(_PluginJob(job))
        if gpus > 0:
            gpu_jobs.append(job)
            assert partition in gpu_partitions, f"{name} asks for {gpus} GPU(s) but goes to {partition}"
            assert gres == f" --gpus={gpus}", (name, gres)
        else:
            assert partition not in gpu_partitions, f"{name} needs no GPU but goes to {partition}"
            assert gres == "", (name, gres)
    # extraction on cuda asks for one GPU per model; the ablation trainer was configured without
    assert sorted(job["wildcards"] for job in gpu_jobs if job["rule"] == "extract_block_stats") == [
        "model=model-a",
        "model=model-b",
    ]
    assert {job["rule"] for job in gpu_jobs} == model_rules_on_gpu()
    extraction = next(job for job in jobs if job["rule"] == "extract_block_stats")
    assert int(extraction["resources"]["mem_mb"]) == 48000, "extraction memory comes from extraction.mem_mb"


@pytest.mark.slow
def test_local_profile_dry_run(paper_like):
    result = snakemake(paper_like, "-n", "--workflow-profile", str(LOCAL))
    output = result.stdout + result.stderr
    assert f"Using workflow specific profile {LOCAL}" in output
    jobs = dry_run_jobs(output)
    assert len(jobs) == job_total(output) > 0
    assert "slurm_partition" not in output


def test_ablations_target_rebuilds_tables_after_a_preset_switch(paper_like, tmp_path):
    """paper_tables/ paths do not name the preset: a table left by another preset must not pass
    for this one's. The `ablations` target asks for the preset's own claims, so it reruns."""
    for stem in ("table6_heads",):
        for ext in ("csv", "md", "tex"):
            path = paper_like / "paper_tables" / f"{stem}.{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("left by another preset\n")
    output = snakemake(paper_like, "-n", "ablations").stdout
    rules = [job["rule"] for job in dry_run_jobs(output)]
    assert rules.count("ablation_train") == 2 and "ablation_table" in rules and "plot_head_dim" in rules
    # (a bare `paper_tables/table6_heads.csv` target would be satisfied by the stale file: Snakemake
    # 9 does not chase the missing inputs of an existing output, hence the docs use `ablations`)
