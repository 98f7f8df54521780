"""spikesink: replicate 'The Spike, the Sparse and the Sink' (Sun et al., 2026).

All logic lives here; the Snakemake rules in workflow/ only adapt inputs and outputs.
"""

__version__ = "0.1.0"
