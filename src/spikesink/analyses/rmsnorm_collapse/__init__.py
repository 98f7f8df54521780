"""RMSNorm bound, sparsity and cosine collapse of the spike tokens (paper Sec. 3.4, Fig. 5)."""

from spikesink.analyses.unit import Analysis, Figure


def _check(section, config):
    from spikesink.config import prompt_subset_problems

    return prompt_subset_problems("rmsnorm_collapse", section, config)


ANALYSIS = Analysis(
    name="rmsnorm_collapse",
    title="RMSNorm bound, sparsity and cosine collapse of the spike tokens",
    paper="Fig. 5",
    section="3.4 normalization",
    reads=("model", "lifecycle", "prompts.extraction"),
    figures=(Figure("", "caption.rst", "cosine collapse"),),
    gpu=True,
    check=_check,
)
