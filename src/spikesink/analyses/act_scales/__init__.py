"""Activation scales of every Linear input (SmoothQuant's act-scales), with and without the spike tokens."""

from spikesink.analyses.unit import Analysis, Figure

ANALYSIS = Analysis(
    name="act_scales",
    title="Activation scales of every Linear input",
    paper="beyond the paper (SmoothQuant's act-scales)",
    section="beyond the paper: quantization",
    reads=("model", "block_stats", "lifecycle", "prompts.extraction"),
    report_reads=("lifecycle",),
    figures=(Figure("", "caption.rst", "activation scales"),),
    gpu=True,
    subset_keys=("calibration_prompts",),
)
