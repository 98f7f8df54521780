"""One end-to-end `snakemake` run on the tiny test config (.test/config/config.yaml): a planted
model and a seeded random Gemma 3 whose name has a dot, a local text corpus, every default
output, then the caching guarantees."""

import re

import pandas as pd
import pytest
import yaml
from workflow_helpers import MODELS, RANDOM_MODEL, baseline_run, snakemake, tiny_config


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
        for figure in (
            "lifecycle/{m}",
            "vocab_probe/{m}",
            "silu/{m}",
            "amplifier/{m}_uk_norms",
            "amplifier/{m}_spectra",
            "collapse/{m}",
            "sinks/{m}_key0_heatmap",
            "sinks/{m}_sinks_vs_spike",
            "sinks/{m}_tsne",
            "sinks/{m}_intervention",
        ):
            for ext in ("pdf", "png"):
                assert (work / f"figures/{figure.format(m=model)}.{ext}").stat().st_size > 1000
    for ext in ("csv", "md", "tex"):
        assert (work / f"paper_tables/table1_step_up_down.{ext}").exists()
    assert (work / "paper_tables/scorecard.md").exists()


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
    assert len(planted_claims) >= 6
    # the random model has no spike: its claims must fail or read n/a, never pass vacuously
    random_claims = scorecard[scorecard["model"] == RANDOM_MODEL]
    assert set(random_claims["holds"]) <= {"NO", "n/a"} and (random_claims["holds"] == "n/a").any()
    na = random_claims[random_claims["holds"] == "n/a"]
    assert na["ours"].str.startswith("n/a: ").all()


@pytest.mark.slow
def test_figure_target_is_cached_and_plot_change_reruns_only_the_plot(run):
    work, _ = run
    dry = snakemake(work, "figures/lifecycle/planted.png", "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    # a changed copy of the config: the run directory is shared and must stay as it was
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["plots"] = {"lifecycle": {"height": 6.0}}
    changed = work.parent / f"{work.name}-plot-config.yaml"
    changed.write_text(yaml.safe_dump(config))
    dry = snakemake(work, "figures/lifecycle/planted.png", "-n", configfile=changed)
    out = dry.stdout + dry.stderr
    assert "plot_lifecycle" in out
    for upstream in ("extract_block_stats", "acquire_model", "rule lifecycle:"):
        assert upstream not in out, f"{upstream} must not rerun for a plotting change"


@pytest.mark.slow
def test_changing_one_analysis_reruns_only_that_analysis(run):
    """One rule per analysis: new SiLU sentences rerun the sentence prompts, the SiLU rule, its
    figure and the scorecard, nothing else."""
    work, _ = run
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["mechanisms"]["silu"]["seed"] = 5
    changed = work.parent / f"{work.name}-silu-config.yaml"
    changed.write_text(yaml.safe_dump(config))
    dry = snakemake(work, "-n", configfile=changed)
    jobs = set(re.findall(r"^rule (\w+):", dry.stdout + dry.stderr, flags=re.MULTILINE))
    assert jobs == {"prompts", "silu_regime", "plot_silu_regime", "scorecard", "all"}, jobs
    assert "wildcards: model=planted, prompt_set=sentences" in dry.stdout + dry.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "models, named",
    [
        ({"m": {"source": "local", "path": "nope"}}, "models.m.path: directory 'nope' does not exist"),
        ({"m": {"source": "pypi"}}, "'pypi' is not one of ['pypi_gguf'"),  # the schema's enum ...
        ({"m": {"source": "random", "model_type": "opt", "seed": 0}}, "models.m.model_type: model_type 'opt'"),
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
        assert "['models']['m']['source']" in out  # ... and the key it applies to
    assert "Job stats" not in out and "rule acquire" not in out
    for generated in ("results", "resources", "logs", "figures", "paper_tables"):
        assert not (tmp_path / generated).exists(), generated
