"""The configuration: one schema with every default, validated once, read in one typed form.

`validate_config(config)` fills every default and checks the config against the schema: the base
sections in `schema.yaml` beside this file and one section `analyses.<name>` per registered
analysis, from that analysis's own `schema.yaml`. `check_config` then checks what a schema cannot
say (paths that exist, model types with an adapter, prompt subsets the extraction can feed). Each
problem names the key and the fix. Code reads settings as `Section`s (attribute access, frozen)
and `Shared` (the spike rule, sink eps and batch sizes every analysis uses); the public API
builds them from an empty config, i.e. from the schema's defaults.

Imported while the workflow builds its DAG: no torch here.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from spikesink.instrumentation.families import BY_MODEL_TYPE, unsupported_message

SCHEMA = Path(__file__).with_name("schema.yaml")

# keys of earlier versions, so an old config fails with where its keys went
MOVED = {
    "mechanisms.vocab_probe": "analyses.vocab_probe",
    "mechanisms.silu": "analyses.silu_regime",
    "mechanisms.amplifier": "analyses.amplifier",
    "mechanisms.collapse": "analyses.rmsnorm_collapse",
    "sinks.geometry": "analyses.sink_geometry",
    "sinks.intervention": "analyses.intervention",
    "implicit_params": "analyses.implicit_params",
    "attention_path": "analyses.attention_path",
    "quantization": "analyses.quantization (bits, claims.min_recovery) and analyses.act_scales (calibration_prompts)",
    "kv_cache": "analyses.kv_cache",
    "lifecycle": "analyses.lifecycle",
    "claims": "analyses.lifecycle.claims",
    "plots": "analyses.lifecycle.figure",
}


class ConfigError(ValueError):
    pass


# ------------------------------------------------------------------------------------------
# Schema with defaults
# ------------------------------------------------------------------------------------------


@cache
def schema() -> dict:
    """The whole schema: the base sections and one section per registered analysis."""
    from spikesink.analyses import registry

    base = yaml.safe_load(SCHEMA.read_text())
    sections = base["properties"]["analyses"].setdefault("properties", {})
    for name, entry in registry().items():
        path = entry.folder / "schema.yaml"
        fragment = yaml.safe_load(path.read_text()) if path.is_file() else {}
        sections[name] = {"type": "object", "additionalProperties": False, "default": {}, **(fragment or {})}
        properties = sections[name].setdefault("properties", {})
        if entry.needs_model:
            properties.setdefault("threads", THREADS_KEY)
    return base


# every analysis that runs a model has this key (a scheduling choice: not part of what its job
# measures, so changing it reruns nothing)
THREADS_KEY = {
    "type": ["integer", "null"],
    "minimum": 1,
    "default": None,
    "description": "threads of its model job (null: extraction.threads)",
}


def _validator_with_defaults():
    """A jsonschema validator that also fills every default it passes (like Snakemake's)."""
    from jsonschema import Draft202012Validator, validators

    check_properties = Draft202012Validator.VALIDATORS["properties"]

    def fill(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, properties, instance, schema)

    return validators.extend(Draft202012Validator, {"properties": fill})


def validate_config(config: dict, workdir: str | os.PathLike = ".", models: bool = True) -> dict:
    """Fill the defaults into `config` (in place) and check it; raise ConfigError naming the keys.
    models=False: settings only, no `models` section (the public API's config)."""
    problems = _moved_keys(config)
    raw = copy.deepcopy(config)  # what the user wrote, before the defaults
    if not problems:
        full = schema()
        if not models:
            full = {**full, "required": [r for r in full.get("required", []) if r != "models"]}
        validator = _validator_with_defaults()(full)
        for error in sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path)):
            where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
            problems.append(f"{where}: {error.message}")
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    check_config(config, workdir, raw)
    return config


def _moved_keys(config: Mapping) -> list[str]:
    problems = []
    for old, new in MOVED.items():
        section = config
        for part in old.split("."):
            section = section.get(part) if isinstance(section, Mapping) else None
        if section is not None:
            problems.append(f"{old}: this key moved to {new} (config/README.md lists every key)")
    return problems


def analysis_section(name: str, values: Mapping | None = None) -> dict:
    """One analysis's section with its defaults filled (for the API: `values` are overrides)."""
    from jsonschema import ValidationError

    section = copy.deepcopy(dict(values or {}))
    try:
        _validator_with_defaults()(schema()["properties"]["analyses"]["properties"][name]).validate(section)
    except ValidationError as error:
        where = ".".join(str(p) for p in error.absolute_path)
        raise ConfigError(f"analyses.{name}{'.' + where if where else ''}: {error.message}") from None
    return section


def defaults() -> dict:
    """A config with every default (and no models): what the public API runs with."""
    return copy.deepcopy(_defaults())


@cache
def _defaults() -> dict:
    config: dict = {}
    schema_without_models = {**schema(), "required": []}
    _validator_with_defaults()(schema_without_models).validate(config)
    return config


# ------------------------------------------------------------------------------------------
# Typed settings
# ------------------------------------------------------------------------------------------


class Section(Mapping):
    """A validated config section, read as attributes (`section.claims.min_drop`); immutable."""

    def __init__(self, values: Mapping):
        self._values = {k: Section(v) if isinstance(v, Mapping) else v for k, v in values.items()}

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"config section has no key {name!r} (keys: {', '.join(self._values)})") from None

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def to_dict(self) -> dict:
        return {k: v.to_dict() if isinstance(v, Section) else v for k, v in self._values.items()}

    def __repr__(self) -> str:
        return f"Section({self.to_dict()!r})"


@dataclass(frozen=True)
class Shared:
    """Settings every analysis shares, from the validated config (spike, sinks, heldout, extraction)."""

    rule: Any  # spikesink.instrumentation.spikes.SpikeRule
    sink_eps: float
    heldout_batch_size: int
    extraction_batch_size: int

    @classmethod
    def from_config(cls, config: Mapping) -> Shared:
        return cls(
            rule=spike_rule(config),
            sink_eps=float(config["sinks"]["eps"]),
            heldout_batch_size=int(config["heldout"]["batch_size"]),
            extraction_batch_size=int(config["extraction"]["batch_size"]),
        )


def settings(config: Mapping, name: str) -> Section:
    """The typed settings of one analysis from a validated config."""
    return Section(config["analyses"][name])


def analysis_settings(name: str, overrides: Mapping | None = None) -> Section:
    """One analysis's settings from the schema's defaults and `overrides` (the public API's way)."""
    return Section(analysis_section(name, overrides))


def spike_rule(config: Mapping):
    from spikesink.settings import SpikeRule

    return SpikeRule(float(config["spike"]["floor"]), float(config["spike"]["median_ratio"]))


def default_rule():
    """The spike rule with the schema's defaults."""
    return spike_rule(defaults())


def default(section: str, key: str):
    """One of the schema's defaults, e.g. default("sinks", "eps") (for functions called without a config)."""
    return defaults()[section][key]


def default_shared() -> Shared:
    return Shared.from_config(defaults())


def extraction_settings(config: Mapping):
    """What the statistics forward keeps (spikesink.extraction.block_stats), from a validated config."""
    from spikesink.settings import ExtractionSettings

    ext, spike = config["extraction"], config["spike"]
    return ExtractionSettings(
        top_k=ext["top_k"], median_stride=ext["median_stride"], floor=spike["floor"], median_ratio=spike["median_ratio"]
    )


# ------------------------------------------------------------------------------------------
# Checks the schema cannot express
# ------------------------------------------------------------------------------------------


def check_config(config: dict, workdir: str | os.PathLike = ".", raw: Mapping | None = None) -> None:
    """`config` with its defaults filled; `raw` as the user wrote it (default: `config`)."""
    problems = []
    workdir = Path(workdir)
    for name, spec in config.get("models", {}).items():
        problems += _model_problems(f"models.{name}", spec, workdir)
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
    if extraction.get("seq_len", 128) < 5:
        problems.append("extraction.seq_len: the amplifier reads the first 4 tokens after any BOS: use at least 5")
    problems += _analysis_problems(config, config if raw is None else raw)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


def model_entry_problems(name: str, spec, workdir: str | os.PathLike = ".") -> list[str]:
    """What the workflow's start-up (schema, then check_config) says about one `models:` entry,
    each problem led by its key: `spikesink scan` checks the entry it runs as the workflow would."""
    from jsonschema import validators

    full = schema()
    # the model definition as the root, its $refs (#/definitions/...) resolved in the same document
    entry = {**full["definitions"]["model"], "definitions": full["definitions"], "$schema": full["$schema"]}
    validator = validators.validator_for(full)(entry)
    errors = sorted(validator.iter_errors(spec), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        return [".".join(["models", name, *map(str, e.absolute_path)]) + f": {e.message}" for e in errors]
    return _model_problems(f"models.{name}", spec, Path(workdir))


def _model_problems(key: str, spec: Mapping, workdir: Path) -> list[str]:
    """What the schema cannot say about one (schema-valid) models: entry."""
    problems = []
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
    return problems


def _analysis_problems(config: Mapping, raw: Mapping) -> list[str]:
    """Each analysis's own checks (its entry's `check`): its section as the user wrote it, and the
    whole config with its defaults."""
    from spikesink.analyses import registry

    problems = []
    for name, entry in registry().items():
        section = (raw.get("analyses") or {}).get(name) or {}
        if entry.subset_keys:
            problems += prompt_subset_problems(name, section, config, entry.subset_keys)
        if entry.check is not None:
            problems += entry.check(section, config)
    return problems


def prompt_subset_problems(name: str, section: Mapping, config: Mapping, keys=("n_prompts", "seq_len")) -> list[str]:
    """An analysis that reads the first n extraction prompts cut to seq_len tokens: values the
    user set must not exceed what the extraction samples (the defaults are capped to it)."""
    extraction = config["extraction"]
    problems = []
    for key, limit in (("n_prompts", "n_prompts"), ("seq_len", "seq_len"), ("calibration_prompts", "n_prompts")):
        if key in keys and (section.get(key) or 0) > extraction[limit]:
            problems.append(
                f"analyses.{name}.{key}: {section[key]} > extraction.{limit} = {extraction[limit]}; it reads the "
                f"extraction prompts: lower it or raise extraction.{limit}"
            )
    return problems


# ------------------------------------------------------------------------------------------
# The claims' thresholds, listed (config/README.md prints this table)
# ------------------------------------------------------------------------------------------


def claim_thresholds() -> list[dict]:
    """Every threshold a claim uses: its key, default and the reason for that number (its schema
    description), for each analysis's `claims:` section and Section 4's `ablations.claims`."""
    full = schema()
    sections = {f"analyses.{name}": sub for name, sub in full["properties"]["analyses"]["properties"].items()}
    sections["ablations"] = full["properties"].get("ablations", {})
    rows = []
    for prefix, section in sections.items():
        claims = section.get("properties", {}).get("claims", {})
        for key, spec in claims.get("properties", {}).items():
            rows.append(
                {"key": f"{prefix}.claims.{key}", "default": spec.get("default"), "reason": spec.get("description", "")}
            )
    return rows


def thresholds_markdown() -> str:
    """claim_thresholds() as a Markdown table."""
    lines = ["| key | default | why this number |", "|---|---|---|"]
    lines += [f"| `{r['key']}` | {r['default']} | {r['reason']} |" for r in claim_thresholds()]
    return "\n".join(lines) + "\n"
