"""One end-to-end `snakemake` run on a tiny config: a planted model and a seeded random Qwen3,
a local text corpus, every default output, then the caching guarantees."""

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TEXT = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife. However little known the feelings or views of such a man may be "
    "on his first entering a neighbourhood, this truth is so well fixed in the minds of the "
    "surrounding families, that he is considered the rightful property of some one or other of "
    "their daughters.\n\n"
)


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
               "--configfile", str(workdir / "config.yaml"), "--cores", "2", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from spikesink.planted import save_planted

    work = tmp_path_factory.mktemp("e2e")
    save_planted(work / "planted_model", spike_magnitude=5e3)
    texts = work / "texts"
    texts.mkdir()
    for i in range(4):
        (texts / f"doc{i}.txt").write_text("".join(f"Passage {j} of document {i}. " + TEXT for j in range(6)))
    config = {
        "models": {
            "planted": {"source": "local", "path": str(work / "planted_model")},
            "tiny-qwen3": {
                "source": "random",
                "model_type": "qwen3",
                "seed": 0,
                "config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                           "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
                           "vocab_size": 260, "max_position_embeddings": 256},
            },
        },
        "corpus": {"source": "local", "path": str(texts)},
        "extraction": {"n_prompts": 8, "seq_len": 48, "batch_size": 4, "seed": 0, "threads": 1},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    snakemake(work)
    return work, time.perf_counter() - started


@pytest.mark.slow
def test_every_default_output_exists(run):
    work, _ = run
    for model in ("planted", "tiny-qwen3"):
        for ext in ("pdf", "png"):
            assert (work / f"figures/lifecycle/{model}.{ext}").stat().st_size > 1000
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
    random = table[table["model"] == "tiny-qwen3"].iloc[0]
    assert pd.isna(random["step-up"]) or random["step-up"] == ""
    scorecard = pd.read_csv(work / "paper_tables/scorecard.csv")
    planted_claims = scorecard[scorecard["model"] == "planted"]
    assert len(planted_claims) >= 6
    # the random model has no spike: its life-cycle claims must fail, not pass vacuously
    assert not scorecard[scorecard["model"] == "tiny-qwen3"]["holds"].map({"yes": True, "NO": False}).any()


@pytest.mark.slow
def test_figure_target_is_cached_and_plot_change_reruns_only_the_plot(run):
    work, _ = run
    dry = snakemake(work, "figures/lifecycle/planted.png", "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["plots"] = {"lifecycle": {"height": 6.0}}
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    dry = snakemake(work, "figures/lifecycle/planted.png", "-n")
    out = dry.stdout + dry.stderr
    assert "plot_lifecycle" in out
    for upstream in ("extract_block_stats", "acquire_model", "rule lifecycle:"):
        assert upstream not in out, f"{upstream} must not rerun for a plotting change"


@pytest.mark.slow
def test_bad_config_fails_before_any_work(run, tmp_path):
    work, _ = run
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.yaml").write_text(yaml.safe_dump({"models": {"m": {"source": "local", "path": str(bad / "nope")}}}))
    result = snakemake(bad, "-n", check=False)
    assert result.returncode != 0
    assert "models.m.path" in result.stdout + result.stderr
    (bad / "config.yaml").write_text(yaml.safe_dump({"models": {"m": {"source": "pypi"}}}))
    result = snakemake(bad, "-n", check=False)
    assert result.returncode != 0 and "source" in result.stdout + result.stderr
    assert not (bad / "results").exists()
