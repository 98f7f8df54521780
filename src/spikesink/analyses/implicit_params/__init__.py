"""Massive activations as implicit parameters (the protocol of Sun et al. 2024)."""

from spikesink.analyses.unit import Analysis, Figure, Table

ANALYSIS = Analysis(
    name="implicit_params",
    title="Massive activations as implicit parameters: own mean, zero, ordinary mean",
    paper="beyond the paper (Sun et al. 2024)",
    section="3.1 implicit parameters",
    reads=("model", "lifecycle", "prompts.extraction", "prompts.heldout"),
    figures=(Figure("", "caption.rst", "implicit parameters"),),
    tables=(Table(""),),
    gpu=True,
    subset_keys=("calibration_prompts",),
)
