import pandas as pd

from spikesink import figures_mechanism as fm
from spikesink.logs import snakemake_logger
from spikesink.results import read_lifecycle

snakemake_logger(snakemake)
name, inp, out = snakemake.wildcards.model, snakemake.input, snakemake.output
lc = read_lifecycle(inp.lifecycle)
fm.plot_uk_norms(pd.read_parquet(inp.uk_norms), out.uk, lc.spike_channels, lc.step_up, lc.step_down, name)
fm.plot_spectra(pd.read_parquet(inp.spectra), out.spectra, model=name)
