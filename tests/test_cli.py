"""`spikesink scan`: the command line calls the workflow's own functions and writes its files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spikesink.cli import main
from spikesink.analyses.lifecycle.result import Lifecycle

REPO = Path(__file__).resolve().parents[1]
TEXTS = REPO / ".test" / "texts"


def test_help_lists_the_scan_command():
    result = subprocess.run(
        [sys.executable, "-m", "spikesink.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "scan" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "spikesink.cli", "scan", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and ".gguf" in result.stdout and "--corpus" in result.stdout


@pytest.fixture(scope="module")
def planted_dir(tmp_path_factory):
    from spikesink.acquisition.models import acquire_model

    out = tmp_path_factory.mktemp("scan") / "planted"
    acquire_model("planted", {"source": "planted", "planted": {"spike_magnitude": 5000.0}}, out, out.parent / "cache")
    return out


def test_scan_finds_the_planted_spike_and_writes_the_workflow_files(planted_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(
            [
                "scan",
                str(planted_dir),
                "--corpus",
                str(TEXTS),
                "--prompts",
                "6",
                "--seq-len",
                "32",
                "--out",
                str(out),
                "--cache",
                str(tmp_path / "cache"),
                "--json",
                "--quiet",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["step_up"] == [4] and summary["step_down"] == [10] and summary["spike_channels"][:2] == [7, 23]
    assert summary["family"] == "Llama" and summary["norm_placement"] == "pre"
    # the same files, in the same layout, as results/<model>/ of the workflow
    for name in ("lifecycle/result.json", "block_stats.npz", "block_stats.json", "sinks.npz", "prompts/extraction.npz"):
        assert (out / name).is_file(), name
    assert Lifecycle.load(out / "lifecycle").step_up == [4]


def test_scan_of_a_random_model_by_config_name(tmp_path, capsys):
    import yaml

    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "models": {
                    "tiny-qwen2.5": {
                        "source": "random",
                        "model_type": "qwen2",
                        "seed": 0,
                        "config": {
                            "hidden_size": 32,
                            "intermediate_size": 64,
                            "num_hidden_layers": 2,
                            "num_attention_heads": 4,
                            "num_key_value_heads": 2,
                            "vocab_size": 260,
                            "max_position_embeddings": 256,
                        },
                    }
                }
            }
        )
    )
    assert (
        main(
            [
                "scan",
                "tiny-qwen2.5",
                "--config",
                str(config),
                "--corpus",
                str(TEXTS),
                "--prompts",
                "4",
                "--seq-len",
                "24",
                "--out",
                str(tmp_path / "out"),
                "--cache",
                str(tmp_path / "cache"),
                "--quiet",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert text.startswith("tiny-qwen2.5: Qwen2 (qwen2), pre norm, SwiGLU, 4 blocks")
    assert "step-up blocks  none" in text and "sink ratio" in text


def test_scan_names_what_it_could_not_find(tmp_path):
    with pytest.raises(SystemExit, match="neither a directory, a .gguf file nor a model of"):
        main(["scan", "no-such-model", "--config", str(REPO / "config" / "config.yaml")])
