"""`spikesink scan`: the command line calls the workflow's own functions and writes its files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spikesink.analyses.lifecycle.result import Lifecycle
from spikesink.cli import main

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


# ------------------------------------------------------------------------------------------
# errors: one line (what is wrong, what to do), a non-zero exit, nothing written


@pytest.fixture(scope="module")
def hf_llama(tmp_path_factory):
    """A tiny Llama as a plain Hugging Face directory (no manifest): what a user points scan at."""
    import shutil

    from conftest import tiny_config_dict

    from spikesink.acquisition.models import acquire_model

    root = tmp_path_factory.mktemp("hf")
    spec = {"source": "random", "model_type": "llama", "seed": 3, "config": tiny_config_dict(vocab_size=260)}
    acquire_model("llama", spec, root / "acquired", root / "cache")
    shutil.copytree(root / "acquired", root / "llama", ignore=shutil.ignore_patterns("manifest.json"))
    return root / "llama"


def bad_copy(hf_llama, target, model_type=None, nan_in=None):
    """hf_llama with config.json's model_type rewritten or a NaN in one weight."""
    import shutil

    shutil.copytree(hf_llama, target)
    if model_type:
        config = json.loads((target / "config.json").read_text())
        (target / "config.json").write_text(json.dumps({**config, "model_type": model_type}))
    if nan_in:
        from safetensors.torch import load_file, save_file

        weights = load_file(target / "model.safetensors")
        weights[nan_in][0, 0] = float("nan")
        save_file(weights, target / "model.safetensors", metadata={"format": "pt"})
    return target


BAD_CONFIG = {
    "models": {
        "fake": {"source": "pypi_gguf"},
        "typo": {"sorce": "local", "path": "/tmp"},
        "text": "just-a-string",
        "bloom": {"source": "random", "model_type": "bloom", "seed": 0},
        "gone": {"source": "local", "path": "/no/such/model"},
    }
}


def scan_error(args, tmp_path, capsys) -> str:
    """The one line `spikesink scan` prints for a bad model; checks the exit code and that nothing was written."""
    out = tmp_path / "out"
    code = main(
        ["scan", *args, "--out", str(out), "--cache", str(tmp_path / "cache"), "--corpus", str(TEXTS), "--quiet"]
    )
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spikesink scan: "), err
    assert not out.exists()
    return lines[0]


def test_scan_names_what_it_could_not_find(tmp_path, capsys):
    line = scan_error(["no-such-model", "--config", str(REPO / "config" / "config.yaml")], tmp_path, capsys)
    assert "neither a directory, a .gguf file nor a model of" in line and "smollm2-135m" in line
    line = scan_error([str(tmp_path / "nowhere" / "my-llama")], tmp_path, capsys)
    assert "nowhere/my-llama does not exist" in line


@pytest.mark.parametrize(
    "name, problems",
    [
        ("fake", "models.fake: 'packages' is a required property; models.fake: 'files' is a required property; "
         "models.fake: 'sha256' is a required property"),
        ("typo", "models.typo: 'source' is a required property"),  # not the keys of every source as well
        ("text", "models.text: 'just-a-string' is not of type 'object'"),
        ("bloom", "models.bloom.model_type: model_type 'bloom' has no family adapter; supported: llama, "),
        ("gone", "models.gone.path: directory '/no/such/model' does not exist; point it at a Hugging Face model"),
    ],
)  # fmt: skip
def test_scan_of_an_invalid_config_entry_names_its_key(tmp_path, capsys, name, problems):
    """The workflow's start-up checks, not a traceback naming a key derived from the bad entry."""
    import yaml

    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(BAD_CONFIG))
    line = scan_error([name, "--config", str(config)], tmp_path, capsys)
    assert line.startswith(f"spikesink scan: {config}: {problems}")
    assert line.endswith("(config/README.md describes every key)")
    assert line.count("models.") == problems.count("models.")


def test_scan_of_an_unsupported_model_type_names_the_directory_not_a_config_key(hf_llama, tmp_path, capsys):
    bloom = bad_copy(hf_llama, tmp_path / "bloom-model", model_type="bloom")
    line = scan_error([str(bloom)], tmp_path, capsys)
    assert f"{bloom}: model_type 'bloom' has no family adapter; supported: llama" in line
    assert "models." not in line


def test_scan_of_a_mismatched_checkpoint_or_nan_weights_stops_before_writing(hf_llama, tmp_path, capsys):
    neox = bad_copy(hf_llama, tmp_path / "neox", model_type="gpt_neox")
    line = scan_error([str(neox)], tmp_path, capsys)
    assert f"{neox}: the weights do not match config.json (model_type 'gpt_neox'" in line
    assert "gpt_neox.embed_in.weight" in line
    assert not list((tmp_path / "cache" / "models").iterdir())  # no bad copy is kept to be reused
    nan = bad_copy(hf_llama, tmp_path / "nan", nan_in="model.layers.1.mlp.down_proj.weight")
    line = scan_error([str(nan)], tmp_path, capsys)
    assert "model.layers.1.mlp.down_proj.weight holds non-finite values" in line
    with pytest.raises(Exception, match="holds non-finite values"):  # --debug: the traceback
        main(["scan", str(nan), "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "--debug"])


def test_a_scan_error_is_one_line_on_the_terminal(hf_llama, tmp_path):
    """The real process: no transformers load report, no progress bar, no traceback."""
    neox = bad_copy(hf_llama, tmp_path / "neox", model_type="gpt_neox")
    result = subprocess.run(
        [sys.executable, "-m", "spikesink.cli", "scan", str(neox), "--quiet", "--cache", str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("spikesink scan: "), result.stderr
    assert not (tmp_path / "results").exists()
