"""Every supported family through the whole workflow: a family is supported when its tiny random
model goes through every rule, figures and scorecard included, in one `snakemake --cores 2` run.

The models are the family tests' tiny configs (conftest.FAMILY_CONFIGS) as `source: random`
specs, so a family added to the adapters without a tiny config fails here by name. The same run
trains the smallest Section 4 variant (the synthetic baseline, one seed, a few steps), so the
ablation rules (data, train, the training-curve figure) run in a test too, not only in dry runs.
Marked `families`: `.ci/run` runs it as its own step after the README's test command.
"""

from __future__ import annotations

import time

import pandas as pd
import pytest
import yaml
from conftest import FAMILY_CONFIGS, family_spec, model_type_of
from workflow_helpers import TEST_TEXTS, snakemake

from spikesink.analyses import jobs as analysis_jobs
from spikesink.analyses import registry
from spikesink.instrumentation.families import SUPPORTED_MODEL_TYPES

pytestmark = [pytest.mark.families, pytest.mark.slow]
# one tiny model per model type; a type's layout variants ("falcon/40b") are covered by test_families.py
FAMILY_KEYS = sorted(key for key in FAMILY_CONFIGS if "/" not in key)
FAMILY_RUN_TIMEOUT_S = 1800


def model_name(key: str) -> str:
    return "tiny-" + key.replace("_", "-")


def every_family_config() -> dict:
    """Tiny everything: 8 prompts of 32 tokens, short windows, one Section 4 run of ~30 steps."""
    return {
        "models": {model_name(t): family_spec(t) for t in FAMILY_KEYS},
        "corpus": {"source": "local", "path": str(TEST_TEXTS)},
        "extraction": {"n_prompts": 8, "seq_len": 32, "batch_size": 4, "seed": 0, "threads": 1},
        "heldout": {"n_prompts": 4, "seq_len": 32},
        "analyses": {
            "silu_regime": {"n_sentences": 16},
            "kv_cache": {"window": 16, "n_tokens": 64, "keep": [0, 1, 4], "bin": 16},
            "implicit_params": {"calibration_prompts": 4},
            "act_scales": {"calibration_prompts": 4},
            "amplifier": {"n_prompts": 8},
            "rmsnorm_collapse": {"n_prompts": 8, "seq_len": 32},
            "sink_geometry": {"n_prompts": 8, "seq_len": 32, "tsne_points": 60, "tsne_iterations": 250},
            "spike_channels": {"n_prompts": 8, "seq_len": 32},
        },
        "ablations": {
            "preset": "families",
            "data": {
                "source": "bigram_backcopy",
                "bigram_backcopy": {
                    "n_tokens": 64,
                    "n_triggers": 3,
                    "doc_len": 256,
                    "concentration": 0.2,
                    "train_tokens": 200000,
                    "heldout_tokens": 20000,
                    "seed": 0,
                },
            },
            "baseline": {
                "model": {"d_model": 32, "n_layers": 1, "n_heads": 1, "d_head": 32, "d_ffn": 64, "max_seq_len": 32},
                "train": {
                    "seed": 0,
                    "batch_size": 32,
                    "seq_len": 32,
                    "total_tokens": 32768,
                    "lr": 0.003,
                    "bos": True,
                    "checkpoint_every": 16,
                    "log_every": 8,
                    "threads": 1,
                },
            },
            "eval": {"every": 16, "windows": 16, "batch_size": 16, "sink_eps": 0.3},
            "seeds": [0],
            "variants": ["baseline"],
        },
    }


@pytest.fixture(scope="module")
def family_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("families")
    (work / "config.yaml").write_text(yaml.safe_dump(every_family_config()))
    started = time.perf_counter()
    # the greedy scheduler: the ILP one (pulp) spent minutes of CPU choosing among ~700 ready jobs
    snakemake(work, "--scheduler", "greedy", timeout=FAMILY_RUN_TIMEOUT_S)
    seconds = time.perf_counter() - started
    print(f"every family through the workflow: {len(FAMILY_KEYS)} models in {seconds:.0f} s")
    return work


def test_every_supported_family_has_a_tiny_config():
    missing = sorted(set(SUPPORTED_MODEL_TYPES) - {model_type_of(key) for key in FAMILY_KEYS})
    assert not missing, f"supported families without a tiny config in tests/conftest.py FAMILY_CONFIGS: {missing}"


def _is_plot(path) -> bool:
    data = path.read_bytes()
    return data.startswith(b"\x89PNG") if path.suffix == ".png" else data.startswith(b"%PDF")


@pytest.mark.parametrize("model_type", FAMILY_KEYS)
def test_every_output_of_every_analysis_exists_for_the_family(family_run, model_type):
    work, name = family_run, model_name(model_type)
    for entry in registry().values():
        if not entry.per_model:
            continue
        wanted = list(analysis_jobs.result_files(entry, name))
        if analysis_jobs.has_claims(entry):
            wanted.append(analysis_jobs.claims_file(entry, name))
        for figure in entry.figures:
            stem = analysis_jobs.figure_stem(entry, figure, name)
            wanted += [f"{stem}.png", f"{stem}.pdf"]
        for rel in wanted:
            path = work / rel
            assert path.is_file() and path.stat().st_size > 0, f"{model_type}: {rel} missing or empty"
            if path.suffix in (".png", ".pdf"):
                assert _is_plot(path), f"{model_type}: {rel} is not a {path.suffix[1:]} file"


@pytest.mark.parametrize("model_type", FAMILY_KEYS)
def test_every_scorecard_row_is_a_value_or_says_why_not(family_run, model_type):
    scorecard = pd.read_csv(family_run / "paper_tables/scorecard.csv", keep_default_na=False)
    rows = scorecard[scorecard["model"] == model_name(model_type)]
    assert len(rows) >= 30, f"{model_type}: only {len(rows)} scorecard rows"
    assert set(rows["verdict"]) <= {"holds", "fails", "inconclusive", "n/a"}
    na = rows[rows["verdict"] == "n/a"]
    assert na["ours"].str.startswith("n/a: ").all(), na[~na["ours"].str.startswith("n/a: ")]
    assert (rows["ours"].str.len() > 0).all()


def test_the_section_4_rules_ran(family_run):
    """The smallest Section 4 run: synthetic data, one trained baseline, its training curves (a paper
    table needs the variants of that table, which this run does not train)."""
    run = family_run / "results/ablations/families/baseline/seed0"
    for name in ("metrics.json", "curve.parquet", "model.safetensors", "config.json"):
        assert (run / name).is_file(), f"Section 4: {name} missing"
    assert (family_run / "results/ablations/families/_data/train.bin").is_file()
    curves = family_run / "figures/ablations/training_curves.png"
    assert curves.is_file() and _is_plot(curves), "no Section 4 training-curve figure"
