"""The workflow builds its DAG, and runs every report job, without torch.

Every spikesink module the Snakefile and the rule files import at parse time (spikesink.config and
the analysis registry in common.smk; the variant lookup in the input functions) must import
without pulling in torch or transformers, which alone would take a large share of a `snakemake -n`.
So must the report side of every analysis (its registry entry, result, claims and figure
modules): the report and summary jobs run in the analysis environment, which has no torch. An
analysis's measure module may import torch, unless the analysis reads no model: then its measure
job runs in the analysis environment too.
"""

import re
import subprocess
import sys
import textwrap
from pathlib import Path

from spikesink.analyses import registry

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers")
IMPORT = re.compile(r"^\s*(?:from\s+(spikesink[\w.]*)\s+import|import\s+(spikesink[\w.]*))", re.MULTILINE)
FRAMEWORK = {
    "spikesink.config",
    "spikesink.analyses",
    "spikesink.analyses.unit",
    "spikesink.analyses.jobs",
    "spikesink.analyses.runner",
    "spikesink.analyses.store",
    "spikesink.results",
    "spikesink.reporting.paper",
    "spikesink.reporting.plotting",
    "spikesink.reporting.scorecard",
    "spikesink.reporting.tables",
}


def workflow_imports() -> set[str]:
    """spikesink modules imported anywhere in the Snakefile and workflow/rules/*.smk."""
    modules = set()
    for path in [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]:
        modules |= {a or b for a, b in IMPORT.findall(path.read_text())}
    return modules


def test_workflow_imports_are_found():
    assert {"spikesink.config", "spikesink.analyses", "spikesink.ablations.variants"} <= workflow_imports()


def assert_imports_stay_light(modules, when: str, then: str = "") -> None:
    """Import `modules` in a fresh interpreter (and run `then`); fail if torch or transformers came with them."""
    code = (
        f"import sys\nimport {', '.join(sorted(modules))}\n{then}\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        f"assert not heavy, f'imported {when}: {{heavy}}'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_dag_modules_do_not_import_torch():
    modules = workflow_imports() | {
        "spikesink.config", "spikesink.analyses", "spikesink.analyses.jobs", "spikesink.ablations.variants",
        "spikesink.settings", "spikesink.ablations.configs",
    }  # fmt: skip
    # building the rules reads every registry entry, its result class (output files) and the schema
    then = (
        "from spikesink.analyses import registry\nfrom spikesink.config import schema\n"
        "files = [entry.result_class.files() for entry in registry().values()]\nschema()"
    )
    assert_imports_stay_light(modules, "at DAG-building time", then)


def report_modules() -> set[str]:
    """The report side of every registered analysis, and the measure side of those without a model."""
    modules = set()
    for entry in registry().values():
        parts = ["result", "claims", "figure"] + ([] if entry.needs_model else ["measure"])
        modules |= {entry.package} | {f"{entry.package}.{p}" for p in parts if (entry.folder / f"{p}.py").is_file()}
    return modules


def test_every_analysis_reports_without_torch():
    modules = report_modules()
    assert len(registry()) >= 14
    assert {"spikesink.analyses.lifecycle.figure", "spikesink.analyses.amplifier.claims"} <= modules
    assert "spikesink.analyses.lifecycle.measure" in modules and "spikesink.analyses.amplifier.measure" not in modules
    assert_imports_stay_light(modules | FRAMEWORK, "by the report side of an analysis")


def rule_blocks() -> list[str]:
    """The text of every rule in workflow/rules/*.smk: written out, or generated in a loop (indented)."""
    blocks = []
    for path in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        blocks += re.split(r"^[ \t]*rule\b", path.read_text(), flags=re.MULTILINE)[1:]
    return blocks


def analysis_env_scripts() -> list[Path]:
    """The scripts of rules that can run in the analysis environment (envs/analysis.yaml): figures,
    tables, the scorecard, every analysis's report and summary, the model-free measurements.
    Found from the rule files, not listed by hand."""
    scripts = []
    for rule in rule_blocks():
        if "ANALYSIS_ENV" in rule and (match := re.search(r'script:\s*\n\s*"\.\./scripts/([\w.]+)"', rule)):
            scripts.append(ROOT / "workflow" / "scripts" / match[1])
    return scripts


def test_figure_and_table_scripts_do_not_import_torch():
    """Plotting and table jobs must not pay for torch (seconds of import per job, GBs of env)."""
    scripts = analysis_env_scripts()
    names = {p.name for p in scripts}
    assert {"report.py", "summary.py", "measure.py", "scorecard.py", "ablation_table.py"} <= names
    assert len(scripts) >= 8 and all(p.is_file() for p in scripts)
    imports = {a or b for p in scripts for a, b in IMPORT.findall(p.read_text())} | {"spikesink.logs"}
    assert_imports_stay_light(imports, "by a figure/table script")


# A tiny model-free run: block statistics with a spike planted at blocks 2-4 (written by block 2,
# removed by block 5) on channel 3 of position 0, and sink statistics of 3 layers x 2 heads.
MODEL_FREE_RUN = """
import os, sys
import numpy as np
from spikesink.config import defaults
from spikesink.analyses.jobs import run_measure, run_report, run_summary
from spikesink.results import BlockStats, SinkStats, save_block_stats, write_sink_stats

os.chdir(sys.argv[1])
B, N, T, d, k, L, H = 6, 4, 5, 8, 3, 3, 2
f = np.float32
topk = np.ones((2, B, N, k), f)
topk[0, 1:4, :, 0] = 5000.0
token_max = np.ones((2, B, N, T), f)
token_max[0, 1:4, :, 0] = 5000.0
channel_max = np.ones((B, d), f)
channel_max[1:4, 3] = 5000.0
pos0 = np.zeros((2, B, d), f)
pos0[0, 1:4, 3] = 5000.0
pos0[1, 1, 3], pos0[1, 4, 3] = 5000.0, -5000.0
stats = BlockStats(
    topk, topk, np.zeros((2, B, N, k), np.int32), np.zeros((2, B, N, k), np.int32), np.ones((2, B, N), f),
    token_max, channel_max, pos0, pos0, np.zeros(B, np.int64), np.zeros((N, T), np.int64),
    meta={"architecture": {"family": "F", "norm_placement": "pre"}, "d_model": d},
)
key0 = np.full((N, L, H), 0.6, f)
sinks = SinkStats(
    key0, key0.copy(), np.full(N, 4.0), key0.mean(0), key0.mean((0, 2)), np.full((L, H), 100.0), np.full(L, 100.0),
    100.0, 0.6, key0.mean(0), 0.3,
)
for m in ("a", "b"):
    os.makedirs(f"results/{m}", exist_ok=True)
    save_block_stats(stats, f"results/{m}/block_stats.npz", f"results/{m}/block_stats.json")
    write_sink_stats(f"results/{m}/sinks.npz", sinks)
config = defaults()
paper = {"a": "Llama-2-7B", "b": None}
for name in ("lifecycle", "sinks"):
    for m in ("a", "b"):
        run_measure(name, m, ["a", "b"], config, {})
        run_report(name, m, ["a", "b"], config, paper)
run_summary("lifecycle", ["a", "b"], config, paper)
run_measure("architectures", None, ["a", "b"], config, {})
run_report("architectures", None, ["a", "b"], config, paper)
heavy = [m for m in ("torch", "transformers") if m in sys.modules]
assert not heavy, f"a model-free measure / report / summary job imported {heavy}"
"""


def test_model_free_jobs_run_without_torch(tmp_path):
    """The workflow's measure, report and summary jobs of the model-free analyses (life cycle, sinks,
    architectures), run as their rules run them, never import torch, and write every output."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(MODEL_FREE_RUN))
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(
        [sys.executable, str(script), str(work)], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    from spikesink.analyses.lifecycle.result import Lifecycle

    lc = Lifecycle.load(work / "results/a/lifecycle")
    assert (lc.plateau, lc.step_up, lc.step_down, lc.spike_channels) == ((2, 4), [2], [5], [3])
    for rel in (
        "results/a/claims/lifecycle.json",
        "results/b/claims/sinks.json",
        "results/claims/architectures.json",
        "figures/lifecycle/a.pdf",
        "figures/lifecycle/all_models.png",
        "figures/sinks/b_key0_heatmap.png",
        "figures/sinks/a_sinks_vs_spike.pdf",
        "figures/architectures/overview.png",
        "paper_tables/table1_step_up_down.md",
        "paper_tables/architectures.tex",
    ):
        assert (work / rel).is_file(), rel
