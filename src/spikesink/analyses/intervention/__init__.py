"""Edit the spike channels of the first token at the step-up block(s): sinks, spike, perplexity."""

from spikesink.analyses.unit import Analysis, Figure

ANALYSIS = Analysis(
    name="intervention",
    title="Removing the spike at the step-up block: sinks, spike and perplexity",
    paper="beyond the paper (Sun et al. 2024)",
    section="3.2 sinks",
    reads=("model", "lifecycle", "prompts.heldout"),
    figures=(Figure("", "caption.rst", "spike intervention"),),
    gpu=True,
)
