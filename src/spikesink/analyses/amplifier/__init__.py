"""The FFN as a quadratic amplifier (paper Sec. 3.3, Fig. 3, 4, 8) and position-0 attention as a fixed map."""

from spikesink.analyses.unit import Analysis, Figure

ANALYSIS = Analysis(
    name="amplifier",
    title="The quadratic amplifier: U_k norms and S_k spectra",
    paper="Fig. 3, 4, 8",
    section="3.3 quadratic amplifier",
    reads=("model", "lifecycle", "prompts.extraction"),
    figures=(
        Figure("uk_norms", "caption_uk_norms.rst", "U_k norms"),
        Figure("spectra", "caption_spectra.rst", "S_k spectra"),
    ),
    gpu=True,
    subset_keys=("n_prompts",),
)
