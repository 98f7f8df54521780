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

A hybrid decoder's linear-attention layers (Qwen3-Next's Gated DeltaNet) have no softmax: they are
not observed, and every statistic of theirs is NaN (never 0); the summaries are means over the
softmax layers. Where the attention output is multiplied by an output gate sigmoid(g) before the
output projection (Qwen3-Next), a forward hook on the query projection (which also yields g)
measures the mean gate at position 0 and at the other positions, per sample, layer and head.

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
    allowed_from_mask,
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
    # an output gate (Qwen3-Next): mean sigmoid(gate) over head_dim at position 0, and over the other
    # valid positions; None without an output gate
    gate0: torch.Tensor | None = None
    gate_rest: torch.Tensor | None = None


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
    # NaN rows: layers without softmax attention (a hybrid's linear attention); they stay NaN
    sinks = np.where(np.isnan(mass), np.nan, mass > eps)
    with np.errstate(invalid="ignore"), _quiet_nanmean():
        return {
            "key0_mass_layer_head": mass.mean(axis=0).astype(np.float32),  # (L, H)
            "key0_mass_layer": mass.mean(axis=(0, 2)).astype(np.float32),  # (L,)
            "sink_ratio_layer_head": (100.0 * sinks.mean(axis=0)).astype(np.float32),  # (L, H), percent of samples
            "sink_ratio_layer": (100.0 * sinks.mean(axis=(0, 2))).astype(np.float32),  # (L,), percent
            "sink_ratio": np.float32(metrics.sink_ratio(mass, eps)),  # scalar, percent
            "key0_mass_mean": np.float32(np.nanmean(mass)),
        }


def summarise_learned_sinks(learned_sink: np.ndarray) -> dict[str, np.ndarray]:
    """Means of a (samples, layers, heads) learned-sink share (NaN in layers without a learned sink)."""
    share = np.asarray(learned_sink, dtype=np.float32)
    with np.errstate(invalid="ignore"), _quiet_nanmean():
        return {
            "learned_sink_share_layer_head": np.nanmean(share, axis=0).astype(np.float32),  # (L, H)
            "learned_sink_share_layer": np.nanmean(share, axis=(0, 2)).astype(np.float32),  # (L,)
        }


def summarise_output_gate(gate0: np.ndarray, gate_rest: np.ndarray) -> dict[str, np.ndarray]:
    """Means of (samples, layers, heads) output-gate values at position 0 and at the other positions
    (NaN in layers without an output gate)."""
    out = {}
    with np.errstate(invalid="ignore"), _quiet_nanmean():
        for name, values in (("output_gate_pos0", gate0), ("output_gate_rest", gate_rest)):
            values = np.asarray(values, dtype=np.float32)
            out[f"{name}_layer_head"] = np.nanmean(values, axis=0).astype(np.float32)  # (L, H)
            out[f"{name}_layer"] = np.nanmean(values, axis=(0, 2)).astype(np.float32)  # (L,)
    return out


def _valid_queries(attention_mask, q_len: int, device) -> torch.Tensor:
    """(B or 1, T) float: the non-padding queries (a padding query does not see itself)."""
    allowed = allowed_from_mask(attention_mask, q_len, q_len)
    if allowed is None:
        return torch.ones(1, q_len, device=device)
    return torch.diagonal(allowed, dim1=-2, dim2=-1).to(device=device, dtype=torch.float32)


def output_gate_means(gate: torch.Tensor, attention_mask, q_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """((B, H) mean gate at position 0, (B, H) mean over the other valid positions) of a (B, T, H) gate."""
    gate = gate.to(torch.float32)
    valid = _valid_queries(attention_mask, q_len, gate.device)[..., None]  # (B or 1, T, 1)
    rest = (gate[:, 1:] * valid[:, 1:]).sum(1) / valid[:, 1:].sum(1).clamp_min(1.0)
    return gate[:, 0].contiguous(), rest


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
        self._gate0: list[torch.Tensor] = []
        self._gate_rest: list[torch.Tensor] = []
        self._gates: dict[int, torch.Tensor] = {}  # layer -> (B, T, H) sigmoid(gate) of this forward
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

    def __enter__(self):
        super().__enter__()
        parts = self.layout.adapter.attention_parts
        if parts.q_gate:  # the output gate comes out of the query projection with the query
            for index in self.layers:
                q_proj = getattr(self.layout.layers[index].attention, parts.q)
                self._stack.callback(q_proj.register_forward_hook(self._gate_hook(index)).remove)
        return self

    def _gate_hook(self, layer: int):
        head_dim = self.layout.head_dim

        def hook(_module, _args, output):  # (B, T, H * 2 D): per head its query, then its gate
            batch, q_len = output.shape[:2]
            gate = output.detach().view(batch, q_len, -1, 2, head_dim)[..., 1, :]
            self._gates[layer] = torch.sigmoid(gate.float()).mean(-1)  # (B, T, H)

        return hook

    def _compute(self, layer, module, query, key, attention_mask, kwargs, lse: KernelLSE | None = None):
        self.kernels["chunked" if lse is None else lse.backend] += 1
        spikes = self._spike_positions
        if callable(spikes):
            spikes = spikes(layer)
            spikes = None if spikes is None else torch.as_tensor(spikes).to(torch.bool)
        gate = self._gates.pop(layer, None)
        masses = attention_masses(
            query,
            key,
            self.scaling(module, kwargs),
            attention_mask,
            spikes,
            max_chunk_elements=self.max_chunk_elements,
            kernel_lse=lse,
            **score_options(kwargs),
        )
        if gate is not None:
            masses.gate0, masses.gate_rest = output_gate_means(gate, attention_mask, query.shape[2])
        return masses

    def _commit(self, per_layer: dict[int, AttentionMasses]) -> None:
        first = per_layer[self.layers[0]]
        nan = torch.full_like(first.key0, float("nan"))

        def stacked(name):  # (B, L, H) over every layer: NaN where the layer has no such statistic
            values = [getattr(per_layer.get(index), name, None) for index in range(self.layout.n_layers)]
            return torch.stack([nan if v is None else v for v in values], dim=1).cpu()

        self._key0.append(stacked("key0"))
        self._spike.append(stacked("spike"))
        self._learned_sink.append(stacked("learned_sink"))
        self._gate0.append(stacked("gate0"))
        self._gate_rest.append(stacked("gate_rest"))
        self._n_queries.append(first.n_queries.cpu())
        self._gates = {}

    def result(self) -> dict[str, np.ndarray]:
        """float32 arrays: per-sample (N, L, H) key0_mass and spike_mass, and their summaries."""
        if not self._key0:
            raise RuntimeError("no forward pass was observed; run the model inside the `with` block")
        key0 = torch.cat(self._key0).numpy().astype(np.float32)
        spike = torch.cat(self._spike).numpy().astype(np.float32)
        learned = torch.cat(self._learned_sink).numpy().astype(np.float32)
        gate0 = torch.cat(self._gate0).numpy().astype(np.float32)
        gate_rest = torch.cat(self._gate_rest).numpy().astype(np.float32)
        out = {
            "key0_mass": key0,  # (N, L, H), NaN in layers without softmax attention
            "spike_mass": spike,
            "n_queries": torch.cat(self._n_queries).numpy().astype(np.float32),
            "learned_sink_share": learned,  # (N, L, H), NaN in layers without a learned sink logit
            "output_gate_pos0": gate0,  # (N, L, H), NaN in layers without an output gate
            "output_gate_rest": gate_rest,
        }
        out.update(summarise_sinks(key0, self.eps))
        out.update(summarise_learned_sinks(learned))
        out.update(summarise_output_gate(gate0, gate_rest))
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
