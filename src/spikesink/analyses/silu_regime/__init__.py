"""SiLU regime of the step-up / step-down FFN blocks (paper Sec. 3.3, Fig. 2)."""

from spikesink.analyses.unit import Analysis, Figure, PromptSet

ANALYSIS = Analysis(
    name="silu_regime",
    title="SiLU regime of the gate in the step-up and step-down blocks",
    paper="Fig. 2",
    section="3.3 quadratic amplifier",
    reads=("model", "lifecycle", "prompts.sentences"),
    figures=(Figure("", "caption.rst", "SiLU regime"),),
    prompt_sets=(PromptSet("sentences", "sentences", n="n_sentences"),),
    gpu=True,
)
