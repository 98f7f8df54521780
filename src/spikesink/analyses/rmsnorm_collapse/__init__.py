"""RMSNorm bound, sparsity and cosine collapse of the spike tokens (paper Sec. 3.4, Fig. 5)."""

from spikesink.analyses.unit import Analysis, Figure

ANALYSIS = Analysis(
    name="rmsnorm_collapse",
    title="RMSNorm bound, sparsity and cosine collapse of the spike tokens",
    paper="Fig. 5",
    section="3.4 normalization",
    reads=("model", "lifecycle", "prompts.extraction"),
    figures=(Figure("", "caption.rst", "cosine collapse"),),
    gpu=True,
    subset_keys=("n_prompts", "seq_len"),
)
