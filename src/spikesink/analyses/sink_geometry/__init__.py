"""Geometry of sink keys and queries for one sink head and one non-sink head (paper Fig. 6)."""

from spikesink.analyses.unit import Analysis, Figure

ANALYSIS = Analysis(
    name="sink_geometry",
    title="Sink-key subspace, query-key distances and t-SNE of a sink and a non-sink head",
    paper="Fig. 6",
    section="3.2 sinks",
    reads=("model", "sinks", "prompts.extraction"),
    figures=(Figure("", "caption.rst", "t-SNE of queries and keys"),),
    gpu=True,
    subset_keys=("n_prompts", "seq_len"),
)
