"""One end-to-end `snakemake` run on the tiny test config (.test/config/config.yaml): a planted
model and a seeded random Gemma 3 whose name has a dot, a local text corpus, every default
output, then the caching guarantees."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from analysis_helpers import figure_files
from workflow_helpers import MODELS, PLANTED, RANDOM_MODEL, baseline_run, png_chunks, snakemake, tiny_config

from spikesink.analyses import get, registry, runner
from spikesink.analyses import jobs as analysis_jobs
from spikesink.config import validate_config

REPO = Path(__file__).resolve().parents[1]

# every per-model figure of the analysis units: figures/<analysis>/<model>[_<figure>]
PER_MODEL_FIGURES = (
    "lifecycle/{m}",
    "vocab_probe/{m}",
    "silu_regime/{m}",
    "amplifier/{m}_uk_norms",
    "amplifier/{m}_spectra",
    "rmsnorm_collapse/{m}",
    "sinks/{m}_key0_heatmap",
    "sinks/{m}_sinks_vs_spike",
    "sink_geometry/{m}",
    "intervention/{m}",
    "implicit_params/{m}",
    "attention_path/{m}",
    "act_scales/{m}",
    "quantization/{m}",
    "kv_cache/{m}",
)
PER_MODEL_TABLES = ("implicit_params/{m}", "attention_path/{m}", "quantization/{m}", "kv_cache/{m}")
CROSS_MODEL = (
    "figures/lifecycle/all_models.pdf",
    "figures/lifecycle/all_models.png",
    "figures/architectures/overview.pdf",
    "figures/architectures/overview.png",
    "results/claims/architectures.json",
    "results/architectures/result.json",
    "paper_tables/scorecard.md",
    "paper_tables/scorecard.csv",
) + tuple(
    f"paper_tables/{t}.{ext}"
    for t in ("table1_step_up_down", "table2_vocab_probe", "architectures")
    for ext in ("csv", "md", "tex")
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The session's uninterrupted run of the tiny config (shared with the report, crash and
    determinism tests) and its wall time."""
    work = baseline_run(tmp_path_factory)
    return work, float((work / ".run_seconds").read_text())


@pytest.mark.slow
def test_every_default_output_exists(run):
    work, _ = run
    for model in MODELS:  # every per-model figure under its full (dotted) name
        for figure in PER_MODEL_FIGURES:
            for path in figure_files(work / f"figures/{figure.format(m=model)}"):
                assert path.stat().st_size > 1000, path
        for table in PER_MODEL_TABLES:
            for ext in ("csv", "md", "tex"):
                assert (work / f"paper_tables/{table.format(m=model)}.{ext}").is_file()
        for name, entry in registry().items():  # every analysis's result, and its claims where it has some
            if entry.per_model:
                assert (work / f"results/{model}/{name}/result.json").is_file(), name
                assert (work / f"results/{model}/claims/{name}.json").is_file() == analysis_jobs.has_claims(entry)
    for rel in CROSS_MODEL:
        assert (work / rel).is_file(), rel
    for old in ("figures/silu", "figures/collapse", "figures/function", "paper_tables/function"):
        assert not (work / old).exists(), f"{old}: a path of the old layout"


@pytest.mark.slow
def test_every_job_logs_its_cost_and_the_profile_adds_them_up(run):
    """Each job's log ends with its wall, CPU and memory (exact, from the process itself); the
    default-run profile (benchmarks/default_run.py) reads them and Snakemake's log of the run."""
    work, _ = run
    logs = [p for p in (work / "logs").rglob("*.log")]
    assert logs
    for path in logs:
        found = re.findall(r"job usage: wall ([\d.]+) s, cpu ([\d.]+) s, peak rss (\d+) MB", path.read_text())
        assert found and float(found[-1][1]) > 0, f"{path}: no usage line"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "default_run.py"), str(work), "--cores", "2"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    profile = done.stdout
    for rule in ("acquire_model", "extract_block_stats", "vocab_probe", "scorecard"):
        assert re.search(rf"^\| {rule} \| \d+ \| [\d.]+ \|", profile, flags=re.MULTILINE), profile
    assert "no usage line" not in profile, profile
    assert re.search(r"start-up floor of a model job .*: [\d.]+ CPU s", profile), profile


def report_job(work, name, model, monkeypatch):
    """The report job of one analysis as the workflow builds it, reading the run's result files."""
    config = validate_config(yaml.safe_load((work / "config.yaml").read_text()), work)
    monkeypatch.chdir(work)
    entry = get(name)
    paper_models = {m: config["models"][m].get("paper_model") for m in MODELS}
    job = analysis_jobs.make_job(entry, model, list(MODELS), config, entry.report_reads, paper_models)
    result = entry.result_class.load(work / analysis_jobs.result_dir(entry, model))
    return job, result


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lifecycle", "sinks", "kv_cache", "implicit_params", "vocab_probe"])
def test_each_figure_shows_its_stored_result(run, name, tmp_path, monkeypatch):
    """Redrawn from the run's result files, a figure has the very pixels the workflow wrote: what a
    figure shows is its analysis's stored result (and the data drawn is that result's)."""
    work, _ = run
    job, result = report_job(work, name, PLANTED, monkeypatch)
    entry = job.analysis
    paths = {f.name: tmp_path / (f.name or "main") for f in entry.figures}
    drawn = runner.figures(result, job, paths)
    for figure in entry.figures:
        ours = png_chunks((tmp_path / f"{figure.name or 'main'}.png").read_bytes())
        workflow = png_chunks((work / f"{analysis_jobs.figure_stem(entry, figure, PLANTED)}.png").read_bytes())
        assert dict(ours)[b"IDAT"] == dict(workflow)[b"IDAT"], f"{name} {figure.name}: other pixels"
    if name == "lifecycle":
        np.testing.assert_allclose(drawn[""]["post_residual"]["top-1"], result.top1_by_block, rtol=1e-5)
        assert drawn[""]["step_up"] == [4] and drawn[""]["step_down"] == [10]
    elif name == "sinks":
        np.testing.assert_array_equal(drawn["key0_heatmap"]["key0_mass"], result.per_head["key0_mass_layer_head"])
        np.testing.assert_array_equal(drawn["sinks_vs_spike"]["top1_by_block"], job["lifecycle"].top1_by_block)
    elif name == "kv_cache":
        for condition, line in drawn[""].items():
            rows = result.curve[result.curve["condition"] == condition]
            np.testing.assert_array_equal(line.to_numpy(), rows["perplexity"].to_numpy())
        assert len(drawn[""]) == 4  # full attention and the window keeping 0, 1, 4 first tokens
    elif name == "implicit_params":
        for mode, bars in drawn[""].items():
            rows = result.table[result.table["mode"] == mode].set_index("block")["ratio"]
            pd.testing.assert_series_equal(bars, rows)
        table = pd.read_csv(work / f"paper_tables/implicit_params/{PLANTED}.csv")
        np.testing.assert_allclose(table["ratio"], result.table["ratio"])
    else:
        summary = result.summary
        assert all(counts.sum() == summary["n_probed"] for counts in drawn[""]["counts"].values())
        reference = min(summary["reference_median"][b] for b in summary["blocks"])
        assert drawn[""]["lines"]["median_ratio x reference median"] == pytest.approx(1000.0 * reference)


# The planted model's known answers (.test/config/config.yaml; spikesink.acquisition.planted):
# a spike at blocks 4-9 on channels 7 and 23 at -0.5, one stage, on position 0 and the delimiters,
# made by rank-one SiLU amplifiers along s*; four heads in layers 2-4 sinking on it; 16 exception
# bytes. The spike is inert for the random language model (the step-down cancels it, the logits
# hardly depend on it), so every claim that the model needs the spike or the sink fails.
PLANTED_VERDICTS = {
    "massive activations appear (rise - plateau - fall)": "holds",
    "property (i): massive activations only in intermediate layers": "holds",
    "property (ii): massive activations live in few channels": "holds",
    "property (iii): the spike channels spike together, on the same tokens": "holds",
    "property (iv): the ratios between the spike channels stay nearly fixed across tokens and prompts": "holds",
    "the spike is injected by one or two early FFN blocks (step-up)": "holds",
    "late blocks cancel the spike with the opposite sign (step-down)": "holds",
    "the spike rises, stays and falls once (one stage)": "holds",
    "massive activations are nearly constant across prompts": "holds",
    "setting the massive activations to their own mean keeps perplexity": "holds",
    "setting the massive activations to zero destroys the model": "fails",
    "attention sinks form on the spike token (key 0)": "holds",
    "sink keys live in a 1-2 dimensional subspace": "holds",
    "in sink heads non-sink queries sit closer to the sink key than to non-sink keys": "holds",
    "removing the spike (mean at block 4) removes the sink": "fails",  # the mean keeps the spike, and the sink
    # the edit fills token 0's spike channels with the ordinary tokens' mean, larger than the rest of
    # its residual here: RMSNorm restores the spike direction and the sink stays (test_planted_known_answers)
    "the sink comes from the spike through token 0's attention input (spike -> norm -> sparse key -> sink)": "fails",
    "almost every vocabulary item is a spike token at position 0": "inconclusive",  # 240/256, Wilson [90, 96] % vs 95 %
    "exceptions are tokens whose embeddings stay near initialisation": "holds",
    "the same items rarely spike at a later position": "holds",
    "S_k of spike channels has one dominant eigenvalue in the step-up blocks": "holds",
    "S_k of spike channels has one dominant eigenvalue in the step-down blocks": "holds",
    "spike channels share the top eigenvector s* in the step-up blocks": "holds",
    "spike channels share the top eigenvector s* in the step-down blocks": "holds",
    "spike channels have outlying norm(U_k) in the step-up/step-down blocks": "holds",
    "SiLU acts as the identity on spike tokens in step-up/step-down blocks": "holds",
    "the position-0 input of the step-up block is aligned with s*": "holds",
    "delimiter spike tokens attend strongly to themselves in early layers": "holds",
    "non-initial spike tokens are delimiters": "holds",
    "normalised spike states are sparse: the spike channels carry the energy": "holds",
    "spike tokens become nearly identical after the step-up block": "holds",
    "property (v): massive activations sit on few tokens": "holds",
    "spike tokens sit closer to the SiLU identity regime than ordinary tokens": "holds",
    # every norm weight is 1: no embedding aligns with the gain
    "delimiter embeddings align with the first norm's gain, which gives them an outsized magnitude": "fails",
    "keeping the spike tokens in full precision recovers per-tensor INT8 activations": "n/a",
    # the step-down block reads the normed spike (~sqrt(d) v): its down-projection input is the larger
    "the step-up block's down-projection input has the largest activation scale": "fails",
    "dropping the first tokens from a sliding-window cache raises perplexity": "fails",
    "keeping 1 first token(s) in the window restores perplexity": "n/a",
    "keeping 4 first token(s) in the window restores perplexity": "n/a",
    "attention at position 0 is a fixed linear map W_VO of the token": "holds",  # checks
    "after RMSNorm every coordinate obeys abs(h_i) <= sqrt(d) (maxabs(g) sqrt(d) with weight g)": "holds",
}


@pytest.mark.slow
def test_planted_model_is_recovered_through_the_workflow(run):
    work, _ = run
    table = pd.read_csv(work / "paper_tables/table1_step_up_down.csv", dtype=str)
    planted = table[table["model"] == "planted"].iloc[0]
    assert str(planted["step-up"]) == "4" and str(planted["step-down"]) == "10"
    assert planted["spike channels"] == "7 23"
    random = table[table["model"] == RANDOM_MODEL].iloc[0]
    assert pd.isna(random["step-up"]) or random["step-up"] == ""
    scorecard = pd.read_csv(work / "paper_tables/scorecard.csv", keep_default_na=False)
    planted_claims = scorecard[scorecard["model"] == "planted"]
    verdicts = dict(zip(planted_claims["claim"], planted_claims["verdict"]))
    wrong = {
        claim: (verdicts.get(claim), known) for claim, known in PLANTED_VERDICTS.items() if verdicts.get(claim) != known
    }
    assert not wrong, wrong  # claim: (ours, the planted answer)
    zero = "removing the spike (zero at block 4) removes the sink"
    assert verdicts[zero] in {"fails", "inconclusive"}  # the sink goes; the inert spike costs no perplexity
    assert float(planted_claims.set_index("claim").loc[zero, "value"]) == 1.0  # the sink ratio's drop
    # the random model has no spike: its claims must fail or read n/a, never pass vacuously
    random_claims = scorecard[scorecard["model"] == RANDOM_MODEL]
    assert set(random_claims["verdict"]) <= {"fails", "n/a"} and (random_claims["verdict"] == "n/a").any()
    na = random_claims[random_claims["verdict"] == "n/a"]
    assert na["ours"].str.startswith("n/a: ").all()


def dry_run_jobs(output: str) -> set[str]:
    return set(re.findall(r"^(?:local)?rule (\w+):", output, flags=re.MULTILINE))


@pytest.mark.slow
def test_figure_target_is_cached_and_plot_change_reruns_only_the_plot(run):
    work, _ = run
    dry = snakemake(work, "figures/lifecycle/planted.png", "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    # a changed copy of the config: the run directory is shared and must stay as it was
    config = yaml.safe_load((work / "config.yaml").read_text())
    config.setdefault("analyses", {}).setdefault("lifecycle", {})["figure"] = {"height": 6.0}
    changed = work.parent / f"{work.name}-plot-config.yaml"
    changed.write_text(yaml.safe_dump(config))
    dry = snakemake(work, "figures/lifecycle/planted.png", "-n", configfile=changed)
    out = dry.stdout + dry.stderr
    assert dry_run_jobs(out) == {"lifecycle_report"}, out[-3000:]
    for upstream in ("extract_block_stats", "acquire_model", "rule lifecycle:"):
        assert upstream not in out, f"{upstream} must not rerun for a plotting change"


@pytest.mark.slow
def test_changing_one_analysis_reruns_only_that_analysis(run):
    """One rule per analysis: new SiLU sentences rerun the sentence prompts, the SiLU measurement,
    its report and the scorecard, nothing else."""
    work, _ = run
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["analyses"]["silu_regime"]["seed"] = 5
    changed = work.parent / f"{work.name}-silu-config.yaml"
    changed.write_text(yaml.safe_dump(config))
    dry = snakemake(work, "-n", configfile=changed)
    jobs = dry_run_jobs(dry.stdout + dry.stderr)
    assert jobs == {"prompts", "silu_regime", "silu_regime_report", "scorecard", "all"}, jobs
    assert "wildcards: model=planted, prompt_set=sentences" in dry.stdout + dry.stderr


def job_threads(output: str) -> dict[str, int]:
    """Threads of each job of a dry run, by rule (Snakemake prints `threads:` above 1 only)."""
    found = {}
    for block in re.split(r"^\[.*\]$|^$", output, flags=re.MULTILINE):  # each job's lines follow its time stamp
        rule = re.search(r"^(?:local)?rule (\w+):", block, flags=re.MULTILINE)
        if rule:
            threads = re.search(r"^\s+threads: (\d+)", block, flags=re.MULTILINE)
            found[rule.group(1)] = int(threads.group(1)) if threads else 1
    return found


@pytest.mark.slow
def test_an_analysis_threads_schedule_its_job_and_rerun_nothing(run):
    """`analyses.<name>.threads` sets that model job's threads (the others keep extraction.threads);
    threads are a scheduling choice, not part of what is measured: a finished run has nothing to redo."""
    work, _ = run
    config = yaml.safe_load((work / "config.yaml").read_text())
    config.setdefault("extraction", {})["threads"] = 2
    config.setdefault("analyses", {}).setdefault("kv_cache", {})["threads"] = 1
    changed = work.parent / f"{work.name}-threads-config.yaml"
    changed.write_text(yaml.safe_dump(config))
    dry = snakemake(work, "-n", configfile=changed)
    assert dry_run_jobs(dry.stdout + dry.stderr) == set(), dry.stdout[-3000:]
    forced = snakemake(work, "-n", "--forcerun", "kv_cache", "intervention", configfile=changed)
    threads = job_threads(forced.stdout + forced.stderr)
    assert threads["kv_cache"] == 1 and threads["intervention"] == 2, threads


@pytest.mark.slow
def test_adding_a_model_reruns_only_that_models_jobs(run):
    """A user adds their own model to a finished run: its jobs and the jobs across models rerun;
    no per-model job of a model already there."""
    work, _ = run
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["models"]["added-llama"] = {
        "source": "random",
        "model_type": "llama",
        "seed": 3,
        "config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "vocab_size": 260, "max_position_embeddings": 256},
    }  # fmt: skip
    added = work.parent / f"{work.name}-added-config.yaml"
    added.write_text(yaml.safe_dump(config))
    dry = snakemake(work, "-n", configfile=added)
    out = dry.stdout + dry.stderr
    per_model = set(re.findall(r"wildcards: model=([^,\s]+)", out))
    assert per_model == {"added-llama"}, per_model
    assert "acquire_model" in dry_run_jobs(out) and "scorecard" in dry_run_jobs(out)


@pytest.mark.slow
@pytest.mark.parametrize(
    "models, named",
    [
        ({"m": {"source": "local", "path": "nope"}}, "models.m.path: directory 'nope' does not exist"),
        ({"m": {"source": "pypi"}}, "'pypi' is not one of ['pypi_gguf'"),  # the schema's enum ...
        ({"m": {"source": "random", "model_type": "bloom", "seed": 0}}, "models.m.model_type: model_type 'bloom'"),
    ],
)
def test_bad_config_fails_before_any_work(tmp_path, models, named):
    """A real run (not -n, whose "nothing written" holds for any config) stops at start-up: no job runs."""
    config = tiny_config()
    config["models"] = models
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and named in out, out[-3000:]
    if "pypi" in named:
        assert "models.m.source: 'pypi' is not one of" in out  # ... and the key it applies to
    assert "Job stats" not in out and "rule acquire" not in out
    for generated in ("results", "resources", "logs", "figures", "paper_tables"):
        assert not (tmp_path / generated).exists(), generated
