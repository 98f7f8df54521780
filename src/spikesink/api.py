"""The public API: every registered analysis on a model you already have, as a notebook runs it.

    import spikesink

    model = spikesink.load_model("resources/models/smollm2-135m")  # a directory, a .gguf, or
    model = spikesink.load_model(hf_model, tokenizer)               # a model already in memory
    study = spikesink.Study(model, texts)                           # texts: strings, a folder of .txt, passages.jsonl
    lifecycle = study.run("lifecycle")                              # what it reads is run first
    results = study.run_all()                                       # every registered analysis
    study.scorecard()                                               # the claims, as the workflow's scorecard
    study.figure("lifecycle", "lifecycle.png")                      # the workflow's figure; returns what it drew

The same functions run behind the workflow's rules (spikesink.analyses.jobs): prompt sampling,
the extraction forward, each analysis's measure, claims, tables and figures, with the settings of
the config schema (every default written once there; `Study(..., config={...})` overrides them
with the keys of a workflow config, e.g. {"analyses": {"vocab_probe": {"limit": 512}}}).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from spikesink.analyses import get, names, registry
from spikesink.analyses.unit import BLOCK_STATS, MODEL, PROMPTS, SINKS, Job, Result

DEFAULT_CACHE = Path("resources/api")


class APIError(ValueError):
    """Bad input to the public API; the message says what is wrong and what to do."""


# ------------------------------------------------------------------------------------------
# Models and texts
# ------------------------------------------------------------------------------------------


def load_model(
    source,
    tokenizer=None,
    *,
    dtype: str = "auto",
    device: str = "auto",
    name: str | None = None,
    cache: str | os.PathLike = DEFAULT_CACHE,
):
    """An InstrumentedModel from a model in memory (an `nn.Module` with its tokenizer), an acquired
    directory (resources/models/<name>), a Hugging Face directory (config.json + safetensors +
    tokenizer: copied once into `cache` with a manifest), or a .gguf file (converted once).

    Unsupported families, missing weights and non-finite weights fail here with the reason. The
    spike rule is the config's (a Study sets it from its `config`).
    """
    from spikesink.instrumentation.model import InstrumentedModel

    if hasattr(source, "config") and hasattr(source, "forward"):
        return InstrumentedModel.wrap(source, tokenizer, name=name)
    if tokenizer is not None:
        raise APIError("a tokenizer goes with a model object; a path brings its own tokenizer")
    directory = acquired_directory(source, Path(cache), name)
    return InstrumentedModel.load(directory, dtype=dtype, device=device, name=name or directory.name)


def acquired_directory(source: str | os.PathLike, cache: Path, name: str | None = None) -> Path:
    """An acquired model directory for a path: itself when it already is one, else acquired into
    `cache` once (a Hugging Face directory as source `local`, a .gguf file converted)."""
    from spikesink.acquisition.spec import MANIFEST

    path = Path(source).expanduser()
    if (path / MANIFEST).is_file():
        return path
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise APIError(f"{path} has no config.json: give a Hugging Face model directory or an acquired one")
        spec = {"source": "local", "path": str(path.resolve())}
    elif path.is_file() and path.suffix == ".gguf":
        spec = {"source": "gguf_file", "path": str(path.resolve())}
    else:
        raise APIError(f"{source!s} is neither a model directory nor a .gguf file")
    return acquire_spec(name or (path.stem if path.is_file() else path.resolve().name), spec, cache)


def acquire_spec(name: str, spec: Mapping, cache: Path) -> Path:
    """The acquired directory of a model spec (a `models:` entry, or a .gguf file as source
    `gguf_file`), acquired into `cache` on first use and reused afterwards."""
    from spikesink.acquisition.spec import MANIFEST

    if spec["source"] == "local" and (Path(spec["path"]) / MANIFEST).is_file():
        return Path(spec["path"])  # already an acquired directory (e.g. resources/models/<name>)
    key = hashlib.sha256(json.dumps(dict(spec), sort_keys=True).encode()).hexdigest()[:10]
    target = Path(cache) / "models" / f"{name}-{key}"
    if not (target / MANIFEST).is_file():
        if spec["source"] == "gguf_file":
            from spikesink.acquisition.gguf import acquire_gguf_file

            acquire_gguf_file(name, Path(spec["path"]), target)
        else:
            from spikesink.acquisition.models import acquire_model

            acquire_model(name, dict(spec), target, Path(cache) / "cache")
    return target


def load_texts(source) -> list[dict]:
    """Passages ({doc, index, text}) from a list of strings, a folder of .txt files, a
    passages.jsonl file (or the folder holding it) as the workflow's corpus stage writes it."""
    from spikesink.acquisition import corpus

    if isinstance(source, (list, tuple)):
        if not source:
            raise APIError("no texts given")
        if isinstance(source[0], Mapping):
            return list(source)
        docs = {f"text{i}": corpus.split_passages(text) or [text] for i, text in enumerate(source)}
        return [{"doc": doc, "index": i, "text": t} for doc, parts in docs.items() for i, t in enumerate(parts)]
    path = Path(source).expanduser()
    if path.is_file() or (path / "passages.jsonl").is_file():
        return corpus.read_passages(path)
    if path.is_dir():
        texts = [p.read_text(encoding="utf-8") for p in sorted(path.glob("*.txt"))]
        if not texts:
            raise APIError(f"{path} holds no .txt files and no passages.jsonl")
        return load_texts(texts)
    raise APIError(f"{source!s}: give a list of strings, a folder of .txt files or a passages.jsonl")


def analyses() -> dict[str, str]:
    """Every registered analysis: name -> title (spikesink.analyses)."""
    return {name: entry.title for name, entry in registry().items()}


# ------------------------------------------------------------------------------------------
# A study: one model, its prompt sets and every analysis on it
# ------------------------------------------------------------------------------------------


class Study:
    """Every analysis of one model on one text source, each run once and kept.

    model: an InstrumentedModel (load_model). texts: what prompt sets are sampled from (see
    load_texts); or pass ready `prompts` ({set name: PromptSet}, e.g. read with
    spikesink.results.read_prompts). config: overrides of the workflow config's keys.
    """

    def __init__(
        self,
        model,
        texts=None,
        *,
        prompts: Mapping[str, Any] | None = None,
        config: Mapping | None = None,
        paper_model: str | None = None,
        progress: bool = True,
    ):
        from spikesink.config import Shared
        from spikesink.instrumentation.model import InstrumentedModel

        if not isinstance(model, InstrumentedModel):
            raise APIError(f"a Study takes spikesink.load_model(...)'s model, got {type(model).__name__}")
        self.model = model
        self.paper_model = paper_model  # the paper's name for it (e.g. "Qwen2.5-7B"): its rows beside ours
        self.config = _config(config)
        self.shared = Shared.from_config(self.config)
        model.rule = self.shared.rule  # the config's spike rule, as in the workflow
        self.passages = load_texts(texts) if texts is not None else None
        self.prompt_sets: dict[str, Any] = dict(prompts or {})
        self.results: dict[str, Result] = {}
        self.progress = progress
        self._stages: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self.model.name

    # ---- inputs --------------------------------------------------------------------------------

    def prompts(self, name: str = "extraction"):
        """One prompt set, sampled from the texts as the workflow samples it (cached)."""
        if name not in self.prompt_sets:
            from spikesink.extraction.prompts import prompt_set_spec, sample_prompt_set

            if self.passages is None:
                raise APIError(f"the study needs texts (or prompts={{{name!r}: ...}}) to sample the {name!r} prompts")
            spec = prompt_set_spec(self.config, name)
            self.prompt_sets[name] = sample_prompt_set(
                name, self.passages, self.model.tokenizer, max_positions=self.model.max_positions(), **spec
            )
        return self.prompt_sets[name]

    def extraction(self):
        """(BlockStats, SinkStats) of the extraction prompts: the one statistics forward."""
        if "extraction" not in self._stages:
            from spikesink.extraction.block_stats import run_extraction

            self._stages["extraction"] = run_extraction(
                self.model, self.prompts("extraction"), self.config, self.name, progress=self.progress
            )
        return self._stages["extraction"]

    def _input(self, key: str):
        if key == MODEL:
            return self.model
        if key == BLOCK_STATS:
            return self.extraction()[0]
        if key == SINKS:
            return self.extraction()[1]
        if key.startswith(PROMPTS):
            return self.prompts(key[len(PROMPTS) :])
        return self.run(key)

    def job(self, name: str, keys: Iterable[str]) -> Job:
        from spikesink.config import settings

        entry = get(name)
        if not entry.per_model:
            raise APIError(f"{name!r} compares several models: use spikesink.compare(studies)")
        inputs = {key: self._input(key) for key in keys if key != MODEL}
        return Job(entry, self.name, settings(self.config, name), self.shared, inputs, self.model, self.paper_model)

    # ---- analyses ------------------------------------------------------------------------------

    def run(self, name: str) -> Result:
        """One analysis's Result (n/a with its reason when it does not apply); what it reads runs first."""
        from spikesink.analyses import runner

        if name not in self.results:
            entry = get(name)
            self.results[name] = runner.measure(self.job(name, entry.reads))
        return self.results[name]

    def run_all(self, names: Sequence[str] | None = None) -> dict[str, Result]:
        """Every registered per-model analysis (or `names`), in dependency order."""
        chosen = names or [n for n, e in registry().items() if e.per_model]
        return {name: self.run(name) for name in chosen}

    def claims(self, name: str) -> list:
        """The analysis's scorecard rows (spikesink.reporting.scorecard.Claim)."""
        from spikesink.analyses import runner

        return runner.claims(self.run(name), self.job(name, get(name).report_reads))

    def scorecard(self, names: Sequence[str] | None = None):
        """Every claim of the analyses run (or `names`) as the workflow's scorecard table."""
        import pandas as pd

        from spikesink.reporting.scorecard import COLUMNS

        chosen = names or list(self.results)
        rows = [claim.to_dict() for name in chosen for claim in self.claims(name)]
        return pd.DataFrame(rows, columns=COLUMNS)

    def tables(self, name: str) -> dict:
        """{table name: (DataFrame, caption)} of one analysis."""
        from spikesink.analyses import runner

        return runner.tables(self.run(name), self.job(name, get(name).report_reads))

    def figure(self, name: str, path: str | os.PathLike) -> dict:
        """Draw the analysis's figures as the workflow does (PDF + PNG at `path`, or at
        `<path>_<figure>` for an analysis with several) and return the data each one drew."""
        from spikesink.analyses import runner

        entry = get(name)
        stem = Path(path)
        stem = stem.with_name(stem.name[: -len(stem.suffix)]) if stem.suffix in (".png", ".pdf") else stem
        paths = {f.name: stem.with_name(f"{stem.name}_{f.name}") if f.name else stem for f in entry.figures}
        return runner.figures(self.run(name), self.job(name, entry.report_reads), paths)


def run(name: str, model, texts=None, **kwargs) -> Result:
    """One analysis on one model: Study(model, texts, **kwargs).run(name)."""
    get(name)  # an unknown name lists the registered ones before any work
    return Study(model, texts, **kwargs).run(name)


def compare(studies: Sequence[Study], name: str = "architectures") -> Result:
    """An analysis across models (the architectures table) from several studies."""
    from spikesink.analyses import runner

    entry = get(name)
    if entry.per_model:
        raise APIError(f"{name!r} runs per model: use Study.run")
    by_name = {study.name: study for study in studies}
    if len(by_name) != len(studies):
        raise APIError("give each study's model a distinct name (load_model(..., name=...))")
    inputs = {key: {n: s._input(key) for n, s in by_name.items()} for key in entry.reads}
    first = studies[0]
    from spikesink.config import settings

    return runner.measure(Job(entry, "all", settings(first.config, name), first.shared, inputs))


def _config(overrides: Mapping | None) -> dict:
    """The schema's defaults with `overrides` (keys of a workflow config, models excepted),
    validated as the workflow validates a config."""
    from spikesink.config import ConfigError, validate_config

    try:
        return validate_config(copy.deepcopy(dict(overrides or {})), models=False)
    except ConfigError as error:
        raise APIError(str(error)) from None


__all__ = ["APIError", "Study", "analyses", "compare", "load_model", "load_texts", "names", "run"]
