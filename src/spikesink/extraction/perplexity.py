"""Next-token loss of held-out text, the measure every functional test reports.

The decoder runs once (taps and edits active); the LM head is applied to chunks of about
`HEAD_ROWS` (batch x positions) rows, so that a 2,048-token window of a 262k-vocabulary model never
holds its full (T x V) logits. Bounding rows rather than positions keeps the float32 logits and
their log-softmax small for any batch (25 MB for SmolLM2's 49k vocabulary), so the allocator reuses
them instead of mapping fresh pages each call: on one CPU core the LM head and loss of a batch of
8 x 256 took 0.67x the time of 256 positions per call (benchmarks/bench_function.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from spikesink.instrumentation.layout import model_layout
from spikesink.instrumentation.taps import run_decoder

HEAD_ROWS = 128


def token_nll(model: nn.Module, input_ids, rows: int = HEAD_ROWS) -> torch.Tensor:
    """(B, T-1) float32 negative log-likelihood of every next token (position t predicts t+1)."""
    device = next(model.parameters()).device
    ids = torch.as_tensor(input_ids, device=device)
    out = run_decoder(model, input_ids=ids, use_cache=False)
    if out is None:
        raise RuntimeError("the forward was stopped early: perplexity needs the whole decoder")
    return head_nll(model, out.last_hidden_state, ids, rows)


def head_nll(model: nn.Module, hidden: torch.Tensor, ids: torch.Tensor, rows: int = HEAD_ROWS) -> torch.Tensor:
    """(B, T-1) next-token loss from the decoder's final states (B, T, d): the LM head sees about
    `rows` rows (batch x positions) at a time, at least one position of every sequence."""
    layout = model_layout(model)
    chunk = max(1, rows // ids.shape[0])  # positions per LM-head call
    nll = torch.empty(ids.shape[0], ids.shape[1] - 1, dtype=torch.float32, device=hidden.device)
    with torch.inference_mode():
        for start in range(0, ids.shape[1] - 1, chunk):
            stop = min(ids.shape[1] - 1, start + chunk)
            logits = layout.lm_logits(hidden[:, start:stop])
            nll[:, start:stop] = torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), ids[:, start + 1 : stop + 1], reduction="none"
            )
    return nll


def perplexity(model: nn.Module, batches: Iterable, rows: int = HEAD_ROWS) -> float:
    """exp(mean next-token loss) over every position of every batch."""
    total, count = 0.0, 0
    for batch in batches:
        nll = token_nll(model, batch, rows)
        total += float(nll.double().sum())
        count += nll.numel()
    if not count:
        raise ValueError("no tokens to measure perplexity on")
    return math.exp(total / count)


def batched(ids: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
