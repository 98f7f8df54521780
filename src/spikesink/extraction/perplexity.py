"""Next-token loss of held-out text, the measure every functional test reports.

The decoder runs once (taps and edits active); the LM head is applied to chunks of positions so
that a 2,048-token window of a 262k-vocabulary model never holds its full (T x V) logits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from spikesink.instrumentation.layout import model_layout
from spikesink.instrumentation.taps import run_decoder


def token_nll(model: nn.Module, input_ids, chunk: int = 256) -> torch.Tensor:
    """(B, T-1) float32 negative log-likelihood of every next token (position t predicts t+1)."""
    layout = model_layout(model)
    device = next(model.parameters()).device
    ids = torch.as_tensor(input_ids, device=device)
    out = run_decoder(model, input_ids=ids, use_cache=False)
    if out is None:
        raise RuntimeError("the forward was stopped early: perplexity needs the whole decoder")
    hidden = out.last_hidden_state
    nll = torch.empty(ids.shape[0], ids.shape[1] - 1, dtype=torch.float32, device=device)
    with torch.inference_mode():
        for start in range(0, ids.shape[1] - 1, chunk):
            stop = min(ids.shape[1] - 1, start + chunk)
            logits = layout.lm_logits(hidden[:, start:stop])
            nll[:, start:stop] = torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), ids[:, start + 1 : stop + 1], reduction="none"
            )
    return nll


def perplexity(model: nn.Module, batches: Iterable, chunk: int = 256) -> float:
    """exp(mean next-token loss) over every position of every batch."""
    total, count = 0.0, 0
    for batch in batches:
        nll = token_nll(model, batch, chunk)
        total += float(nll.double().sum())
        count += nll.numel()
    if not count:
        raise ValueError("no tokens to measure perplexity on")
    return math.exp(total / count)


def batched(ids: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
