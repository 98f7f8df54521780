"""The one-shot GPU probe (benchmarks/gpu_ablation_probe.py) runs on CPU with a tiny preset: it stops
at its time limit, writes the final outputs, and reports tokens/s, peak memory and every evaluation."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_ablation_probe", ROOT / "benchmarks" / "gpu_ablation_probe.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)

TINY = {
    "preset": "tiny-probe",
    "data": {
        "source": "bigram_backcopy",
        "bigram_backcopy": {
            "n_tokens": 16,
            "n_triggers": 2,
            "doc_len": 64,
            "concentration": 0.3,
            "train_tokens": 20_000,
            "heldout_tokens": 4_000,
            "seed": 0,
        },
    },
    "baseline": {
        "model": {"d_model": 16, "n_layers": 1, "n_heads": 1, "d_head": 16, "d_ffn": 32},
        "train": {
            "batch_size": 4,
            "seq_len": 16,
            "total_tokens": 10_000_000,
            "lr": 3e-3,
            "bos": True,
            "device": "cpu",
            "threads": 1,
        },
    },
    "eval": {"every": 20, "windows": 8, "batch_size": 8},
    "variants": ["baseline"],
}


def test_probe_stops_at_its_time_limit_and_reports(tmp_path):
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump({"ablations": TINY}))
    probe.main(
        [
            "--config",
            str(cfg_path),
            "--data",
            "config",
            "--seconds",
            "1.5",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "probe"),
        ]
    )
    report = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert report["device"] == "cpu" and report["data"] == "bigram_backcopy"
    assert 0 < report["steps_done"] < report["steps_configured"] == 10_000_000 // 64  # stopped by the clock
    assert report["train_tokens"] == report["steps_done"] * 64 and report["tokens_per_s_compute"] > 0
    assert 1.5 <= report["train_wall_s"] < 30 and report["peak_rss_mib"] > 0
    evals = report["evaluations"]
    assert evals[0]["step"] == 0 and evals[-1]["step"] == report["steps_done"]  # the curve ends on an evaluation
    assert all(0 <= e["eval_sink_ratio"] <= 100 and e["eval_key0_mass_mean"] > 0 for e in evals)
    metrics = json.loads((tmp_path / "probe" / "baseline" / "metrics.json").read_text())
    assert metrics["time_limited"] and metrics["steps"] == report["steps_done"]
    assert report["final"]["sink_ratio"] == metrics["sink_ratio"]
    table = (tmp_path / "probe" / "probe.md").read_text()
    assert "| step | tokens | ppl | sink ratio %" in table and table.count("\n| ") >= len(evals) + 1


def test_probe_data_choices():
    gpu = yaml.safe_load((ROOT / "config" / "ablations-gpu.yaml").read_text())["ablations"]
    synthetic = probe.probe_config(gpu, "synthetic", None)
    assert synthetic["data"]["source"] == "bigram_backcopy" and synthetic["baseline"]["train"]["bos"]
    assert (
        synthetic["baseline"]["model"] == gpu["baseline"]["model"] and gpu["data"]["source"] == "hf"
    )  # preset untouched
    corpus = probe.probe_config(gpu, "corpus", "passages.jsonl")
    assert corpus["corpus"] == "passages.jsonl" and corpus["data"]["vocab_size"] == 32000
    assert probe.probe_config(gpu, "config", None)["data"] == gpu["data"]
