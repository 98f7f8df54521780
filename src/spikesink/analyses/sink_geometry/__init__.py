"""Geometry of sink keys and queries for one sink head and one non-sink head (paper Fig. 6)."""

from spikesink.analyses.unit import Analysis, Figure


def _check(section, config):
    from spikesink.config import prompt_subset_problems

    return prompt_subset_problems("sink_geometry", section, config)


ANALYSIS = Analysis(
    name="sink_geometry",
    title="Sink-key subspace, query-key distances and t-SNE of a sink and a non-sink head",
    paper="Fig. 6",
    section="3.2 sinks",
    reads=("model", "sinks", "prompts.extraction"),
    figures=(Figure("", "caption.rst", "t-SNE of queries and keys"),),
    gpu=True,
    check=_check,
)
