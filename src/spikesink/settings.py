"""Settings dataclasses and default thresholds, kept free of torch.

The workflow reads these while it builds its DAG (spikesink.config, imported by
workflow/rules/common.smk), so importing this module must not import torch (nor transformers);
tests/test_imports.py checks that. The modules that use them re-export them:
`spikesink.metrics` the defaults, `spikesink.extraction.block_stats` ExtractionSettings and
`spikesink.analyses.lifecycle` LifecycleSettings.
"""

from __future__ import annotations

from dataclasses import dataclass

# defaults of the paper's two central definitions (see metrics.py)
DEFAULT_FLOOR = 100.0
DEFAULT_MEDIAN_RATIO = 1000.0
DEFAULT_SINK_EPS = 0.3


@dataclass
class ExtractionSettings:
    top_k: int = 3
    # 1: the exact median of each prompt's (T x d) magnitudes (a selection, cheaper on CPU than
    # the old every-7th-entry estimate); n > 1: the median of every n-th entry only
    median_stride: int = 1
    floor: float = DEFAULT_FLOOR
    median_ratio: float = DEFAULT_MEDIAN_RATIO


@dataclass
class LifecycleSettings:
    floor: float = DEFAULT_FLOOR
    median_ratio: float = DEFAULT_MEDIAN_RATIO
    min_prompt_fraction: float = 0.5
    min_plateau_fraction: float = 0.5
    step_fraction: float = 0.15
    channel_fraction: float = 0.1
    max_spike_channels: int = 16
