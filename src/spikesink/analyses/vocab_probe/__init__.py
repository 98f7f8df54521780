"""Vocabulary probe (paper Table 2): which vocabulary items become spike tokens at position 0."""

from spikesink.analyses.unit import CHAIN_PRIORITY, Analysis, Figure, Table

ANALYSIS = Analysis(
    name="vocab_probe",
    title="Vocabulary probe: spike tokens at position 0 and after a prefix",
    paper="Table 2",
    section="3.2 spike tokens",
    reads=("model", "lifecycle"),
    report_reads=("lifecycle",),  # the claims read n/a for a model without a spike
    figures=(Figure("", "caption.rst", "vocabulary probe"),),
    summary_tables=(Table("table2_vocab_probe", per_model=False),),
    gpu=True,
    priority=CHAIN_PRIORITY,  # the default run's longest job: it starts as soon as the life cycle is ready
)
