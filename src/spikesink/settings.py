"""Settings dataclasses shared by the extraction and the analyses, kept free of torch.

Their defaults are the config schema's (src/spikesink/config/schema.yaml, read when a dataclass
is built without a value): every default is written there once. The workflow reads this module
while it builds its DAG, so importing it must not import torch (tests/test_imports.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field


def schema_default(section: str, key: str):
    """A dataclass field whose default is the config schema's `section.key`."""

    def read():
        from spikesink.config import defaults

        return defaults()[section][key]

    return field(default_factory=read)


@dataclass(frozen=True)
class SpikeRule:
    """The massive-activation rule (the config's `spike` section): |h| above `floor` and above
    `median_ratio` times the median |h| of the same state (spikesink.instrumentation.spikes)."""

    floor: float = schema_default("spike", "floor")
    median_ratio: float = schema_default("spike", "median_ratio")
    # 1: the exact median; n > 1: the median of every n-th |h| only (an estimate, kept for
    # states too large to select in; no longer needed for speed on CPU, see _median_of_magnitudes)
    median_stride: int = 1


@dataclass
class ExtractionSettings:
    """What the statistics forward keeps (the config's `extraction` and `spike` sections)."""

    top_k: int = schema_default("extraction", "top_k")
    # 1: the exact median of each prompt's (T x d) magnitudes (a selection, cheaper on CPU than
    # the old every-7th-entry estimate); n > 1: the median of every n-th entry only
    median_stride: int = schema_default("extraction", "median_stride")
    floor: float = schema_default("spike", "floor")
    median_ratio: float = schema_default("spike", "median_ratio")
