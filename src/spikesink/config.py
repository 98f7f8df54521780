"""Checks the JSON schema cannot express, run at workflow start-up before any job.

Each problem names the config key and how to fix it. `settings_from_config` turns validated
config sections into the dataclasses the package functions take, so rules stay thin.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# torch-free: the family registry is data
from spikesink.instrumentation.families import BY_MODEL_TYPE, unsupported_message

# the torch-free settings module: the workflow imports this file while it builds its DAG
from spikesink.settings import ExtractionSettings, LifecycleSettings


class ConfigError(ValueError):
    pass


def check_config(config: dict, workdir: str | os.PathLike = ".") -> None:
    problems = []
    workdir = Path(workdir)
    for name, spec in config.get("models", {}).items():
        key = f"models.{name}"
        source = spec.get("source")
        if source == "local":
            path = Path(spec["path"])
            path = path if path.is_absolute() else workdir / path
            if not path.is_dir():
                problems.append(
                    f"{key}.path: directory {spec['path']!r} does not exist; point it at a Hugging Face model directory (config.json + *.safetensors + tokenizer)"
                )
            elif (path / "config.json").is_file():
                model_type = json.loads((path / "config.json").read_text()).get("model_type")
                if model_type not in BY_MODEL_TYPE:
                    problems.append(f"{key}.path: {unsupported_message(model_type)}")
        if source == "pypi_gguf" and len(spec.get("files", [])) != len(spec.get("packages", [])):
            problems.append(
                f"{key}.files: give one file glob per entry of {key}.packages ({len(spec.get('files', []))} globs for {len(spec.get('packages', []))} packages)"
            )
        if source == "random":
            if spec.get("model_type") not in BY_MODEL_TYPE:
                problems.append(f"{key}.model_type: {unsupported_message(spec.get('model_type'))}")
            cfg = spec.get("config", {})
            if "num_hidden_layers" in cfg and cfg["num_hidden_layers"] < 1:
                problems.append(f"{key}.config.num_hidden_layers must be >= 1")
        if spec.get("trust_remote_code") and source != "hub":
            problems.append(f"{key}.trust_remote_code only applies to source: hub")
    corpus = config.get("corpus", {})
    if corpus.get("source") == "local":
        path = corpus.get("path")
        if not path:
            problems.append("corpus.path: required when corpus.source is 'local' (a directory of UTF-8 .txt files)")
        elif not (Path(path) if Path(path).is_absolute() else workdir / path).is_dir():
            problems.append(f"corpus.path: directory {path!r} does not exist; give a directory of UTF-8 text files")
    extraction = config.get("extraction", {})
    if extraction.get("batch_size", 1) > extraction.get("n_prompts", 1):
        problems.append("extraction.batch_size: larger than extraction.n_prompts; lower it or raise n_prompts")
    problems += _prompt_subset_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


# analyses that read the first n extraction prompts, cut to seq_len tokens: (n, seq_len) when unset
SUBSET_DEFAULTS = {"mechanisms.amplifier": (64, None), "mechanisms.collapse": (64, 64), "sinks.geometry": (64, 64)}


def prompt_subset(config: dict, key: str) -> dict:
    """{n_prompts, seq_len} of an analysis that reads the extraction prompts: its own values, or
    its defaults capped at what the extraction sampled (a small extraction needs no other edit)."""
    section = config
    for part in key.split("."):
        section = section.get(part, {})
    extraction = config.get("extraction", {})
    n_max, len_max = extraction.get("n_prompts", 64), extraction.get("seq_len", 128)
    n_default, len_default = SUBSET_DEFAULTS[key]
    n = section.get("n_prompts") or min(n_default, n_max)
    length = section.get("seq_len") or min(len_default or len_max, len_max)
    return {"n_prompts": int(n), "seq_len": int(length)}


def _prompt_subset_problems(config: dict) -> list[str]:
    """Analyses that read the first n extraction prompts cut to seq_len tokens need that many."""
    extraction = config.get("extraction", {})
    n, length = extraction.get("n_prompts", 64), extraction.get("seq_len", 128)
    problems = []
    for key in SUBSET_DEFAULTS:
        section = config
        for part in key.split("."):
            section = section.get(part, {})
        if (section.get("n_prompts") or 0) > n:
            problems.append(
                f"{key}.n_prompts: {section['n_prompts']} > extraction.n_prompts = {n}; it reads the "
                "extraction prompts: lower it or raise extraction.n_prompts"
            )
        if (section.get("seq_len") or 0) > length:
            problems.append(f"{key}.seq_len: {section['seq_len']} > extraction.seq_len = {length}; lower it")
    if length < 5:
        problems.append("extraction.seq_len: the amplifier reads the first 4 tokens after any BOS: use at least 5")
    for key in ("implicit_params", "quantization"):
        if (config.get(key, {}).get("calibration_prompts") or 0) > n:
            problems.append(
                f"{key}.calibration_prompts: {config[key]['calibration_prompts']} > extraction.n_prompts = {n}; lower it"
            )
    kv = config.get("kv_cache", {})
    window, tokens = kv.get("window", 256), kv.get("n_tokens", 2048)
    if window < 1:
        problems.append(f"kv_cache.window: {window} must be >= 1")
    elif tokens < 2 * window:
        problems.append(
            f"kv_cache.n_tokens: {tokens} < 2 x kv_cache.window = {2 * window}: the window would evict too "
            "little to test; give a longer text or a smaller window"
        )
    if any(k < 0 or k >= window for k in kv.get("keep", [0, 1, 4])):
        problems.append(f"kv_cache.keep: {kv.get('keep')} must lie in [0, window = {window})")
    return problems


def extraction_settings(config: dict) -> ExtractionSettings:
    ext, spike = config.get("extraction", {}), config.get("spike", {})
    return ExtractionSettings(
        top_k=ext.get("top_k", 3),
        median_stride=ext.get("median_stride", 1),
        floor=spike.get("floor", 100.0),
        median_ratio=spike.get("median_ratio", 1000.0),
    )


def lifecycle_settings(config: dict) -> LifecycleSettings:
    spike, life = config.get("spike", {}), config.get("lifecycle", {})
    return LifecycleSettings(
        floor=spike.get("floor", 100.0),
        median_ratio=spike.get("median_ratio", 1000.0),
        **{k: v for k, v in life.items() if k in LifecycleSettings.__dataclass_fields__},
    )
