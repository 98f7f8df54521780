import pandas as pd

from spikesink import figures_mechanism as fm
from spikesink.io import load_npz, read_json
from spikesink.logs import snakemake_logger

snakemake_logger(snakemake)
name, inp, out = snakemake.wildcards.model, snakemake.input, snakemake.output
lifecycle = read_json(inp.lifecycle)
fm.plot_silu_regime(pd.read_parquet(inp.silu), out.silu, name)
fm.plot_uk_norms(pd.read_parquet(inp.uk_norms), out.uk, lifecycle["spike_channels"], lifecycle["step_up"], lifecycle["step_down"], name)
fm.plot_spectra(pd.read_parquet(inp.spectra), out.spectra, model=name)
fm.plot_cosine_collapse(load_npz(inp.cosines), out.collapse, name)
