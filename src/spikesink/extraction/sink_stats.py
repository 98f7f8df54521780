"""Attention-sink statistics inside an ordinary forward pass, without any T x T attention map.

A head *sinks* when its queries put most of their attention on key 0 (Gu et al. 2024). To
measure that on real prompts the obvious route, eager attention with output_attentions=True,
keeps L x H x T x T probabilities alive; at T = 1024 that is gigabytes. Instead an attention
observer (`spikesink.instrumentation.attention`) sees each layer's query, key and mask where the
softmax sees them (after the q/k projections, q/k norms and RoPE) while the model's own
attention function computes the output unchanged, and the probabilities

    p(q -> j) = exp(s_qj - logsumexp_k s_qk),   s = (q * scaling) . k, soft-capped, under the mask,

are formed in float32 in chunks of queries (O(chunk x T) per head): the mass on key 0 and on
chosen spike-token positions, per sample and head. Causal masks, sliding windows, soft-capping,
GQA and right padding are respected (equal to eager attention within 1e-5 in the tests).

Where the family runs on sdpa, the logsumexp_k term comes from the fused kernel itself (it
computes it for the output anyway; instrumentation.attention.sdpa_with_lse), so only the few
scores s_q0 and s_qj (j a spike token) are formed: O(T x d) per head, not a second Q K^T pass.
The chunked pass stays as the reference (`use_kernel_lse=False`) and for kernels without a
log-sum-exp (eager soft-capping of Gemma 2, the math backend, position biases).

Usage (one forward pass shared with the block statistics of block_stats.py):

    with SinkStatistics(model) as sinks:
        for batch in batches:
            sinks.set_spike_positions(spike_mask_BxT)     # optional
            model(input_ids=batch)
    arrays = sinks.result()
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from spikesink import metrics
from spikesink.instrumentation.attention import (
    DEFAULT_CHUNK_ELEMENTS,
    AttentionObserver,
    KernelLSE,
    key_probabilities,
    probability_chunks,
    score_options,
)
from spikesink.instrumentation.taps import run_decoder


@dataclass
class AttentionMasses:
    """Per (sample, head) means over queries; float32 tensors of shape (B, H)."""

    key0: torch.Tensor  # mean over queries that can see key 0 of p(q -> 0)
    spike: torch.Tensor | None  # mean over valid queries of sum_j in spikes p(q -> j); None if no spikes given
    n_queries: torch.Tensor  # (B,) valid queries (non-padding)
    # mean over valid queries of p(q -> learned sink) = 1 - sum_j p(q -> j); None without learned sinks
    learned_sink: torch.Tensor | None = None


def attention_masses(
    query: torch.Tensor,
    key: torch.Tensor,
    scaling: float,
    attention_mask: torch.Tensor | None = None,
    spike_keys: torch.Tensor | None = None,
    *,
    max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    sliding_window: int | None = None,
    softcap: float | None = None,
    sinks: torch.Tensor | None = None,
    kernel_lse: KernelLSE | None = None,
) -> AttentionMasses:
    """Attention mass on key 0 (and on spike keys) per (sample, head), without a T x T map.

    query (B, H, T, D) and key (B, H_kv, T, D) as given to an attention function; attention_mask
    as transformers passes it (None: causal). spike_keys: optional bool (B, T), the key positions
    whose total mass is reported as `spike`. kernel_lse: the fused kernel's log-sum-exp of these
    scores; then only key 0 and the spike keys are scored (else the chunked reference pass).

    Why these denominators: key 0 mass follows Gu et al. (column sum over the number of
    queries that see the key), so with a sliding window the queries that cannot see key 0 do
    not dilute it; spike mass is averaged over all valid queries.

    sinks: GPT-OSS's learned logit per head, which joins each query's softmax and is dropped: the
    key probabilities then sum to 1 - p(sink), and that learned-sink share is reported as well
    (mean over valid queries).
    """
    batch, n_heads, q_len, _ = query.shape
    if q_len < 2:
        raise ValueError(
            f"sink statistics need sequences of at least 2 tokens (got {q_len}): with one token "
            "every query trivially puts all its attention on key 0"
        )
    if spike_keys is not None and spike_keys.shape != (batch, q_len):
        raise ValueError(f"spike positions must be (B, T) = {(batch, q_len)}, got {tuple(spike_keys.shape)}")
    device = query.device
    if kernel_lse is not None and sinks is not None:
        raise ValueError("a fused kernel's log-sum-exp does not include learned sink logits")
    if kernel_lse is None:
        geometry, chunks = probability_chunks(
            query,
            key,
            scaling,
            attention_mask,
            softcap=softcap,
            sliding_window=sliding_window,
            sinks=sinks,
            max_chunk_elements=max_chunk_elements,
        )
        scored = spike_keys  # every key, in order
    else:
        if softcap is not None:
            raise ValueError("a fused kernel's log-sum-exp does not include soft-capping")
        # key 0 first, then every key that is a spike token in some sample
        positions = torch.zeros(1, dtype=torch.long, device=device)
        if spike_keys is not None:
            positions = torch.cat([positions, spike_keys.to(device).any(0)[1:].nonzero()[:, 0] + 1])
        geometry, chunks = key_probabilities(
            query,
            key,
            kernel_lse,
            positions,
            attention_mask,
            sliding_window=sliding_window,
            max_chunk_elements=max_chunk_elements,
        )
        scored = None if spike_keys is None else spike_keys.to(device)[:, positions]
    n_kv = key.shape[1]
    spike_weights = None
    if scored is not None:
        spike_weights = scored.to(device=device, dtype=torch.float32)[:, None, None, :, None]  # (B, 1, 1, keys, 1)
    key0_sum = torch.zeros(batch, n_kv, n_heads // n_kv, dtype=torch.float32, device=device)
    spike_sum = torch.zeros_like(key0_sum) if spike_weights is not None else None
    sink_sum = torch.zeros_like(key0_sum) if sinks is not None else None
    sees0 = geometry.sees0.to(torch.float32)
    valid = geometry.valid.to(torch.float32)
    for start, stop, probs in chunks:
        key0_sum += (probs[..., 0] * sees0[:, None, None, start:stop]).sum(-1)
        if spike_sum is not None:
            mass = torch.matmul(probs, spike_weights[..., : probs.shape[-1], :]).squeeze(-1)
            spike_sum += (mass * valid[:, None, None, start:stop]).sum(-1)
        if sink_sum is not None:
            sink_sum += ((1.0 - probs.sum(-1)) * valid[:, None, None, start:stop]).sum(-1)
    n_sees0 = geometry.sees0.sum(-1).to(torch.float32).expand(batch)  # (B,)
    n_valid = geometry.valid.sum(-1).to(torch.float32).expand(batch)

    def per_query(total, count):
        return None if total is None else (total.reshape(batch, n_heads) / count[:, None]).contiguous()

    return AttentionMasses(
        key0=per_query(key0_sum, n_sees0),
        spike=per_query(spike_sum, n_valid),
        n_queries=n_valid,
        learned_sink=per_query(sink_sum, n_valid),
    )


def summarise_sinks(key0_mass: np.ndarray, eps: float | None = None) -> dict[str, np.ndarray]:
    """Means and sink ratios of a (samples, layers, heads) key-0 mass array.

    The overall ratio goes through metrics.sink_ratio so that every number called 'sink ratio'
    in the project is the same definition (Gu et al.; eps None: the config's sinks.eps default).
    """
    eps = _eps(eps)
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


def summarise_learned_sinks(learned_sink: np.ndarray) -> dict[str, np.ndarray]:
    """Means of a (samples, layers, heads) learned-sink share (NaN in layers without a learned sink)."""
    share = np.asarray(learned_sink, dtype=np.float32)
    with np.errstate(invalid="ignore"), _quiet_nanmean():
        return {
            "learned_sink_share_layer_head": np.nanmean(share, axis=0).astype(np.float32),  # (L, H)
            "learned_sink_share_layer": np.nanmean(share, axis=(0, 2)).astype(np.float32),  # (L,)
        }


def _eps(eps: float | None) -> float:
    from spikesink.config import default

    return float(default("sinks", "eps") if eps is None else eps)


# --------------------------------------------------------------------------------------------
# Sink statistics
# --------------------------------------------------------------------------------------------


class SinkStatistics(AttentionObserver):
    """Per sample, layer and head: mean attention on key 0 and on spike-token positions.

    spike_positions: bool (B, T) for the next forward(s), or None; change it per batch with
    `set_spike_positions`. It may also be a callable `f(layer) -> (B, T) bool or None`, asked
    at each layer's attention during the forward: spike tokens found by hooks earlier in the
    same forward (block_stats.py's running spike mask) can then be used without a second pass.
    The spike mass counts exactly the flagged keys (flag position 0 too if key 0 should be
    included); a (sample, layer) without spike positions gets NaN.
    """

    def __init__(
        self,
        model: nn.Module,
        spike_positions: torch.Tensor | np.ndarray | None = None,
        *,
        eps: float | None = None,
        max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
        use_kernel_lse: bool = True,
    ):
        super().__init__(model)
        self.eps = _eps(eps)
        self.max_chunk_elements = int(max_chunk_elements)
        self.wants_lse = bool(use_kernel_lse)
        self.kernels: Counter[str] = Counter()  # layer calls per way of computing: "cpu flash", ..., "chunked"
        self._key0: list[torch.Tensor] = []  # one (B, L, H) per forward
        self._spike: list[torch.Tensor] = []
        self._learned_sink: list[torch.Tensor] = []
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

    def _compute(self, layer, module, query, key, attention_mask, kwargs, lse: KernelLSE | None = None):
        self.kernels["chunked" if lse is None else lse.backend] += 1
        spikes = self._spike_positions
        if callable(spikes):
            spikes = spikes(layer)
            spikes = None if spikes is None else torch.as_tensor(spikes).to(torch.bool)
        return attention_masses(
            query,
            key,
            self.scaling(module, kwargs),
            attention_mask,
            spikes,
            max_chunk_elements=self.max_chunk_elements,
            kernel_lse=lse,
            **score_options(kwargs),
        )

    def _commit(self, per_layer: dict[int, AttentionMasses]) -> None:
        ordered = [per_layer[index] for index in self.layers]
        key0 = torch.stack([m.key0 for m in ordered], dim=1)  # (B, L, H)
        nan = torch.full_like(ordered[0].key0, float("nan"))
        spike = torch.stack([nan if m.spike is None else m.spike for m in ordered], dim=1)
        learned = torch.stack([nan if m.learned_sink is None else m.learned_sink for m in ordered], dim=1)
        self._key0.append(key0.cpu())
        self._spike.append(spike.cpu())
        self._learned_sink.append(learned.cpu())
        self._n_queries.append(ordered[0].n_queries.cpu())

    def result(self) -> dict[str, np.ndarray]:
        """float32 arrays: per-sample (N, L, H) key0_mass and spike_mass, and their summaries."""
        if not self._key0:
            raise RuntimeError("no forward pass was observed; run the model inside the `with` block")
        key0 = torch.cat(self._key0).numpy().astype(np.float32)
        spike = torch.cat(self._spike).numpy().astype(np.float32)
        learned = torch.cat(self._learned_sink).numpy().astype(np.float32)
        out = {
            "key0_mass": key0,
            "spike_mass": spike,
            "n_queries": torch.cat(self._n_queries).numpy().astype(np.float32),
            "learned_sink_share": learned,  # (N, L, H), NaN in layers without a learned sink logit
        }
        out.update(summarise_sinks(key0, self.eps))
        out.update(summarise_learned_sinks(learned))
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
            run_decoder(model, input_ids=torch.as_tensor(input_ids), use_cache=False)
    return sinks.result()
