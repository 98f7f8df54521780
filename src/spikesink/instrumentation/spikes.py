"""The one spike-token definition, on hidden states.

A token is a *spike token* in a state (B, T, d) when its largest |h| is massive
(`spikesink.metrics.is_massive`: above `floor` and above `median_ratio` times the median) where
the median is that of the *same state*: the median |h| over all valid tokens and channels of the
sample's (T x d) state (Sun et al. 2024's whole-hidden-state median). A spike lifts a token's own
channels too (SmolLM2's first token has a median of ~45 beside a 2e4 spike), so a token's own
median would hide it; the sequence median is dominated by ordinary tokens.

Where the state has no ordinary tokens to take a median from (the vocabulary probe feeds one
token at a time), callers pass a reference median of the same block measured on ordinary text
(the extraction's corpus medians); with none, the single token's own median is what is left.

Every analysis (extraction, life cycle, vocabulary probe, SiLU regime, RMSNorm collapse,
interventions, quantization outliers) flags spike tokens through `spike_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..metrics import is_massive
from ..settings import SpikeRule  # noqa: F401 (the rule is torch-free; re-exported here)


@dataclass
class SpikeTokens:
    mask: torch.Tensor  # (B, T) bool: spike tokens (valid tokens only)
    token_max: torch.Tensor  # (B, T) float32: each token's largest |h|
    median: torch.Tensor  # (B,) float32: the median the threshold was taken against


def state_median(state: torch.Tensor, valid: torch.Tensor | None = None, stride: int = 1) -> torch.Tensor:
    """(B,) float32 median |h| of each sample's (T x d) state over its valid tokens."""
    if state.dim() != 3:
        raise ValueError(f"state must be (B, T, d), got shape {tuple(state.shape)}")
    if valid is None:
        flat = state.reshape(state.shape[0], -1)[:, :: max(1, int(stride))]
        return flat.float().abs().median(dim=1).values
    valid = valid.to(device=state.device, dtype=torch.bool)
    return torch.stack(
        [state[b][valid[b]].reshape(-1)[:: max(1, int(stride))].float().abs().median() for b in range(state.shape[0])]
    )


def spike_tokens(
    state: torch.Tensor,
    rule: SpikeRule | None = None,
    valid: torch.Tensor | None = None,
    reference_median: float | torch.Tensor | None = None,
) -> SpikeTokens:
    """Spike tokens of a (B, T, d) state (module docstring); float32 whatever the state's dtype.

    reference_median: a scalar or (B,) median to compare against instead of the state's own
    (e.g. the corpus median of the same block for single-token probes).
    """
    rule = rule or SpikeRule()
    # abs and max are exact in any dtype, so the float32 cast can follow them; this is ~9x faster
    # on CPU than vector_norm(ord=inf, dtype=float32), and it runs on every tapped state
    token_max = state.abs().amax(dim=-1).float()
    if reference_median is not None:
        median = torch.as_tensor(reference_median, dtype=torch.float32, device=state.device).reshape(-1)
        median = median.expand(state.shape[0]) if median.numel() == 1 else median
    else:
        median = state_median(state, valid, rule.median_stride)
    mask = is_massive(token_max, median[:, None], rule.floor, rule.median_ratio)
    if valid is not None:
        mask &= valid.to(device=mask.device, dtype=torch.bool)
    return SpikeTokens(mask=mask, token_max=token_max, median=median)
