"""The analysis framework: the registry, typed results stored per field, the config sections each
analysis owns, the workflow's paths and the code hashes that decide what reruns."""

from __future__ import annotations

import shutil
import types
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from spikesink.analyses import UnknownAnalysisError, _dependency_order, get, jobs, names, registry, runner, upstream
from spikesink.analyses.unit import RESULT_FILE, Analysis, Figure, Job, Result, stored
from spikesink.config import (
    ConfigError,
    analysis_settings,
    default_shared,
    defaults,
    prompt_subset_problems,
    validate_config,
)

ANALYSES = {
    "lifecycle",
    "vocab_probe",
    "silu_regime",
    "amplifier",
    "rmsnorm_collapse",
    "sinks",
    "sink_geometry",
    "intervention",
    "implicit_params",
    "attention_path",
    "act_scales",
    "quantization",
    "kv_cache",
    "architectures",
}
MODEL = {"m": {"source": "planted", "planted": {}}}


# ------------------------------------------------------------------------------------------
# The registry
# ------------------------------------------------------------------------------------------


def test_the_registry_finds_every_analysis_folder():
    assert ANALYSES <= set(names()) == set(registry())
    for name, entry in registry().items():
        assert entry.name == name and entry.folder.name == name and (entry.folder / "__init__.py").is_file()
        assert entry.package == f"spikesink.analyses.{name}"
        for figure in entry.figures + entry.summary_figures:
            assert entry.caption_path(figure).is_file(), (name, figure)
    # every folder of the package with an ANALYSIS entry is registered, and nothing else
    folders = {p.parent.name for p in get("lifecycle").folder.parent.glob("*/__init__.py")}
    assert folders == set(names())


def test_every_analysis_comes_after_what_it_reads():
    order = names()
    for position, name in enumerate(order):
        for dependency in upstream(get(name)):
            assert order.index(dependency) < position, f"{name} reads {dependency}, registered after it"
    assert upstream(get("quantization")) == ["act_scales", "lifecycle"]
    assert upstream(get("sinks")) == ["lifecycle"]  # the "sinks" stage (extraction) is no analysis
    assert upstream(get("lifecycle")) == [] and order.index("lifecycle") < order.index("architectures")


def test_dependency_order_refuses_cycles_and_unknown_reads():
    def entry(name, *reads):
        return Analysis(name, name, "-", "-", reads=reads)

    assert _dependency_order({"b": entry("b", "a"), "a": entry("a", "model")}) == ["a", "b"]
    with pytest.raises(ValueError, match="cycle"):
        _dependency_order({"a": entry("a", "b"), "b": entry("b", "a")})
    with pytest.raises(ValueError, match="reads 'nope', which is no registered analysis"):
        _dependency_order({"a": entry("a", "nope")})


def test_an_unknown_analysis_lists_the_registered_ones():
    with pytest.raises(UnknownAnalysisError, match="no analysis named 'silu'; registered: .*silu_regime"):
        get("silu")


def test_result_class_is_the_one_result_of_result_py(monkeypatch):
    for entry in registry().values():
        cls = entry.result_class
        assert issubclass(cls, Result) and cls.__module__ == f"{entry.package}.result"
    assert get("lifecycle").result_class.__name__ == "Lifecycle"
    assert get("act_scales").result_class.__name__ == "ActScales"

    @dataclass(kw_only=True)
    class One(Result):
        pass

    @dataclass(kw_only=True)
    class Two(Result):
        pass

    def fake(*classes):
        module = types.ModuleType("spikesink.analyses.fake.result")
        for cls in classes:
            cls.__module__ = module.__name__
            setattr(module, cls.__name__, cls)
        module.Result = Result  # imported base classes do not count
        return module

    entry = Analysis("fake", "fake", "-", "-")
    monkeypatch.setattr(Analysis, "module", lambda self, part: fake(One))
    assert entry.result_class is One
    for classes in ((), (One, Two)):
        monkeypatch.setattr(Analysis, "module", lambda self, part, classes=classes: fake(*classes))
        with pytest.raises(TypeError, match=f"exactly one Result subclass, found {len(classes)}"):
            _ = entry.result_class


def test_job_names_what_an_analysis_reads_but_was_not_given():
    job = Job(get("quantization"), "m", analysis_settings("quantization"), default_shared(), {"act_scales": None})
    assert job["act_scales"] is None
    with pytest.raises(KeyError, match=r"analysis 'quantization' reads 'prompts.heldout' but it was not given"):
        job["prompts.heldout"]
    assert job.rule == default_shared().rule  # no model: the shared spike rule


def test_a_not_applicable_analysis_never_loads_its_model():
    from spikesink.analyses.lifecycle.result import Lifecycle

    def load():
        raise AssertionError("the model was loaded")

    entry = get("intervention")
    job = Job(entry, "m", analysis_settings(entry.name), default_shared(), {"lifecycle": Lifecycle()})
    result = runner.measure(job, load)
    assert type(result) is entry.result_class and result.not_applicable.startswith("no step-up block")
    job = Job(entry, "m", analysis_settings(entry.name), default_shared(), {"lifecycle": Lifecycle(step_up=[2])})
    job.inputs["lifecycle"].spike_channels = [1]
    with pytest.raises(ValueError, match="analysis 'intervention' needs a model"):
        runner.measure(job)


# ------------------------------------------------------------------------------------------
# Results: one file per stored field, result.json last
# ------------------------------------------------------------------------------------------


def test_a_result_round_trips_every_stored_kind(tmp_path):
    from spikesink.analyses.act_scales.result import ActScales
    from spikesink.analyses.amplifier.result import Amplifier
    from spikesink.analyses.lifecycle.result import Lifecycle
    from spikesink.analyses.rmsnorm_collapse.result import Collapse

    frame = pd.DataFrame({"block": [2, 4], "channel": [7, 23], "uk_norm": [1.5, 2.5], "expert": ["dense", "0"]})
    summary = {"step_up": [4], "uk_ratio_to_median": {7: {2: 1.0, 4: 300.0}, 23: {4: 150.5}}, "note": "x"}
    amp = Amplifier(norms=frame, spectra=frame.iloc[:0], summary=summary)
    written = amp.save(tmp_path / "amplifier")
    assert [p.name for p in written] == ["norms.parquet", "spectra.parquet", "summary.json", RESULT_FILE]
    assert Amplifier.files() == [p.name for p in written]
    loaded = Amplifier.load(tmp_path / "amplifier")
    pd.testing.assert_frame_equal(loaded.norms, frame)
    assert loaded.spectra.empty and list(loaded.spectra.columns) == list(frame.columns)
    assert loaded.summary == summary  # JSON's string keys back to the integer blocks and channels
    assert loaded.summary["uk_ratio_to_median"][7][4] == 300.0

    matrices = {"before": np.eye(3, dtype=np.float32), "after": np.ones((3, 3), dtype=np.float64)}
    col = Collapse(summary={"n": 3}, matrices=matrices, delimiters=frame, self_attention=frame)
    col.save(tmp_path / "collapse")
    loaded = Collapse.load(tmp_path / "collapse")
    assert set(loaded.matrices) == set(matrices)
    for key, value in matrices.items():
        assert loaded.matrices[key].dtype == value.dtype
        np.testing.assert_array_equal(loaded.matrices[key], value)

    scales = {"model.layers.0.mlp.down_proj": np.arange(6, dtype=np.float32)}
    act = ActScales(scales=scales, non_spike={k: v / 2 for k, v in scales.items()}, summary=frame)
    act.save(tmp_path / "act_scales")
    loaded = ActScales.load(tmp_path / "act_scales")
    np.testing.assert_array_equal(loaded.scales["model.layers.0.mlp.down_proj"], scales["model.layers.0.mlp.down_proj"])
    np.testing.assert_array_equal(loaded.non_spike["model.layers.0.mlp.down_proj"], np.arange(6) / 2)

    lc = Lifecycle(n_blocks=4, plateau=(2, 3), step_up=[2], contributions=[0.0, 1.0, 0.0, -1.0])
    assert lc.save(tmp_path / "lifecycle") == [tmp_path / "lifecycle" / RESULT_FILE]  # only plain fields
    assert Lifecycle.load(tmp_path / "lifecycle") == lc


def test_a_not_applicable_result_writes_every_file(tmp_path):
    """The workflow's outputs always exist: an n/a result writes an empty file of each stored kind."""
    for name, entry in registry().items():
        cls = entry.result_class
        result = cls.na(f"{name} does not apply")
        written = result.save(tmp_path / name)
        assert [p.name for p in written] == cls.files() and all(p.is_file() for p in written), name
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == sorted(cls.files()), name
        assert [f"{jobs.result_dir(entry, 'm')}/{f}" for f in cls.files()] == jobs.result_files(entry, "m")
        loaded = cls.load(tmp_path / name)
        assert loaded.not_applicable == f"{name} does not apply" and type(loaded) is cls


def test_a_result_without_its_result_json_was_interrupted(tmp_path):
    from spikesink.analyses.kv_cache.result import KVCache

    KVCache(summary=pd.DataFrame({"a": [1]}), curve=pd.DataFrame({"b": [2]})).save(tmp_path / "kv")
    (tmp_path / "kv" / RESULT_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="no finished kv_cache result"):
        KVCache.load(tmp_path / "kv")


def test_stored_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown store 'csv'"):
        stored("csv")


# ------------------------------------------------------------------------------------------
# The config: one section per analysis, defaults from its schema.yaml
# ------------------------------------------------------------------------------------------


def test_validate_config_fills_every_analysis_section():
    config = validate_config({"models": dict(MODEL)})
    assert set(config["analyses"]) == set(names()) >= ANALYSES
    assert config["analyses"]["lifecycle"]["step_fraction"] == 0.15
    assert config["analyses"]["lifecycle"]["claims"] == {
        "max_channels": 10,
        "max_token_fraction": 0.05,
        "early_fraction": 0.3333,
        "late_fraction": 0.6667,
    }
    assert config["analyses"]["lifecycle"]["figure"]["height"] == 5.2
    assert config["analyses"]["amplifier"]["claims"]["min_ratio"] == 5.0
    assert config["analyses"]["vocab_probe"]["prefix"] == analysis_settings("vocab_probe").prefix
    assert config["analyses"]["quantization"] == {
        "bits": 8,
        "threads": None,  # every analysis that runs a model: its job's threads (null: extraction.threads)
        "claims": {"min_recovery": 0.5, "min_cost": 0.01, "max_kept_share": 0.05},
    }
    # what the user set stays, its siblings are filled
    config = validate_config({"models": dict(MODEL), "analyses": {"silu_regime": {"seed": 5}}})
    assert config["analyses"]["silu_regime"]["seed"] == 5 and config["analyses"]["silu_regime"]["n_sentences"] == 256
    assert defaults()["analyses"] == {k: v for k, v in config["analyses"].items() if k != "silu_regime"} | {
        "silu_regime": {**config["analyses"]["silu_regime"], "seed": 0}
    }


@pytest.mark.parametrize(
    "old, new",
    [
        ({"mechanisms": {"silu": {"seed": 5}}}, "mechanisms.silu: this key moved to analyses.silu_regime"),
        ({"mechanisms": {"collapse": {}}}, "mechanisms.collapse: this key moved to analyses.rmsnorm_collapse"),
        ({"sinks": {"geometry": {}}}, "sinks.geometry: this key moved to analyses.sink_geometry"),
        ({"quantization": {"bits": 4}}, "quantization: this key moved to analyses.quantization"),
        ({"plots": {"lifecycle": {}}}, "plots: this key moved to analyses.lifecycle.figure"),
        ({"claims": {}}, "claims: this key moved to analyses.lifecycle.claims"),
    ],
)
def test_an_old_key_fails_naming_its_new_home(old, new):
    with pytest.raises(ConfigError, match=new.replace(".", r"\.")):
        validate_config({"models": dict(MODEL), **old})


def test_config_problems_name_the_analysis_key():
    with pytest.raises(ConfigError, match=r"analyses\.rmsnorm_collapse\.n_prompts: .* is not of type 'integer'"):
        validate_config({"models": dict(MODEL), "analyses": {"rmsnorm_collapse": {"n_prompts": "many"}}})
    with pytest.raises(ConfigError, match=r"analyses\.rmsnorm_collapse: .*'n_prompt' was unexpected"):
        validate_config({"models": dict(MODEL), "analyses": {"rmsnorm_collapse": {"n_prompt": 8}}})
    with pytest.raises(ConfigError, match=r"analyses\.lifecycle\.claims\.early_fraction"):
        validate_config({"models": dict(MODEL), "analyses": {"lifecycle": {"claims": {"early_fraction": 2}}}})
    with pytest.raises(ConfigError, match=r"analyses: .*'silu' was unexpected"):
        validate_config({"models": dict(MODEL), "analyses": {"silu": {}}})


def test_prompt_subsets_flag_what_the_user_set_above_the_extraction_not_the_default():
    extraction = {"n_prompts": 8, "seq_len": 32, "batch_size": 4}
    # the defaults (64 prompts of 64 tokens) exceed this extraction: they are capped to it, not flagged
    config = validate_config({"models": dict(MODEL), "extraction": dict(extraction)})
    assert config["analyses"]["rmsnorm_collapse"]["n_prompts"] == 64
    assert prompt_subset_problems("rmsnorm_collapse", {}, config) == []
    problems = prompt_subset_problems("rmsnorm_collapse", {"n_prompts": 16, "seq_len": 32}, config)
    assert problems == [
        "analyses.rmsnorm_collapse.n_prompts: 16 > extraction.n_prompts = 8; it reads the extraction prompts: "
        "lower it or raise extraction.n_prompts"
    ]
    assert len(prompt_subset_problems("sink_geometry", {"n_prompts": 16, "seq_len": 33}, config)) == 2
    # only the keys an analysis reads: act_scales' calibration_prompts, not a seq_len it does not have
    assert prompt_subset_problems("act_scales", {"calibration_prompts": 9}, config, keys=("calibration_prompts",))
    assert not prompt_subset_problems("act_scales", {"calibration_prompts": 8}, config, keys=("calibration_prompts",))
    with pytest.raises(ConfigError, match=r"analyses\.rmsnorm_collapse\.n_prompts: 16 > extraction\.n_prompts = 8"):
        validate_config(
            {"models": dict(MODEL), "extraction": dict(extraction), "analyses": {"rmsnorm_collapse": {"n_prompts": 16}}}
        )
    with pytest.raises(ConfigError, match=r"analyses\.amplifier\.n_prompts: 9 > extraction\.n_prompts = 8"):
        validate_config(
            {"models": dict(MODEL), "extraction": dict(extraction), "analyses": {"amplifier": {"n_prompts": 9}}}
        )


# ------------------------------------------------------------------------------------------
# The workflow's paths and code hashes
# ------------------------------------------------------------------------------------------


def test_output_paths_of_the_analysis_units():
    def figure(name, fig=""):
        return jobs.figure_stem(get(name), Figure(fig), "m.1")

    assert figure("lifecycle") == "figures/lifecycle/m.1"
    assert figure("silu_regime") == "figures/silu_regime/m.1"
    assert figure("rmsnorm_collapse") == "figures/rmsnorm_collapse/m.1"
    assert figure("sinks", "key0_heatmap") == "figures/sinks/m.1_key0_heatmap"
    assert figure("amplifier", "uk_norms") == "figures/amplifier/m.1_uk_norms"
    for name in ("sink_geometry", "intervention", "implicit_params", "attention_path", "act_scales", "quantization"):
        assert figure(name) == f"figures/{name}/m.1"
    implicit = get("implicit_params")
    assert jobs.table_stem(implicit, implicit.tables[0], "m.1") == "paper_tables/implicit_params/m.1"
    assert jobs.result_dir(implicit, "m.1") == "results/m.1/implicit_params"
    assert jobs.claims_file(implicit, "m.1") == "results/m.1/claims/implicit_params.json"
    lifecycle = get("lifecycle")
    assert jobs.figure_stem(lifecycle, lifecycle.summary_figures[0], None) == "figures/lifecycle/all_models"
    assert jobs.table_stem(lifecycle, lifecycle.summary_tables[0], None) == "paper_tables/table1_step_up_down"
    arch = get("architectures")
    assert jobs.result_dir(arch, None) == "results/architectures"
    assert jobs.claims_file(arch, None) == "results/claims/architectures.json"
    assert jobs.figure_stem(arch, arch.figures[0], None) == "figures/architectures/overview"
    assert jobs.table_stem(arch, arch.tables[0], None) == "paper_tables/architectures"
    assert jobs.input_files("lifecycle", "m") == ["results/m/lifecycle/result.json"]
    assert jobs.input_files("prompts.sentences", "m") == [
        "results/m/prompts/sentences.npz",
        "results/m/prompts/sentences.json",
    ]
    assert not jobs.has_claims(get("act_scales")) and jobs.has_claims(get("sinks"))


@pytest.fixture
def copied_analysis(tmp_path, monkeypatch):
    """The lifecycle analysis's folder copied to tmp_path, which every entry now reads its code from."""
    shutil.copytree(get("lifecycle").folder, tmp_path / "lifecycle")
    monkeypatch.setattr(Analysis, "folder", property(lambda self: tmp_path / self.name))
    return get("lifecycle"), tmp_path / "lifecycle"


def test_the_measure_hash_follows_the_measurement_code_only(copied_analysis):
    entry, folder = copied_analysis
    assert entry.folder == folder

    def hashes():
        return jobs.source_hash(entry, "measure"), jobs.source_hash(entry, "report")

    measure, report = hashes()
    assert len(measure) == len(report) == 16 and measure != report
    with open(folder / "figure.py", "a") as handle:  # a figure change: the report reruns, the model job not
        handle.write("\n# another colour\n")
    assert hashes()[0] == measure and hashes()[1] != report
    measure, report = hashes()
    with open(folder / "caption.rst", "a") as handle:
        handle.write("More words.\n")
    assert hashes()[0] == measure and hashes()[1] != report
    measure, report = hashes()
    with open(folder / "claims.py", "a") as handle:
        handle.write("\n# a claim's wording\n")
    assert hashes()[0] == measure and hashes()[1] != report
    measure, report = hashes()
    with open(folder / "measure.py", "a") as handle:  # a measurement change: the model job reruns
        handle.write("\n# another detector\n")
    assert hashes()[0] != measure and hashes()[1] == report
    measure, report = hashes()
    (folder / "helpers.py").write_text("X = 1\n")  # any other module of the folder is measurement code
    assert hashes()[0] != measure and hashes()[1] == report
    measure, report = hashes()
    with open(folder / "__init__.py", "a") as handle:  # the entry: neither (what it reads is in the inputs)
        handle.write("\n# a title\n")
    with open(folder / "schema.yaml", "a") as handle:  # the settings: in the jobs' config params instead
        handle.write("\n# a description\n")
    assert hashes() == (measure, report)
