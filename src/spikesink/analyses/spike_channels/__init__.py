"""Properties (iii) and (iv) of massive activations (paper Sec. 3.1): the spike channels spike
together, on the same tokens, with nearly fixed ratios between them."""

from spikesink.analyses.unit import Analysis, Figure


def _check(section, config):
    from spikesink.config import prompt_subset_problems

    return prompt_subset_problems("spike_channels", section, config)


ANALYSIS = Analysis(
    name="spike_channels",
    title="Spike channels: do they spike together, with fixed ratios?",
    paper="Sec. 3.1, properties (iii), (iv)",
    section="3.1 life cycle",
    reads=("model", "lifecycle", "prompts.extraction"),
    figures=(Figure("", "caption.rst", "spike channels together"),),
    gpu=True,
    check=_check,
)
