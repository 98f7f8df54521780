from spikesink.figures_mechanism import plot_cosine_collapse
from spikesink.io import load_npz
from spikesink.logs import snakemake_logger

snakemake_logger(snakemake)
plot_cosine_collapse(load_npz(snakemake.input.cosines), snakemake.output.pdf, snakemake.wildcards.model)
