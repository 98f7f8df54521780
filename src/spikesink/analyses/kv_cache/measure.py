"""What the sink costs a KV cache that evicts old tokens (the StreamingLLM protocol).

On long held-out text, every layer attends through a sliding window of the last W keys (the
query included), optionally keeping the first `keep` tokens of the text in view as well: the
"attention sinks" StreamingLLM keeps in its cache. Perplexity is compared with full attention;
dropping the first tokens is expected to hurt far more than dropping any other W-distant keys.

The window is applied through the registered attention function (an override that computes the
attention output itself, per chunk of queries, over the keys the window keeps: memory O(chunk x
(W + keep)), no T x T matrix, no patched model code). Unlike StreamingLLM's rolling cache, the
kept tokens keep their original positions (RoPE distances grow with the position of the query);
within the model's trained context this is the same test of whether the first tokens are needed.

The same forwards keep the loss summed over blocks of `bin` positions beyond the window
(`per_block`): the default run has one long text, so the claims' bootstrap resamples these blocks
of positions (jointly across conditions) instead of texts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from spikesink.analyses.kv_cache.result import KVCache
from spikesink.analyses.unit import Job
from spikesink.extraction.perplexity import token_nll
from spikesink.instrumentation.attention import allowed_from_mask, attention_override
from spikesink.instrumentation.layout import model_layout


def measure(job: Job) -> KVCache:
    s = job.settings
    texts = job["prompts.long"].matrix()
    check_setting(texts.shape[1], s.window, s.keep, job.model.max_positions())
    summary, curve, per_block = kv_cache_tables(job.model.model, texts, s.window, s.keep, s.bin)
    return KVCache(summary=summary, curve=curve, per_block=per_block)


def windowed_attention(
    query,
    key,
    value,
    scaling: float,
    window: int,
    keep: int = 0,
    softcap: float | None = None,
    attention_mask: torch.Tensor | None = None,
    chunk: int = 1024,
    sink_logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax over the last `window` keys (and the first `keep`) of each query, @ V.

    query (B, H, T, D), key / value (B, H_kv, T, D) as an attention function gets them; returns
    (B, T, H, D) in the value's dtype. `attention_mask` (the model's own, e.g. its sliding window
    or padding) is intersected with the window. Queries go in chunks, each against only the keys
    it can reach (the first `keep` and the `window + chunk` before it): memory O(chunk x (window +
    chunk)) per head. Without soft-capping each chunk runs through torch's sdpa with that mask.
    """
    batch, n_heads, length, head_dim = query.shape
    allowed = allowed_from_mask(attention_mask, length, key.shape[2])
    out = torch.empty(batch, n_heads, length, value.shape[-1], dtype=value.dtype, device=query.device)
    for start in range(0, length, chunk):
        stop = min(length, start + chunk)
        low = max(0, start - window + 1)
        sinks = min(keep, low)  # kept first tokens that are not already in reach
        index = torch.cat([torch.arange(sinks), torch.arange(low, stop)]).to(query.device)
        k = torch.cat([key[:, :, :sinks], key[:, :, low:stop]], dim=2) if sinks else key[:, :, low:stop]
        v = torch.cat([value[:, :, :sinks], value[:, :, low:stop]], dim=2) if sinks else value[:, :, low:stop]
        i = torch.arange(start, stop, device=query.device)[:, None]
        j = index[None, :]
        visible = (j <= i) & ((i - j < window) | (j < keep))  # (c, K)
        if allowed is not None:
            visible = visible[None, None] & allowed[:, None, start:stop][..., index]  # (B or 1, 1, c, K)
        out[:, :, start:stop] = _chunk_attention(query[:, :, start:stop], k, v, visible, scaling, softcap, sink_logits)
    return out.transpose(1, 2).contiguous()


def _chunk_attention(query, key, value, visible, scaling, softcap, sink_logits=None):
    """(B, H, c, D) attention of a query chunk over its keys under a boolean `visible` mask;
    `sink_logits`: a learned logit per head joining the softmax (GPT-OSS), dropped after it."""
    if softcap is None and sink_logits is None:
        return torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=visible, scale=scaling, enable_gqa=query.shape[1] != key.shape[1]
        )
    groups = query.shape[1] // key.shape[1]
    q = query.float() * scaling
    k, v = key.float().repeat_interleave(groups, dim=1), value.float().repeat_interleave(groups, dim=1)
    scores = q @ k.transpose(-1, -2)
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    scores = scores.masked_fill(~visible, float("-inf"))
    if sink_logits is not None:
        column = sink_logits.float().reshape(1, -1, 1, 1).expand(*scores.shape[:-1], 1)
        probs = torch.softmax(torch.cat([scores, column], dim=-1), dim=-1)[..., :-1]
    else:
        probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return (probs @ v).to(value.dtype)


def windowed_nll(model: nn.Module, texts: np.ndarray, window: int | None, keep: int = 0) -> torch.Tensor:
    """(N, T-1) next-token loss with every layer attending through the window (None: full attention)."""
    if window is None:
        return torch.cat([token_nll(model, texts[i : i + 1]) for i in range(len(texts))])

    def compute(module, query, key, value, attention_mask, kwargs):
        scaling = kwargs.get("scaling")
        scaling = float(scaling if scaling is not None else module.scaling)
        out = windowed_attention(
            query,
            key,
            value,
            scaling,
            window,
            keep,
            kwargs.get("softcap"),
            attention_mask,
            sink_logits=kwargs.get("s_aux"),
        )
        return out, None

    with attention_override(model, compute):
        return torch.cat([token_nll(model, texts[i : i + 1]) for i in range(len(texts))])


def check_setting(length: int, window: int, keep: Sequence[int], max_positions: int | None = None) -> None:
    """Clear errors for a window the text cannot test (naming the kv_cache keys)."""
    if window < 1:
        raise ValueError(f"kv_cache.window must be >= 1, got {window}")
    if length < 2 * window:
        raise ValueError(
            f"kv_cache.n_tokens = {length} is shorter than 2 x kv_cache.window = {2 * window}: "
            "the window would barely evict anything; use a longer text or a smaller window"
        )
    if any(k < 0 or k >= window for k in keep):
        raise ValueError(f"kv_cache.keep must lie in [0, window), got {list(keep)}")
    if max_positions is not None and length > max_positions:
        raise ValueError(f"kv_cache.n_tokens = {length} exceeds the model's {max_positions} positions")


def kv_cache_study(
    model: nn.Module, texts: np.ndarray, window: int, keep: Sequence[int] = (0, 1, 4), bin_size: int = 64
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, curve): perplexity of full attention and of the window keeping 0, 1, 4... first
    tokens, over the positions the window bites (>= window) and over all; the loss per position
    bin for the figure."""
    return kv_cache_tables(model, texts, window, keep, bin_size)[:2]


def kv_cache_tables(
    model: nn.Module, texts: np.ndarray, window: int, keep: Sequence[int] = (0, 1, 4), bin_size: int = 64
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(summary, curve, per_block): kv_cache_study's tables and, from the same forwards, one row per
    (condition, text, block of `bin_size` targets beyond the window): the loss summed over the
    block (`nll_sum`) and its token count; block b starts at target `window + b * bin_size`."""
    texts = np.asarray(texts)
    check_setting(texts.shape[1], window, keep)
    layout = model_layout(model)
    conditions = [("full", None, 0)] + [(f"window {window} + {k} kept", window, k) for k in keep]
    summary, curves, blocks = [], [], []
    for name, w, k in conditions:
        nll = windowed_nll(model, texts, w, k).double().cpu().numpy()  # (N, T-1)
        late = nll[:, window:]  # targets beyond the window: where eviction happens
        summary.append(
            {
                "condition": name,
                "window": w,
                "kept": k,
                "perplexity_evicted": float(np.exp(late.mean())),
                "perplexity_all": float(np.exp(nll.mean())),
                "n_tokens": int(nll.size),
                # the layers the window applies to: those with softmax attention (a hybrid's linear
                # attention keeps a recurrent state, no keys to evict)
                "windowed_layers": len(layout.softmax_layers),
                "n_layers": layout.n_layers,
            }
        )
        for text in range(nll.shape[0]):
            for b, start in enumerate(range(window, nll.shape[1], bin_size)):
                values = late[text, start - window : start - window + bin_size]
                blocks.append(
                    {
                        "condition": name,
                        "kept": k,
                        "text": text,
                        "block": b,
                        "start": start,
                        "n_tokens": int(values.size),
                        "nll_sum": float(values.sum()),
                    }
                )
        positions = np.arange(1, nll.shape[1] + 1)
        for b in range(0, nll.shape[1], bin_size):
            curves.append(
                {
                    "condition": name,
                    "position": int(positions[b : b + bin_size].mean()),
                    "perplexity": float(np.exp(nll[:, b : b + bin_size].mean())),
                }
            )
    return pd.DataFrame(summary), pd.DataFrame(curves), pd.DataFrame(blocks)
