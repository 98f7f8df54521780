"""Attention sinks per layer and head from the extraction's forward (paper Sec. 3.2, Fig. 6 left)."""

from spikesink.analyses.unit import Analysis, Figure, Table

ANALYSIS = Analysis(
    name="sinks",
    title="Attention sinks per layer and head, beside the spike over depth",
    paper="Sec. 3.2",
    section="3.2 sinks",
    # block_stats: whether key 0 is a spike token in each prompt at each layer
    reads=("sinks", "block_stats"),
    report_reads=("lifecycle",),
    figures=(
        Figure("key0_heatmap", "caption_key0_heatmap.rst", "attention on key 0"),
        Figure("sinks_vs_spike", "caption_sinks_vs_spike.rst", "sinks vs spike over depth"),
    ),
    # per layer: key-0 mass, sink ratio and the output gate at token 0 vs the other tokens (n/a rows with reasons)
    tables=(Table(""),),
)
