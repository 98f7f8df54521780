"""Does the sink come from the spike? An edit that reaches only the attention path."""

from spikesink.analyses.unit import Analysis, Figure, Table

ANALYSIS = Analysis(
    name="attention_path",
    title="The spike removed from token 0's attention input only",
    paper="Sec. 3 mechanism (spike -> norm -> sparse key -> sink)",
    section="3.2 sinks",
    reads=("model", "lifecycle", "prompts.heldout"),
    figures=(Figure("", "caption.rst", "attention path"),),
    tables=(Table(""),),
    gpu=True,
)
