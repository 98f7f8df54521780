"""The workflow builds its DAG without torch: every spikesink module the Snakefile and the rule
files import at parse time (spikesink.config in common.smk; the variant lookup in the input
functions) must import without pulling in torch or transformers, which alone would take a large
share of a `snakemake -n`."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers")
IMPORT = re.compile(r"^\s*(?:from\s+(spikesink[\w.]*)\s+import|import\s+(spikesink[\w.]*))", re.MULTILINE)


def workflow_imports() -> set[str]:
    """spikesink modules imported anywhere in the Snakefile and workflow/rules/*.smk."""
    modules = set()
    for path in [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]:
        modules |= {a or b for a, b in IMPORT.findall(path.read_text())}
    return modules


def test_workflow_imports_are_found():
    assert {"spikesink.config", "spikesink.ablations.variants"} <= workflow_imports()


def assert_imports_stay_light(modules, when: str) -> None:
    """Import `modules` in a fresh interpreter; fail if torch or transformers came with them."""
    code = (
        f"import sys\nimport {', '.join(sorted(modules))}\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        f"assert not heavy, f'imported {when}: {{heavy}}'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr


def test_dag_modules_do_not_import_torch():
    modules = workflow_imports() | {
        "spikesink.config", "spikesink.ablations.variants", "spikesink.settings", "spikesink.ablations.configs",
    }  # fmt: skip
    assert_imports_stay_light(modules, "at DAG-building time")


def analysis_env_scripts() -> list[Path]:
    """The scripts of rules that run in the analysis environment (envs/analysis.yaml): figures,
    tables, the scorecard and the life cycle. Found from the rule files, not listed by hand."""
    scripts = []
    for path in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for rule in re.split(r"^rule ", path.read_text(), flags=re.MULTILINE)[1:]:
            if "ANALYSIS_ENV" in rule and (match := re.search(r'script:\s*\n\s*"\.\./scripts/([\w.]+)"', rule)):
                scripts.append(ROOT / "workflow" / "scripts" / match[1])
    return scripts


def test_figure_and_table_scripts_do_not_import_torch():
    """Plotting and table jobs must not pay for torch (seconds of import per job, GBs of env)."""
    scripts = analysis_env_scripts()
    assert len(scripts) >= 10 and all(p.is_file() for p in scripts)
    imports = {a or b for p in scripts for a, b in IMPORT.findall(p.read_text())} | {"spikesink.logs"}
    assert_imports_stay_light(imports, "by a figure/table script")
