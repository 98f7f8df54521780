"""Attention-sink statistics inside an ordinary forward pass, without any T x T attention map.

A head *sinks* when its queries put most of their attention on key 0 (Gu et al. 2024). To
measure that on real prompts the obvious route, eager attention with output_attentions=True,
keeps L x H x T x T probabilities alive; at T = 1024 that is gigabytes. Instead we register a
custom attention function with transformers' AttentionInterface. It returns *exactly* what
transformers' own sdpa path returns (it calls `sdpa_attention_forward` with the same
arguments and the same mask, so logits are bit-identical to a plain sdpa model) and on the
side computes, per head, the probability each query gives to key 0 and to chosen spike-token
positions:

    p(q -> j) = exp(s_qj - logsumexp_k s_qk),   s = (q * scaling) . k  under the model's mask,

in float32 (also for bf16 models), in chunks of queries so that memory is O(chunk x T) per
head. GQA is handled by grouping query heads per key/value head (no repeat of the keys); the
mask is the one transformers builds for sdpa (we register sdpa's mask builder for our name),
so causal masks, sliding windows and right padding are respected. Qwen3's per-head q/k
RMSNorm and RoPE are applied by the attention module *before* the attention function is
called, so the q and k we see are the ones the softmax sees.

Usage (one forward pass shared with the block statistics of extract.py):

    with SinkStatistics(model) as sinks:
        for batch in batches:
            sinks.set_spike_positions(spike_mask_BxT)     # optional
            model(input_ids=batch)
    arrays = sinks.result()

Anything that would produce silently wrong numbers raises instead: a layer whose attention
does not go through the interface, sequences shorter than two tokens, left padding (key 0
would be a pad), a key cache longer than the queries.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from spikesink import metrics
from spikesink.architecture import base_model, decoder_layers

ATTN_IMPLEMENTATION = "spikesink_sinks"
# Elements of one float32 score chunk (batch x heads x queries x keys): 2**20 floats = 4 MiB
# (plus as much for its softmax). Measured on SmolLM2 shapes (9 heads; 1x1024 and 8x128):
# 2**18-2**22 are within noise on one thread; a few queries per chunk is ~1.7x slower, and on
# a shared, oversubscribed CPU every extra chunk is extra OpenMP synchronisation.
DEFAULT_CHUNK_ELEMENTS = 1 << 20


class AttentionRoutingError(RuntimeError):
    """The model's attention did not (fully) go through the registered attention function."""


# --------------------------------------------------------------------------------------------
# Pure computation
# --------------------------------------------------------------------------------------------


@dataclass
class AttentionMasses:
    """Per (sample, head) means over queries; float32 tensors of shape (B, H)."""

    key0: torch.Tensor  # mean over queries that can see key 0 of p(q -> 0)
    spike: torch.Tensor | None  # mean over valid queries of sum_j in spikes p(q -> j); None if no spikes given
    n_queries: torch.Tensor  # (B,) valid queries (non-padding)


def allowed_from_mask(attention_mask: torch.Tensor | None, q_len: int, k_len: int) -> torch.Tensor | None:
    """Turn the mask given to an attention function into a boolean (B or 1, q, k) 'may attend'.

    transformers hands sdpa-style functions a boolean 4D mask (True = attend) or None (pure
    causal, resolved by the kernel). An additive float mask (0 / very negative) is accepted too,
    but only if it is a pure mask: a real-valued bias would change the scores and we would
    not reproduce it here.
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


def attention_masses(
    query: torch.Tensor,
    key: torch.Tensor,
    scaling: float,
    attention_mask: torch.Tensor | None = None,
    spike_keys: torch.Tensor | None = None,
    *,
    max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    sliding_window: int | None = None,
) -> AttentionMasses:
    """Attention mass on key 0 (and on spike keys) per (sample, head), without a T x T map.

    query (B, H, T, D) and key (B, H_kv, T, D) as given to an attention function (post norm,
    post RoPE); H must be a multiple of H_kv (GQA). attention_mask: None (causal) or what
    `allowed_from_mask` accepts. spike_keys: optional bool (B, T), the key positions whose
    total mass is reported as `spike`.

    Why these denominators: key 0 mass follows Gu et al. (column sum over the number of
    queries that see the key), so with a sliding window the queries that cannot see key 0 do
    not dilute it; spike mass is averaged over all valid queries.
    """
    if query.dim() != 4 or key.dim() != 4:
        raise ValueError("query and key must be (B, H, T, D)")
    batch, n_heads, q_len, head_dim = query.shape
    n_kv = key.shape[1]
    k_len = key.shape[2]
    if q_len < 2:
        raise ValueError(
            f"sink statistics need sequences of at least 2 tokens (got {q_len}): with one token "
            "every query trivially puts all its attention on key 0"
        )
    if k_len != q_len:
        raise ValueError(
            f"key length {k_len} != query length {q_len}: sink statistics are defined for one "
            "full-sequence forward; call the model with use_cache=False and no past key values"
        )
    if n_heads % n_kv:
        raise ValueError(f"{n_heads} query heads are not a multiple of {n_kv} key/value heads")
    groups = n_heads // n_kv
    allowed = allowed_from_mask(attention_mask, q_len, k_len)
    if allowed is None and sliding_window is not None and q_len > sliding_window:
        raise ValueError(
            f"sliding window {sliding_window} < sequence length {q_len} but no mask was given: "
            "cannot tell which keys each query sees"
        )
    device = query.device

    if allowed is None:
        valid = torch.ones(1, q_len, dtype=torch.bool, device=device)
        sees0 = valid
        lower_triangular = True
    else:
        valid = torch.diagonal(allowed, dim1=-2, dim2=-1)  # a padding query does not see itself
        if not bool(valid[:, 0].all()):
            raise ValueError(
                "position 0 is masked in at least one sample (left padding?): key 0 would be a pad "
                "token; use right padding or equal-length sequences"
            )
        sees0 = allowed[:, :, 0] & valid
        lower_triangular = not bool(torch.triu(allowed, diagonal=1).any())
    if spike_keys is not None:
        if spike_keys.shape != (batch, k_len):
            raise ValueError(f"spike positions must be (B, T) = {(batch, k_len)}, got {tuple(spike_keys.shape)}")
        spike_weights = spike_keys.to(device=device, dtype=torch.float32)[:, None, :, None]  # (B, 1, T, 1)

    with torch.no_grad():
        # (B, H_kv, G, T, D): query heads grouped by the key/value head they share
        q = (query.detach().to(torch.float32) * scaling).reshape(batch, n_kv, groups, q_len, head_dim)
        k_t = key.detach().to(torch.float32).transpose(-1, -2)  # (B, H_kv, D, T)
        chunk = int(max(1, min(q_len, max_chunk_elements // max(1, batch * n_heads * k_len))))

        key0_sum = torch.zeros(batch, n_kv, groups, dtype=torch.float32, device=device)
        spike_sum = torch.zeros_like(key0_sum) if spike_keys is not None else None
        # with a causal mask only the square block on the diagonal holds keys after the query
        above_diagonal = torch.ones(chunk, chunk, dtype=torch.bool, device=device).triu_(1)
        for start in range(0, q_len, chunk):
            stop = min(q_len, start + chunk)
            width = stop if lower_triangular else k_len  # keys beyond the last query are never seen
            q_chunk = q[:, :, :, start:stop].reshape(batch, n_kv, groups * (stop - start), head_dim)
            scores = torch.matmul(q_chunk, k_t[..., :width]).view(batch, n_kv, groups, stop - start, width)
            if allowed is None:
                scores[..., start:stop].masked_fill_(above_diagonal[: stop - start, : stop - start], float("-inf"))
            else:
                blocked = ~allowed[:, start:stop, :width]  # (B or 1, c, w)
                scores.masked_fill_(blocked[:, None, None], float("-inf"))
            # torch's fused softmax (max, exp, sum, divide row by row in cache) is ~2x faster
            # than the same four steps as separate passes; fully masked rows give nan -> 0
            probs = torch.softmax(scores, dim=-1)
            del scores
            weight0 = sees0[:, start:stop].to(torch.float32)[:, None, None, :]  # (B or 1, 1, 1, c)
            key0_sum += (probs[..., 0].nan_to_num(0.0) * weight0).sum(-1)
            if spike_sum is not None:
                mass = torch.matmul(probs, spike_weights[:, :, None, :width]).squeeze(-1)
                spike_sum += (mass.nan_to_num_(0.0) * valid[:, start:stop].to(torch.float32)[:, None, None, :]).sum(-1)

        n_sees0 = sees0.sum(-1).to(torch.float32).expand(batch)  # (B,)
        n_valid = valid.sum(-1).to(torch.float32).expand(batch)
        key0 = (key0_sum.reshape(batch, n_heads) / n_sees0[:, None]).contiguous()
        spike = None if spike_sum is None else (spike_sum.reshape(batch, n_heads) / n_valid[:, None]).contiguous()
    return AttentionMasses(key0=key0, spike=spike, n_queries=n_valid)


def summarise_sinks(key0_mass: np.ndarray, eps: float = metrics.DEFAULT_SINK_EPS) -> dict[str, np.ndarray]:
    """Means and sink ratios of a (samples, layers, heads) key-0 mass array.

    The overall ratio goes through metrics.sink_ratio so that every number called 'sink ratio'
    in the project is the same definition (Gu et al., eps 0.3 by default).
    """
    mass = np.asarray(key0_mass, dtype=np.float32)
    if mass.ndim != 3:
        raise ValueError(f"key0_mass must be (samples, layers, heads), got shape {mass.shape}")
    sinks = mass > eps
    return {
        "key0_mass_layer_head": mass.mean(axis=0).astype(np.float32),  # (L, H)
        "key0_mass_layer": mass.mean(axis=(0, 2)).astype(np.float32),  # (L,)
        "sink_ratio_layer_head": (100.0 * sinks.mean(axis=0)).astype(np.float32),  # (L, H), percent of samples
        "sink_ratio_layer": (100.0 * sinks.mean(axis=(0, 2))).astype(np.float32),  # (L,), percent
        "sink_ratio": np.float32(metrics.sink_ratio(mass, eps)),  # scalar, percent
        "key0_mass_mean": np.float32(mass.mean()),
    }


# --------------------------------------------------------------------------------------------
# Routing: one registered attention function, observers per attention module
# --------------------------------------------------------------------------------------------

# id(attention module) -> observers that want to see (query, key, mask) of that module
_OBSERVERS: dict[int, list["AttentionObserver"]] = defaultdict(list)
# id(model) -> (depth of nested routing contexts, implementation to restore)
_ROUTED: dict[int, tuple[int, str | None]] = {}


def _routed_attention_forward(module, query, key, value, attention_mask, **kwargs):
    """sdpa, plus a look at (query, key, mask) for whoever observes this module."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    output = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    for observer in _OBSERVERS.get(id(module), ()):
        observer._observe(module, query, key, attention_mask, kwargs)
    return output


def register_attention_function() -> str:
    """Register our function and sdpa's mask builder under one name; idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTN_IMPLEMENTATION, _routed_attention_forward)
    # Without a mask builder for our name transformers would pass no mask at all (sliding
    # windows and padding would be silently ignored): reuse sdpa's, so the mask is the same.
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)
    return ATTN_IMPLEMENTATION


@contextlib.contextmanager
def routed_attention(model: nn.Module) -> Iterator[None]:
    """Switch `model` to the routed attention function; restore the previous one on exit.

    Re-entrant per model (a SinkStatistics and a key capture may be active together).
    """
    key = id(model)
    depth, previous = _ROUTED.get(key, (0, None))
    if depth == 0:
        register_attention_function()
        previous = model.config._attn_implementation
        if previous != ATTN_IMPLEMENTATION:
            model.set_attn_implementation(ATTN_IMPLEMENTATION)
        if model.config._attn_implementation != ATTN_IMPLEMENTATION:
            raise AttentionRoutingError(
                f"{type(model).__name__} refused attn_implementation={ATTN_IMPLEMENTATION!r} (it stays "
                f"{model.config._attn_implementation!r}); its attention does not use transformers' AttentionInterface"
            )
    _ROUTED[key] = (depth + 1, previous)
    try:
        yield
    finally:
        depth, previous = _ROUTED.pop(key)
        if depth > 1:
            _ROUTED[key] = (depth - 1, previous)
        elif previous != ATTN_IMPLEMENTATION:
            model.set_attn_implementation(previous)


class AttentionObserver:
    """Base for anything that needs (query, key, mask) of attention layers during forwards.

    Entering: routes the model's attention through our function, attaches to the attention
    modules of `layers` (0-based; default all) and adds a pre/post forward hook on the decoder
    stack. After every forward the post hook checks that each observed layer was seen exactly
    once, so a model whose attention bypasses the interface fails right after its first
    forward instead of yielding zeros. Per-forward results are buffered and committed only
    by that check, so an exception mid-forward leaves no half-filled sample behind.
    """

    def __init__(self, model: nn.Module, layers: Sequence[int] | None = None):
        self.model = model
        self._layers = decoder_layers(model)
        all_layers = range(len(self._layers))
        self.layers = tuple(sorted(set(all_layers if layers is None else layers)))
        bad = [index for index in self.layers if index not in all_layers]
        if bad:
            raise ValueError(f"layers {bad} out of range for a model with {len(self._layers)} layers")
        self._module_layer = {id(self._layers[index].attention): index for index in self.layers}
        self._stack = None
        self._buffer: dict[int, object] = {}
        self.n_forwards = 0

    # subclasses implement these two
    def _compute(self, layer: int, module, query, key, attention_mask, kwargs):
        raise NotImplementedError

    def _commit(self, per_layer: dict[int, object]) -> None:
        raise NotImplementedError

    def _observe(self, module, query, key, attention_mask, kwargs) -> None:
        layer = self._module_layer[id(module)]
        if layer in self._buffer:
            raise AttentionRoutingError(f"attention of layer {layer} ran twice in one forward")
        self._buffer[layer] = self._compute(layer, module, query, key, attention_mask, kwargs)

    def _before_forward(self, _module, _args):
        self._buffer = {}

    def _after_forward(self, _module, _args, _output):
        missing = [index for index in self.layers if index not in self._buffer]
        if missing:
            self._buffer = {}
            raise AttentionRoutingError(
                f"the attention function {ATTN_IMPLEMENTATION!r} was not called for layer(s) {missing}: "
                "these attention modules bypass transformers' AttentionInterface, so no statistics exist for them"
            )
        buffer, self._buffer = self._buffer, {}
        self._commit(buffer)
        self.n_forwards += 1

    def __enter__(self):
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(routed_attention(self.model))
            decoder = base_model(self.model)
            stack.callback(decoder.register_forward_pre_hook(self._before_forward).remove)
            stack.callback(decoder.register_forward_hook(self._after_forward).remove)
            for index in self.layers:
                module = self._layers[index].attention
                _OBSERVERS[id(module)].append(self)
                stack.callback(self._detach, id(module))
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def _detach(self, module_id: int) -> None:
        observers = _OBSERVERS.get(module_id, [])
        if self in observers:
            observers.remove(self)
        if not observers:
            _OBSERVERS.pop(module_id, None)

    def __exit__(self, *exc_info):
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()
        return False


# --------------------------------------------------------------------------------------------
# Sink statistics
# --------------------------------------------------------------------------------------------


class SinkStatistics(AttentionObserver):
    """Per sample, layer and head: mean attention on key 0 and on spike-token positions.

    spike_positions: bool (B, T) for the next forward(s), or None; change it per batch with
    `set_spike_positions`. It may also be a callable `f(layer) -> (B, T) bool or None`, asked
    at each layer's attention during the forward: spike tokens found by hooks earlier in the
    same forward (extract.py's running spike mask) can then be used without a second pass.
    The spike mass counts exactly the flagged keys (flag position 0 too if key 0 should be
    included); a (sample, layer) without spike positions gets NaN.
    """

    def __init__(
        self,
        model: nn.Module,
        spike_positions: torch.Tensor | np.ndarray | None = None,
        *,
        eps: float = metrics.DEFAULT_SINK_EPS,
        max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    ):
        super().__init__(model)
        self.eps = float(eps)
        self.max_chunk_elements = int(max_chunk_elements)
        self._key0: list[torch.Tensor] = []  # one (B, L, H) per forward
        self._spike: list[torch.Tensor] = []
        self._n_queries: list[torch.Tensor] = []
        self._spike_positions = None
        self.set_spike_positions(spike_positions)

    def set_spike_positions(self, mask) -> None:
        if mask is None or callable(mask):
            self._spike_positions = mask
            return
        mask = torch.as_tensor(mask)
        if mask.dim() != 2:
            raise ValueError(f"spike positions must be a (B, T) boolean mask, got shape {tuple(mask.shape)}")
        self._spike_positions = mask.to(torch.bool)

    def _compute(self, layer, module, query, key, attention_mask, kwargs):
        spikes = self._spike_positions
        if callable(spikes):
            spikes = spikes(layer)
            spikes = None if spikes is None else torch.as_tensor(spikes).to(torch.bool)
        return attention_masses(
            query,
            key,
            float(kwargs.get("scaling") if kwargs.get("scaling") is not None else module.scaling),
            attention_mask,
            spikes,
            max_chunk_elements=self.max_chunk_elements,
            sliding_window=kwargs.get("sliding_window"),
        )

    def _commit(self, per_layer: dict[int, AttentionMasses]) -> None:
        ordered = [per_layer[index] for index in self.layers]
        key0 = torch.stack([m.key0 for m in ordered], dim=1)  # (B, L, H)
        nan = torch.full_like(ordered[0].key0, float("nan"))
        spike = torch.stack([nan if m.spike is None else m.spike for m in ordered], dim=1)
        self._key0.append(key0.cpu())
        self._spike.append(spike.cpu())
        self._n_queries.append(ordered[0].n_queries.cpu())

    def result(self) -> dict[str, np.ndarray]:
        """float32 arrays: per-sample (N, L, H) key0_mass and spike_mass, and their summaries."""
        if not self._key0:
            raise RuntimeError("no forward pass was observed; run the model inside the `with` block")
        key0 = torch.cat(self._key0).numpy().astype(np.float32)
        spike = torch.cat(self._spike).numpy().astype(np.float32)
        out = {"key0_mass": key0, "spike_mass": spike, "n_queries": torch.cat(self._n_queries).numpy().astype(np.float32)}
        out.update(summarise_sinks(key0, self.eps))
        with np.errstate(invalid="ignore"), _quiet_nanmean():
            out["spike_mass_layer_head"] = np.nanmean(spike, axis=0).astype(np.float32)
        out["eps"] = np.float32(self.eps)
        return out


@contextlib.contextmanager
def _quiet_nanmean():
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Mean of empty slice", category=RuntimeWarning)
        yield


def sink_statistics(model: nn.Module, batches, spike_positions=None, **kwargs) -> dict[str, np.ndarray]:
    """Convenience: run `batches` (iterable of (B, T) input ids) and return SinkStatistics.result().

    spike_positions: optional iterable of (B, T) masks aligned with `batches`.
    """
    masks = iter(spike_positions) if spike_positions is not None else None
    with torch.no_grad(), SinkStatistics(model, **kwargs) as sinks:
        for input_ids in batches:
            sinks.set_spike_positions(next(masks) if masks is not None else None)
            model(input_ids=torch.as_tensor(input_ids), use_cache=False)
    return sinks.result()
