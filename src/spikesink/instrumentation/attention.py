"""The attention observer: queries, keys and the mask of every attention layer, without T x T maps.

A custom attention function registered with transformers' AttentionInterface sits where the
model's own attention function would be. By default it calls that function unchanged (sdpa, or
the family's eager function where a family runs on eager, e.g. Gemma 2 for its logit
soft-capping), so the model's outputs are bit-identical; observers see (query, key, mask,
kwargs) on the side, after the q/k projections, any q/k norm and RoPE, i.e. exactly what the
softmax sees. An override may instead compute the output itself (e.g. a structural window
mask for the KV-cache study), still through the registered function: no model code is patched.

`probability_chunks` is the reference kernel of every attention statistic: the softmax
probabilities p(q -> k) under the model's mask (causal, sliding window, padding) and
soft-capping, float32, in chunks of queries so that memory is O(chunk x T) per head; GQA is
handled by grouping query heads per key/value head (no repeat of the keys).

Where the family runs on sdpa and an observer asks for it (`wants_lse`), the registered function
calls the very fused kernel F.scaled_dot_product_attention would pick (same inputs, so the same
output bit for bit), but through the aten op that also returns each query's log-sum-exp
(`sdpa_with_lse`). `key_probabilities` then gives the attention on a few chosen keys as
exp(scale * q.k - lse): O(T x keys) per head instead of a second O(T^2) pass. Kernels without a
log-sum-exp (eager soft-capping, the math backend, position biases) keep the reference kernel.

Anything that would produce silently wrong numbers raises instead: a layer whose attention does
not go through the interface (checked after every forward), left padding, cached keys.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layout import NotApplicable, model_layout
from .taps import StopForward

log = logging.getLogger(__name__)

# our registered names, per base implementation (each with that implementation's mask builder)
ROUTED = {"sdpa": "spikesink_sdpa", "eager": "spikesink_eager"}
# Elements of one float32 score chunk (batch x heads x queries x keys): 2**20 floats = 4 MiB
# (plus as much for its softmax). Measured on SmolLM2 shapes (9 heads; 1x1024 and 8x128):
# 2**18-2**22 are within noise on one thread; a few queries per chunk is ~1.7x slower.
DEFAULT_CHUNK_ELEMENTS = 1 << 20


class AttentionRoutingError(RuntimeError):
    """The model's attention did not (fully) go through the registered attention function."""


# --------------------------------------------------------------------------------------------
# The probability kernel
# --------------------------------------------------------------------------------------------


ChunkMask = Callable[[int, int, int], torch.Tensor]  # (start, stop, width) -> (1 or B, c, width) bool


def window_mask(window: int, n_sink: int = 0, device=None) -> ChunkMask:
    """Causal sliding window of `window` keys (the query included) plus the first `n_sink` keys."""
    if window < 1 or n_sink < 0:
        raise ValueError(f"window must be >= 1 and n_sink >= 0, got {window}, {n_sink}")

    def chunk(start: int, stop: int, width: int) -> torch.Tensor:
        i = torch.arange(start, stop, device=device)[:, None]
        j = torch.arange(width, device=device)[None, :]
        return ((j <= i) & ((i - j < window) | (j < n_sink)))[None]

    return chunk


def allowed_from_mask(attention_mask: torch.Tensor | None, q_len: int, k_len: int) -> torch.Tensor | None:
    """Turn the mask given to an attention function into a boolean (B or 1, q, k) 'may attend'.

    transformers hands sdpa-style functions a boolean 4D mask (True = attend) or None (pure
    causal, resolved by the kernel); eager functions get an additive float mask (0 / very
    negative). A float mask is accepted only if it is a pure mask: a real-valued bias would
    change the scores and would not be reproduced here.
    """
    if attention_mask is None:
        return None
    if attention_mask.dim() != 4 or attention_mask.shape[1] != 1:
        raise ValueError(
            f"expected an attention mask of shape (B, 1, q, k), got {tuple(attention_mask.shape)}; "
            "per-head masks are not supported"
        )
    if attention_mask.shape[-2:] != (q_len, k_len):
        raise ValueError(f"attention mask {tuple(attention_mask.shape)} does not match q={q_len}, k={k_len}")
    mask = attention_mask[:, 0]
    if mask.dtype == torch.bool:
        return mask
    allowed = mask > torch.finfo(mask.dtype).min / 2
    if torch.any(mask[allowed] != 0):
        raise ValueError("additive attention masks with a non-zero bias are not supported")
    return allowed


@dataclass
class MaskGeometry:
    """Which queries are real and which see key 0, from the mask (B or 1 rows)."""

    valid: torch.Tensor  # (B or 1, q) bool: non-padding queries
    sees0: torch.Tensor  # (B or 1, q) bool: valid queries that may attend to key 0
    lower_triangular: bool  # no query sees a later key (keys beyond the chunk can be skipped)


def _geometry(allowed, chunk_mask: ChunkMask | None, q_len: int, device) -> MaskGeometry:
    if chunk_mask is not None:
        first = torch.cat([chunk_mask(s, min(q_len, s + 4096), 1) for s in range(0, q_len, 4096)], dim=1)[..., 0]
        valid = torch.ones(1, q_len, dtype=torch.bool, device=device)
        return MaskGeometry(valid, first & valid, True)
    if allowed is None:
        valid = torch.ones(1, q_len, dtype=torch.bool, device=device)
        return MaskGeometry(valid, valid, True)
    valid = torch.diagonal(allowed, dim1=-2, dim2=-1)  # a padding query does not see itself
    if not bool(valid[:, 0].all()):
        raise ValueError(
            "position 0 is masked in at least one sample (left padding?): key 0 would be a pad "
            "token; use right padding or equal-length sequences"
        )
    return MaskGeometry(valid, allowed[:, :, 0] & valid, not bool(torch.triu(allowed, diagonal=1).any()))


def _check_shapes(query: torch.Tensor, key: torch.Tensor) -> None:
    if query.dim() != 4 or key.dim() != 4:
        raise ValueError("query and key must be (B, H, T, D)")
    n_heads, q_len = query.shape[1], query.shape[2]
    n_kv, k_len = key.shape[1], key.shape[2]
    if k_len != q_len:
        raise ValueError(
            f"key length {k_len} != query length {q_len}: attention statistics are defined for one "
            "full-sequence forward; call the model with use_cache=False and no past key values"
        )
    if n_heads % n_kv:
        raise ValueError(f"{n_heads} query heads are not a multiple of {n_kv} key/value heads")


def _allowed(attention_mask, q_len: int, sliding_window: int | None) -> torch.Tensor | None:
    allowed = allowed_from_mask(attention_mask, q_len, q_len)
    if allowed is None and sliding_window is not None and q_len > sliding_window:
        raise ValueError(
            f"sliding window {sliding_window} < sequence length {q_len} but no mask was given: "
            "cannot tell which keys each query sees"
        )
    return allowed


def probability_chunks(
    query: torch.Tensor,
    key: torch.Tensor,
    scaling: float,
    attention_mask: torch.Tensor | ChunkMask | None = None,
    *,
    softcap: float | None = None,
    sliding_window: int | None = None,
    sinks: torch.Tensor | None = None,
    max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> tuple[MaskGeometry, Iterator[tuple[int, int, torch.Tensor]]]:
    """(mask geometry, iterator of (start, stop, probs)) with probs (B, H_kv, G, stop-start, width).

    query (B, H, T, D) and key (B, H_kv, T, D) as given to an attention function. The scores are
    those of eager attention: (q . k) * scaling, then tanh soft-capping when `softcap` is set,
    then the mask; softmax in float32. Keys beyond `width` are never seen by the chunk's queries.
    Fully masked rows (padding queries) give zeros. `sinks`: one learned logit per query head
    (GPT-OSS) that joins every query's softmax and is dropped after it, so a row of probs sums to
    1 - p(sink).
    """
    _check_shapes(query, key)
    batch, n_heads, q_len, head_dim = query.shape
    n_kv, k_len = key.shape[1], key.shape[2]
    chunk_mask = attention_mask if callable(attention_mask) else None
    allowed = None if chunk_mask is not None else _allowed(attention_mask, q_len, sliding_window)
    device = query.device
    geometry = _geometry(allowed, chunk_mask, q_len, device)
    groups = n_heads // n_kv
    if sinks is not None and sinks.numel() != n_heads:
        raise ValueError(f"{sinks.numel()} sink logits for {n_heads} query heads")

    def chunks():
        with torch.no_grad():
            # (B, H_kv, G, T, D): query heads grouped by the key/value head they share
            q = (query.detach().to(torch.float32) * scaling).reshape(batch, n_kv, groups, q_len, head_dim)
            k_t = key.detach().to(torch.float32).transpose(-1, -2)  # (B, H_kv, D, T)
            size = int(max(1, min(q_len, max_chunk_elements // max(1, batch * n_heads * k_len))))
            above_diagonal = torch.ones(size, size, dtype=torch.bool, device=device).triu_(1)
            for start in range(0, q_len, size):
                stop = min(q_len, start + size)
                width = stop if geometry.lower_triangular else k_len
                q_chunk = q[:, :, :, start:stop].reshape(batch, n_kv, groups * (stop - start), head_dim)
                scores = torch.matmul(q_chunk, k_t[..., :width]).view(batch, n_kv, groups, stop - start, width)
                if softcap is not None:
                    scores = torch.tanh(scores / softcap) * softcap
                if chunk_mask is not None:
                    scores.masked_fill_(~chunk_mask(start, stop, width)[:, None, None], float("-inf"))
                elif allowed is None:
                    scores[..., start:stop].masked_fill_(above_diagonal[: stop - start, : stop - start], float("-inf"))
                else:
                    scores.masked_fill_(~allowed[:, start:stop, :width][:, None, None], float("-inf"))
                if sinks is not None:  # the sink's column joins the softmax, then is dropped
                    sink = sinks.detach().to(torch.float32).reshape(1, n_kv, groups, 1, 1)
                    scores = torch.cat([scores, sink.expand(batch, -1, -1, stop - start, 1)], dim=-1)
                # torch's fused softmax is ~2x faster than max/exp/sum/divide as separate passes
                probs = torch.softmax(scores, dim=-1).nan_to_num_(0.0)
                if sinks is not None:
                    probs = probs[..., :-1]
                del scores
                yield start, stop, probs

    return geometry, chunks()


def score_options(kwargs: dict) -> dict:
    """What an attention function's kwargs add to the scores and the softmax (probability_chunks'
    keyword arguments): soft-capping, the sliding window and GPT-OSS's learned sink logits."""
    return {
        "softcap": kwargs.get("softcap"),
        "sliding_window": kwargs.get("sliding_window"),
        "sinks": kwargs.get("s_aux"),
    }


def chunked_attention_output(
    query,
    key,
    value,
    scaling,
    attention_mask=None,
    *,
    softcap=None,
    sinks=None,
    max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> torch.Tensor:
    """softmax(scores) @ V in query chunks: (B, T, H, D) in the value's dtype, like transformers'
    attention functions return it. Memory O(chunk x T) per head, no T x T map."""
    batch, n_heads, q_len, head_dim = query.shape
    n_kv = key.shape[1]
    groups = n_heads // n_kv
    _, chunks = probability_chunks(
        query, key, scaling, attention_mask, softcap=softcap, sinks=sinks, max_chunk_elements=max_chunk_elements
    )
    out = torch.zeros(batch, n_kv, groups, q_len, value.shape[-1], dtype=torch.float32, device=query.device)
    v = value.detach().to(torch.float32)[:, :, None]  # (B, H_kv, 1, T, Dv)
    for start, stop, probs in chunks:
        out[:, :, :, start:stop] = torch.matmul(probs, v[..., : probs.shape[-1], :])
    return out.reshape(batch, n_heads, q_len, -1).transpose(1, 2).contiguous().to(value.dtype)


# --------------------------------------------------------------------------------------------
# Fused sdpa with its log-sum-exp
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelLSE:
    """The softmax normaliser a fused kernel computed with the output:
    lse[b, h, q] = logsumexp_k(scale * q . k + mask[b, q, k]) over the keys the mask lets q see."""

    lse: torch.Tensor  # (B, H, T) float32
    scale: float
    backend: str  # e.g. "cpu flash"


def key_probabilities(
    query: torch.Tensor,
    key: torch.Tensor,
    kernel: KernelLSE,
    positions: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    sliding_window: int | None = None,
    max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> tuple[MaskGeometry, Iterator[tuple[int, int, torch.Tensor]]]:
    """(mask geometry, iterator of (start, stop, probs)) with probs (B, H_kv, G, stop-start, P):
    p(q -> positions[j]) = exp(scale * q . k_j - lse_q), zero where the mask hides key j from q.

    The counterpart of `probability_chunks` for a few keys (key 0, the spike tokens) when the
    kernel's log-sum-exp is known: O(T x P x D) per head instead of O(T^2 x D), float32.
    """
    _check_shapes(query, key)
    batch, n_heads, q_len, head_dim = query.shape
    n_kv = key.shape[1]
    groups = n_heads // n_kv
    if kernel.lse.shape != (batch, n_heads, q_len):
        raise ValueError(f"log-sum-exp of shape {tuple(kernel.lse.shape)}, expected {(batch, n_heads, q_len)}")
    allowed = _allowed(attention_mask, q_len, sliding_window)
    device = query.device
    geometry = _geometry(allowed, None, q_len, device)
    positions = positions.to(device=device, dtype=torch.long)

    def chunks():
        with torch.no_grad():
            q = query.detach().to(torch.float32).reshape(batch, n_kv, groups, q_len, head_dim)
            k_t = key.detach()[:, :, positions].to(torch.float32).transpose(-1, -2)[:, :, None]  # (B, H_kv, 1, D, P)
            lse = kernel.lse.detach().to(torch.float32).reshape(batch, n_kv, groups, q_len, 1)
            size = int(max(1, min(q_len, max_chunk_elements // max(1, batch * n_heads * len(positions)))))
            for start in range(0, q_len, size):
                stop = min(q_len, start + size)
                scores = torch.matmul(q[:, :, :, start:stop], k_t) * kernel.scale
                if allowed is None:  # causal
                    sees = positions[None, :] <= torch.arange(start, stop, device=device)[:, None]
                else:
                    sees = allowed[:, start:stop][:, :, positions][:, None, None]
                # where, not a product: a fully masked (padding) query has lse = -inf
                yield start, stop, torch.where(sees, torch.exp(scores - lse[:, :, :, start:stop]), 0.0)

    return geometry, chunks()


# module-level so that tests can stand in for the CUDA ops on a CPU-only machine
_aten = torch.ops.aten
NEG_INF_CUDNN = -65504.0  # what torch's sdpa puts into a boolean mask for cuDNN instead of -inf


def _additive(mask: torch.Tensor | None, dtype: torch.dtype, neg_inf: float = float("-inf")):
    """A boolean 'may attend' mask as the additive mask torch's sdpa converts it to."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, neg_inf)


def _cpu_flash(query, key, value, mask, is_causal, scale):
    out, lse = _aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, 0.0, is_causal, attn_mask=_additive(mask, query.dtype), scale=scale
    )
    return out, lse


def _cuda_flash(query, key, value, mask, is_causal, scale):
    if mask is not None:  # torch never chooses it with one
        raise ValueError("CUDA flash attention takes no attention mask")
    # as torch's sdpa does it: head dim padded to a multiple of 8, the scale of the unpadded one
    head_dim = query.shape[-1]
    pad = -head_dim % 8
    q, k, v = (F.pad(t, (0, pad)) if pad else t for t in (query, key, value))
    scale = scale if scale is not None else 1.0 / math.sqrt(head_dim)
    out, lse = _aten._scaled_dot_product_flash_attention(q, k, v, 0.0, is_causal, False, scale=scale)[:2]
    return out[..., :head_dim], lse


def _cuda_efficient(query, key, value, mask, is_causal, scale):
    bias = _additive(mask, query.dtype)
    if bias is not None:  # torch's preprocess_mask: strides aligned to 8 elements, broadcast to 4-D
        if bias.stride(-1) != 1 or any(stride % 8 for stride in bias.stride()[:-1]):
            width = bias.shape[-1]
            bias = F.pad(bias, (0, 8 - width % 8))[..., :width]
        bias = bias.expand(query.shape[0], query.shape[1], query.shape[2], key.shape[2])
    out, lse = _aten._scaled_dot_product_efficient_attention(
        query, key, value, bias, True, 0.0, is_causal, scale=scale
    )[:2]
    return out, lse[..., : query.shape[2]]  # the log-sum-exp is padded to a multiple of 32 queries


def _cuda_cudnn(query, key, value, mask, is_causal, scale):
    bias = _additive(mask, query.dtype, NEG_INF_CUDNN)
    out, lse = _aten._scaled_dot_product_cudnn_attention(
        query, key, value, bias, True, 0.0, is_causal, False, scale=scale
    )[:2]
    return out, lse.reshape(query.shape[0], query.shape[1], -1)[..., : query.shape[2]]  # (B, H, T, 1) -> (B, H, T)


# (device type, torch SDPBackend value) -> kernel(q, k, v, mask, is_causal, scale) -> (out (B, H, T, Dv), lse)
LSE_KERNELS: dict[tuple[str, int], tuple[str, Callable]] = {
    ("cpu", 1): ("cpu flash", _cpu_flash),
    ("cuda", 1): ("cuda flash", _cuda_flash),
    ("cuda", 2): ("cuda efficient", _cuda_efficient),
    ("cuda", 3): ("cuda cudnn", _cuda_cudnn),
}
# (backend, dtype) -> whether its log-sum-exp matched an explicit one on the first call (see _lse_agrees)
_LSE_CHECKED: dict[tuple[str, torch.dtype], bool] = {}


def _lse_agrees(query, key, lse: torch.Tensor, scale: float, mask, is_causal: bool) -> bool:
    """The kernel's log-sum-exp against an explicit one for two query rows: a wrong layout,
    padding, unit (log2) or scale would not pass. Cheap (two rows); run once per backend and dtype."""
    q_len = query.shape[2]
    rows = torch.tensor(sorted({q_len // 2, q_len - 1}), device=query.device)
    k = key.float().repeat_interleave(query.shape[1] // key.shape[1], dim=1)
    scores = torch.matmul(query[:, :, rows].float(), k.transpose(-1, -2)) * scale  # (B, H, r, T)
    if mask is None:
        sees = torch.arange(q_len, device=query.device)[None, :] <= rows[:, None] if is_causal else None
    else:
        sees = allowed_from_mask(mask, q_len, q_len)[:, rows][:, None]
    if sees is not None:
        scores = scores.masked_fill(~sees, float("-inf"))
    want = torch.logsumexp(scores, dim=-1)
    got = lse[:, :, rows].float()
    tolerance = 1e-3 if query.dtype in (torch.float32, torch.float64) else 3e-2
    seen = torch.isfinite(want)  # a fully masked row has no normaliser to compare
    return bool(((got - want).abs()[seen] <= tolerance).all())


def sdpa_with_lse(
    module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, position_bias=None, **kwargs
):
    """transformers' sdpa_attention_forward, returning ((output, None), KernelLSE or None).

    The same preprocessing (GQA by `enable_gqa` or repeated key/value heads, `is_causal` only
    without a mask) and the backend torch's sdpa would choose for these inputs; where that
    backend has an LSE-returning op (CPU flash; CUDA flash, memory-efficient, cuDNN) it is
    called as torch's sdpa calls it, so the output is the same. Anything else (math backend,
    position bias, dropout, cached keys, other devices) runs sdpa_attention_forward unchanged and
    returns no LSE.
    """
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward, use_gqa_in_sdpa

    def plain():
        output = sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal,
            position_bias=position_bias, **kwargs,
        )  # fmt: skip
        return output, None

    q_len = query.shape[2]
    if (
        position_bias is not None
        or dropout
        or kwargs.get("softcap") is not None
        or kwargs.get("s_aux") is not None  # learned sinks: not in the kernel's log-sum-exp
        or q_len < 2
        or key.shape[2] != q_len
        or query.device.type not in ("cpu", "cuda")
        or torch.jit.is_tracing()
        or torch.compiler.is_compiling()
    ):
        return plain()
    n_rep = getattr(module, "num_key_value_groups", 1)
    enable_gqa, k, v = False, key, value
    if n_rep > 1:
        if use_gqa_in_sdpa(attention_mask, key, value):
            enable_gqa = True
        else:
            k, v = repeat_kv(key, n_rep), repeat_kv(value, n_rep)
    causal = bool(is_causal if is_causal is not None else getattr(module, "is_causal", True)) and attention_mask is None
    try:
        choice = int(
            _aten._fused_sdp_choice(query, k, v, attention_mask, 0.0, causal, scale=scaling, enable_gqa=enable_gqa)
        )
    except (RuntimeError, TypeError):  # older torch without enable_gqa, or no viable backend
        return plain()
    name, kernel = LSE_KERNELS.get((query.device.type, choice), (None, None))
    checked = _LSE_CHECKED.get((name, query.dtype))
    if kernel is None or checked is False:
        return plain()
    out, lse = kernel(query, k, v, attention_mask, causal, scaling)
    scale = float(scaling) if scaling is not None else 1.0 / math.sqrt(query.shape[-1])
    if checked is None:
        checked = _LSE_CHECKED[(name, query.dtype)] = _lse_agrees(query, k, lse, scale, attention_mask, causal)
        if not checked:
            log.warning(
                "%s: its log-sum-exp disagrees with an explicit one; attention statistics use the chunked pass", name
            )
    output = out.transpose(1, 2).contiguous()  # (B, T, H, Dv), as sdpa_attention_forward returns it
    return (output, None), (KernelLSE(lse.to(torch.float32), scale, name) if checked else None)


# --------------------------------------------------------------------------------------------
# Routing: registered attention functions, observers and overrides per attention module
# --------------------------------------------------------------------------------------------


@dataclass
class _Route:
    observers: list
    override: Callable | None = None


_ROUTES: dict[int, _Route] = defaultdict(lambda: _Route([]))
# id(model) -> (depth of nested routing contexts, implementation to restore)
_ROUTED_MODELS: dict[int, tuple[int, str | contextlib.ExitStack]] = {}  # or the hooks that stand in


def _family_eager(module):
    fn = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if fn is None:
        raise AttentionRoutingError(f"{type(module).__module__} defines no eager_attention_forward")
    return fn


def _routed(base: str):
    def forward(module, query, key, value, attention_mask, **kwargs):
        route = _ROUTES.get(id(module))
        observers = route.observers if route is not None else ()
        lse = None
        if route is not None and route.override is not None:
            output = route.override(module, query, key, value, attention_mask, kwargs)
        elif base == "sdpa" and any(observer.wants_lse for observer in observers):
            output, lse = sdpa_with_lse(module, query, key, value, attention_mask, **kwargs)
        elif base == "sdpa":
            from transformers.integrations.sdpa_attention import sdpa_attention_forward

            output = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
        else:
            output = _family_eager(module)(module, query, key, value, attention_mask, **kwargs)
        for observer in observers:
            observer._observe(module, query, key, attention_mask, kwargs, lse)
        return output

    return forward


def register_attention_functions() -> None:
    """Register our functions and the matching mask builders; idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask, sdpa_mask

    for base, name in ROUTED.items():
        AttentionInterface.register(name, _routed(base))
        # without a mask builder for our name transformers would pass no mask at all (sliding
        # windows and padding silently ignored): reuse the base implementation's builder
        AttentionMaskInterface.register(name, sdpa_mask if base == "sdpa" else eager_mask)


def _module_attention_hooks(model: nn.Module) -> contextlib.ExitStack:
    """Forward hooks that stand in for the registered function where the attention module computes
    its own softmax (adapter.attention_interface False, GPT-Neo's `_attn`).

    Hooks on the q / k / v projections keep this forward's query, key and value (B, H, T, D); the
    module's own mask (its boolean `mask_buffer`: causal, local window) is combined with the
    additive mask it is handed, and its score factor comes from the adapter (GPT-Neo: 1). After the
    module ran, observers see (query, key, mask, {"scaling": ...}) as from the registered function;
    an override's output (B, T, H, D) goes through the output projection and replaces the module's.
    Nothing is patched: the module's forward runs unchanged.
    """
    layout = model_layout(model)
    parts = layout.adapter.attention_parts
    stack = contextlib.ExitStack()
    for lv in layout.layers:
        attention = lv.attention
        seen: dict[str, torch.Tensor] = {}

        def projection(name, seen=seen):
            def hook(_m, _args, output):
                batch, q_len = output.shape[:2]
                seen[name] = output.view(batch, q_len, -1, layout.head_dim).transpose(1, 2)

            return hook

        def before(_m, args, kwargs, seen=seen):
            seen.clear()
            seen["mask"] = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)

        def after(module, _args, output, seen=seen):
            route = _ROUTES.get(id(module))
            if route is None:
                return None
            query, key, value = seen.pop("q"), seen.pop("k"), seen.pop("v")
            mask = _module_mask(module, seen.pop("mask", None), parts.mask_buffer, query.shape[0], query.shape[2])
            kwargs = {} if parts.scaling is None else {"scaling": parts.scaling}
            replaced = None
            if route.override is not None:
                out, _ = route.override(module, query, key, value, mask, kwargs)
                out = getattr(module, parts.o)(out.reshape(*out.shape[:2], -1).to(value.dtype))
                replaced = (out, *output[1:]) if isinstance(output, tuple) else out
            for observer in route.observers:
                observer._observe(module, query, key, mask, kwargs, None)
            return replaced

        for role in ("q", "k", "v"):
            stack.callback(getattr(attention, getattr(parts, role)).register_forward_hook(projection(role)).remove)
        stack.callback(attention.register_forward_pre_hook(before, with_kwargs=True).remove)
        stack.callback(attention.register_forward_hook(after).remove)
    return stack


def _module_mask(module, attention_mask, buffer: str | None, batch: int, q_len: int) -> torch.Tensor | None:
    """The keys each query may see, as a boolean (B or 1, 1, T, T): the module's own buffer (causal,
    local window) and the (additive) mask it was handed."""
    allowed = allowed_from_mask(attention_mask, q_len, q_len)
    if buffer is not None:
        own = getattr(module, buffer)[0, 0, :q_len, :q_len].to(torch.bool)
        allowed = own[None] if allowed is None else allowed & own[None]
    return None if allowed is None else allowed[:, None]


@contextlib.contextmanager
def routed_attention(model: nn.Module) -> Iterator[None]:
    """Switch `model` to our attention function; restore the previous one on exit (re-entrant).
    A family whose attention module computes its own softmax is observed through hooks instead."""
    key = id(model)
    depth, previous = _ROUTED_MODELS.get(key, (0, None))
    if depth == 0 and not model_layout(model).adapter.attention_interface:
        previous = _module_attention_hooks(model)
    elif depth == 0:
        register_attention_functions()
        previous = model.config._attn_implementation
        base = next((b for b, n in ROUTED.items() if n == previous), previous)
        if base not in ROUTED:
            raise AttentionRoutingError(
                f"{type(model).__name__} runs attn_implementation={previous!r}; observation needs 'sdpa' or 'eager'"
            )
        model.set_attn_implementation(ROUTED[base])
        if model.config._attn_implementation != ROUTED[base]:
            raise AttentionRoutingError(
                f"{type(model).__name__} refused attn_implementation={ROUTED[base]!r} (it stays "
                f"{model.config._attn_implementation!r}); its attention does not use transformers' AttentionInterface"
            )
    _ROUTED_MODELS[key] = (depth + 1, previous)
    try:
        yield
    finally:
        depth, previous = _ROUTED_MODELS.pop(key)
        if depth > 1:
            _ROUTED_MODELS[key] = (depth - 1, previous)
        elif isinstance(previous, contextlib.ExitStack):  # the hooks of a module's own attention
            previous.close()
        elif model.config._attn_implementation != previous:
            model.set_attn_implementation(previous)


def _scaling(module, kwargs) -> float:
    value = kwargs.get("scaling")
    return float(value if value is not None else module.scaling)


class AttentionObserver:
    """Base for anything that needs (query, key, mask) of attention layers during forwards.

    Entering routes the model's attention through our function, attaches to the attention
    modules of `layers` (0-based; default all) and hooks the decoder stack. After every forward
    each observed layer must have been seen exactly once, so a model whose attention bypasses
    the interface fails right after its first forward instead of yielding zeros. Per-forward
    results are buffered and committed only by that check, so an exception mid-forward leaves
    no half-filled sample behind. With `stop_after_last` the forward ends (StopForward, caught
    by taps.run_decoder) right after the deepest observed layer's attention, whose results are
    committed first.

    An observer with `wants_lse` has `_compute` called with one more argument: the kernel's
    log-sum-exp (KernelLSE), or None where the attention ran on a kernel that gives none.
    """

    wants_lse = False

    def __init__(self, model: nn.Module, layers: Sequence[int] | None = None, stop_after_last: bool = False):
        self.model = model
        self.stop_after_last = stop_after_last
        self.layout = model_layout(model)
        all_layers = range(self.layout.n_layers)
        # default: every layer with softmax attention (a hybrid's linear-attention layers have none)
        self.layers = tuple(sorted(set(self.layout.softmax_layers if layers is None else layers)))
        bad = [index for index in self.layers if index not in all_layers]
        if bad:
            raise ValueError(f"layers {bad} out of range for a model with {self.layout.n_layers} layers")
        linear = [index for index in self.layers if not self.layout.layers[index].softmax]
        if linear:
            raise NotApplicable(f"layer(s) {linear}: {self.layout.no_softmax_reason(linear[0])}")
        self._module_layer = {id(self.layout.layers[i].attention): i for i in self.layers}
        self._stack = None
        self._buffer: dict[int, object] = {}
        self.n_forwards = 0

    # subclasses implement these two
    def _compute(self, layer: int, module, query, key, attention_mask, kwargs):
        raise NotImplementedError

    def _commit(self, per_layer: dict[int, object]) -> None:
        raise NotImplementedError

    @staticmethod
    def scaling(module, kwargs) -> float:
        return _scaling(module, kwargs)

    def _observe(self, module, query, key, attention_mask, kwargs, lse: KernelLSE | None = None) -> None:
        layer = self._module_layer[id(module)]
        if layer in self._buffer:
            raise AttentionRoutingError(f"attention of layer {layer} ran twice in one forward")
        extra = (lse,) if self.wants_lse else ()
        self._buffer[layer] = self._compute(layer, module, query, key, attention_mask, kwargs, *extra)
        if self.stop_after_last and layer == self.layers[-1]:
            self._after_forward(None, None, None)
            raise StopForward

    def _before_forward(self, _module, _args):
        self._buffer = {}

    def _after_forward(self, _module, _args, _output):
        missing = [index for index in self.layers if index not in self._buffer]
        if missing:
            self._buffer = {}
            raise AttentionRoutingError(
                f"the registered attention function was not called for layer(s) {missing}: "
                "these attention modules bypass transformers' AttentionInterface, so no statistics exist for them"
            )
        buffer, self._buffer = self._buffer, {}
        self._commit(buffer)
        self.n_forwards += 1

    def __enter__(self):
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(routed_attention(self.model))
            decoder = self.layout.decoder
            stack.callback(decoder.register_forward_pre_hook(self._before_forward).remove)
            stack.callback(decoder.register_forward_hook(self._after_forward).remove)
            for index in self.layers:
                module_id = id(self.layout.layers[index].attention)
                _ROUTES[module_id].observers.append(self)
                stack.callback(self._detach, module_id)
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def _detach(self, module_id: int) -> None:
        route = _ROUTES.get(module_id)
        if route is None:
            return
        if self in route.observers:
            route.observers.remove(self)
        if not route.observers and route.override is None:
            _ROUTES.pop(module_id, None)

    def __exit__(self, *exc_info):
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()
        return False


@contextlib.contextmanager
def attention_override(model: nn.Module, compute: Callable, layers: Sequence[int] | None = None) -> Iterator[None]:
    """Compute the attention output of `layers` (default all) with compute(module, q, k, v, mask,
    kwargs) -> (output (B, T, H, D), None) instead of the base implementation."""
    layout = model_layout(model)
    indices = layout.softmax_layers if layers is None else layers
    linear = [i for i in indices if not layout.layers[i].softmax]
    if linear:
        raise NotApplicable(f"layer(s) {linear}: {layout.no_softmax_reason(linear[0])}")
    modules = [id(layout.layers[i].attention) for i in indices]
    with routed_attention(model):
        for module_id in modules:
            if _ROUTES[module_id].override is not None:
                raise AttentionRoutingError("two attention overrides on one layer")
            _ROUTES[module_id].override = compute
        try:
            yield
        finally:
            for module_id in modules:
                route = _ROUTES.get(module_id)
                if route is not None:
                    route.override = None
                    if not route.observers:
                        _ROUTES.pop(module_id, None)
