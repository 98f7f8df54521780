"""The spike's life cycle (paper Table 1, Figures 1 and 7): where it rises, plateaus and falls."""

from spikesink.analyses.unit import CHAIN_PRIORITY, Analysis, Figure, Table

ANALYSIS = Analysis(
    name="lifecycle",
    title="Spike life cycle: massive blocks, spike channels, step-up and step-down blocks",
    paper="Table 1, Fig. 1, Fig. 7",
    section="3.1 life cycle",
    reads=("block_stats",),
    report_reads=("block_stats",),
    figures=(Figure("", "caption.rst", "life cycle"),),
    summary_figures=(Figure("all_models", "caption_all_models.rst", "life cycles of all models"),),
    summary_tables=(Table("table1_step_up_down", per_model=False),),
    priority=CHAIN_PRIORITY,  # on the way to the vocabulary probe
)
