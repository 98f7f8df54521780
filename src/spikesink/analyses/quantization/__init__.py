"""What the spike costs INT8 activations: per tensor, keeping the tokens that clip, per token."""

from spikesink.analyses.unit import Analysis, Figure, Table

ANALYSIS = Analysis(
    name="quantization",
    title="INT8 activations: per tensor, per tensor keeping the spike tokens, per token",
    paper="beyond the paper (LLM.int8, SmoothQuant)",
    section="beyond the paper: quantization",
    reads=("model", "act_scales", "prompts.heldout"),
    report_reads=("act_scales", "lifecycle"),
    figures=(Figure("", "caption.rst", "INT8 perplexity"),),
    tables=(Table(""),),
    gpu=True,
)
