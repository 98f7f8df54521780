"""The public API (spikesink.api): any analysis on a model already in memory, as a notebook runs it,
with the workflow's functions, settings and errors."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import spikesink
from spikesink.acquisition.planted import build_planted_llama, planted_tokenizer
from spikesink.analyses import UnknownAnalysisError, names

REPO = Path(__file__).resolve().parents[1]
TEXTS = REPO / ".test" / "texts"
SMALL = {
    "extraction": {"n_prompts": 16, "seq_len": 48},
    "heldout": {"n_prompts": 4, "seq_len": 48},
    "analyses": {
        "vocab_probe": {"limit": 256},
        "silu_regime": {"n_sentences": 16},
        "kv_cache": {"window": 32, "n_tokens": 128, "bin": 16},
        "implicit_params": {"calibration_prompts": 8},
    },
}


@pytest.fixture(scope="module")
def planted_study():
    model, info = build_planted_llama()
    study = spikesink.Study(spikesink.load_model(model, planted_tokenizer(), name="planted"), TEXTS, config=SMALL)
    return study, info


def test_an_analysis_runs_on_a_model_object_and_finds_the_planted_spike(planted_study):
    study, info = planted_study
    lifecycle = study.run("lifecycle")
    assert lifecycle.step_up == list(info["step_up_blocks"]) and lifecycle.step_down == list(info["step_down_blocks"])
    assert sorted(lifecycle.spike_channels) == sorted(info["spike_channels"])
    # what it read ran first, once, and is kept
    assert study.run("lifecycle") is lifecycle
    assert study.prompts("extraction").matrix().shape == (16, 48)


def test_every_analysis_runs_and_reports_like_the_workflow(planted_study, tmp_path):
    study, _ = planted_study
    results = study.run_all()
    assert set(results) == {n for n in names() if n != "architectures"}
    assert all(r.not_applicable is None for r in results.values()), {n: r.not_applicable for n, r in results.items()}
    scorecard = study.scorecard()
    assert {"3.1 life cycle", "3.4 normalization", "3.2 sinks"} <= set(scorecard["section"])
    collapse = scorecard[scorecard["claim"] == "spike tokens become nearly identical after the step-up block"]
    assert collapse["verdict"].tolist() == ["holds"]
    drawn = study.figure("kv_cache", tmp_path / "kv")
    assert (tmp_path / "kv.pdf").is_file() and (tmp_path / "kv.png").is_file()
    curve = results["kv_cache"].curve
    for condition, line in drawn[""].items():
        expected = curve[curve["condition"] == condition].set_index("position")["perplexity"]
        pd.testing.assert_series_equal(line, expected, check_names=False)
    table, caption = study.tables("implicit_params")[""]
    assert "Sun et al. 2024" in caption and set(table["mode"]) >= {"none", "own_mean", "zero"}


def test_a_result_saves_and_loads_like_a_workflow_result(planted_study, tmp_path):
    study, _ = planted_study
    result = study.run("rmsnorm_collapse")
    result.save(tmp_path / "collapse")
    loaded = type(result).load(tmp_path / "collapse")
    assert loaded.summary == result.summary
    pd.testing.assert_frame_equal(loaded.delimiters, result.delimiters)
    assert all(np.array_equal(loaded.matrices[k], result.matrices[k]) for k in result.matrices)


def test_an_analysis_that_does_not_apply_returns_its_reason(tmp_path):
    from spikesink.acquisition.models import acquire_model

    spec = {
        "source": "random",
        "model_type": "gemma3_text",
        "seed": 0,
        "config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "head_dim": 8, "vocab_size": 260, "max_position_embeddings": 256},
    }  # fmt: skip
    acquire_model("tiny-gemma3", spec, tmp_path / "gemma", tmp_path / "cache")
    model = spikesink.load_model(tmp_path / "gemma")  # an acquired directory
    study = spikesink.Study(model, TEXTS, config=SMALL)
    result = study.run("intervention")
    assert result.not_applicable == "no step-up block or spike channel was detected"
    rows = study.claims("intervention")
    assert [r.holds for r in rows] == [None] and rows[0].ours.startswith("n/a: ")


def test_bad_input_fails_with_the_reason():
    with pytest.raises(UnknownAnalysisError, match="registered: lifecycle.*vocab_probe"):
        spikesink.run("no_such_analysis", None)
    model, _ = build_planted_llama()
    wrapped = spikesink.load_model(model, planted_tokenizer())
    with pytest.raises(spikesink.APIError, match="extraction.seq_len"):
        spikesink.Study(wrapped, TEXTS, config={"extraction": {"seq_len": 1}})
    with pytest.raises(spikesink.APIError, match="mechanisms.silu: this key moved to analyses.silu_regime"):
        spikesink.Study(wrapped, TEXTS, config={"mechanisms": {"silu": {"seed": 1}}})
    with pytest.raises(ValueError, match="positions"):  # longer than the model's positions
        spikesink.Study(wrapped, TEXTS, config={"extraction": {"seq_len": 100_000}}).prompts("extraction")
    with pytest.raises(spikesink.APIError, match="needs texts"):
        spikesink.Study(wrapped).run("lifecycle")
    model.config.model_type = "bert"  # a family without an adapter
    with pytest.raises(ValueError, match="bert"):
        spikesink.load_model(model, planted_tokenizer())


def test_the_example_runs(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "examples"))
    import notebook_tour

    out = notebook_tour.main(["--small", "--out", str(tmp_path)])
    assert (tmp_path / "planted_lifecycle.png").is_file()
    assert out["results"]["lifecycle"].step_up == [4]
    sys.modules.pop("notebook_tour", None)


def test_import_spikesink_stays_light():
    import subprocess

    code = "import sys, spikesink; assert 'torch' not in sys.modules and 'spikesink.api' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
