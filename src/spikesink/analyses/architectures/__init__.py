"""The cross-architecture view: spikes and sinks of every configured model side by side."""

from spikesink.analyses.unit import Analysis, Figure, Table

ANALYSIS = Analysis(
    name="architectures",
    title="Every configured model: norm placement, FFN, spike and sinks",
    paper="Table 5 (released weights)",
    section="beyond the paper: architectures",
    reads=("block_stats", "lifecycle", "sinks"),
    figures=(Figure("overview", "caption.rst", "architectures"),),
    tables=(Table("architectures", per_model=False),),
    per_model=False,
)
