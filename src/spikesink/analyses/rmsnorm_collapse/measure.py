"""RMSNorm turns spike tokens into (nearly) one constant, sparse vector (paper Sec. 3, Fig 5).

Claims checked here:
* Bound (Eq. 23). For RMSNorm without weight, n_i = x_i / rms(x) with rms(x) = sqrt(mean(x^2) + eps),
  so n_i^2 <= sum_j x_j^2 / rms(x)^2 <= d and |n_i| <= sqrt(d), with equality only for a one-hot
  x and eps = 0. With weight g the output is g_i n_i, so |h_i| <= max|g| sqrt(d). A spike can
  therefore not grow after normalisation; it can only take all the energy.
* Sparsity: the share of the normed vector's energy on the spike channels.
* Collapse: spike tokens (first tokens of many prompts, plus non-initial tokens that spike, e.g.
  delimiters) have varied residual states before the step-up block and nearly identical ones
  after it: pairwise cosine similarity goes to ~1. RMSNorm *without* weight rescales each vector
  by a scalar, so it leaves cosines unchanged (reported as a check); *with* the next layer's norm
  weight the cosines are those the next attention block actually sees.
* Delimiters: which non-initial tokens become spike tokens (counted by decoded string), how
  much attention they pay to themselves in early layers (the attention observer's chunked
  probabilities; only the diagonal p(t -> t) is kept), and whether their embeddings align with
  the first norm's gain (gain.py: the norm's output magnitude a(x) = ||g * x / rms(x)|| / ||g||,
  delimiter ids vs ordinary ids).

LayerNorm families (GPT-2, NeoX) centre before they scale; the same bound holds for them
(sum_i n_i^2 = d var / (var + eps) <= d), with their bias added. Where no norm reads the state
(OLMo 2 normalises block outputs, not the residual), the normed readings are n/a.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from spikesink.analyses.lifecycle.result import Lifecycle
from spikesink.analyses.rmsnorm_collapse.gain import delimiter_gain_alignment
from spikesink.analyses.rmsnorm_collapse.result import Collapse
from spikesink.analyses.unit import Job
from spikesink.instrumentation.attention import AttentionObserver, probability_chunks, score_options
from spikesink.instrumentation.blocks import block_layer
from spikesink.instrumentation.layout import model_layout
from spikesink.instrumentation.spikes import SpikeRule, spike_tokens
from spikesink.instrumentation.taps import capture, run_decoder


def not_applicable(job: Job) -> str | None:
    return None if job["lifecycle"].step_up else "no step-up block detected"


POST_NORM_STREAM = (
    "true post-norm (N(x + block(x))): the residual stream is itself a LayerNorm's output, which the next "
    "block reads without a norm, so there is no norm reading a massive state to bound"
)


def measure(job: Job) -> Collapse:
    """Fig 5 on the first extraction prompts (module docstring)."""
    if model_layout(job.model.model).norm_placement == "post_residual":
        return Collapse.na(POST_NORM_STREAM)
    s, prompts = job.settings, job["prompts.extraction"]
    n, length = min(s.n_prompts, len(prompts.ids)), min(s.seq_len, min(len(r) for r in prompts.ids))
    out = run_collapse(
        job.model.model,
        job.model.tokenizer,
        prompts.matrix(n, length),
        job["lifecycle"],
        rule=job.rule,
        bos_added=prompts.bos_added,
        batch_size=s.batch_size,
        seed=s.seed,
    )
    return Collapse(**out)


# ------------------------------------------------------------------------------------------
# Pure functions
# ------------------------------------------------------------------------------------------


def rms_normalize(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    eps: float = 0.0,
    bias: torch.Tensor | None = None,
    center: bool = False,
) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) (times weight, plus bias), rows = vectors, float32.

    center=True is LayerNorm: x - mean(x) first, so the denominator is the standard deviation.
    """
    x = x.float()
    if center:
        x = x - x.mean(dim=-1, keepdim=True)
    normed = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
    normed = normed if weight is None else normed * weight.float()
    return normed if bias is None else normed + bias.float()


def rmsnorm_bound(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    eps: float = 0.0,
    bias: torch.Tensor | None = None,
    center: bool = False,
) -> tuple[torch.Tensor, float]:
    """(max_i |N(x)_i| per row, the bound sqrt(d) max|g| + max|b|) (max|g| = 1 without weight)."""
    d = x.shape[-1]
    peak = rms_normalize(x, weight, eps, bias, center).abs().amax(dim=-1)
    scale = 1.0 if weight is None else float(weight.float().abs().max())
    offset = 0.0 if bias is None else float(bias.float().abs().max())
    return peak, float(np.sqrt(d)) * scale + offset


def pairwise_cosine(x: torch.Tensor) -> torch.Tensor:
    """(n, n) cosine similarities between the rows of x, float32."""
    x = x.float()
    unit = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    return unit @ unit.T


def offdiag_stats(matrix: torch.Tensor) -> dict[str, float]:
    """Mean / median / min / 5th percentile of the off-diagonal entries of a square matrix."""
    n = matrix.shape[0]
    if n < 2:
        return {k: float("nan") for k in ("mean", "median", "min", "p05")}
    values = matrix[~torch.eye(n, dtype=torch.bool, device=matrix.device)].double()
    return {
        "mean": float(values.mean()),
        "median": float(values.median()),
        "min": float(values.min()),
        "p05": float(torch.quantile(values, 0.05)),
    }


def energy_fraction(
    x: torch.Tensor, channels: Sequence[int], weight: torch.Tensor | None = None, center: bool = False
) -> torch.Tensor:
    """Share of ||N(x)||^2 carried by `channels`, per row (with the weight if given; LayerNorm: center)."""
    normed = rms_normalize(x, weight, center=center)
    energy = normed.pow(2)
    return energy[:, list(channels)].sum(-1) / energy.sum(-1).clamp_min(1e-30)


# ------------------------------------------------------------------------------------------
# Collecting spike-token states
# ------------------------------------------------------------------------------------------


@dataclass
class SpikeStates:
    """Residual states before / after the step-up block(s) for sampled spike and ordinary tokens."""

    before: torch.Tensor  # (n, d) float32: residual entering the first step-up FFN block
    after: torch.Tensor  # (n, d) float32: post-residual of the last step-up block
    is_spike: np.ndarray  # (n,) bool
    sample: np.ndarray
    position: np.ndarray
    token_id: np.ndarray
    n_spike_total: int = 0
    n_tokens_total: int = 0
    nonfirst_spike_tokens: Counter = field(default_factory=Counter)  # token id -> count


def collect_spike_states(
    model,
    batches: Iterable[Mapping[str, torch.Tensor]],
    step_up_blocks: Sequence[int],
    rule: SpikeRule,
    detect_block: int | None = None,
    max_spike: int = 256,
    max_other: int = 256,
    seed: int = 0,
) -> SpikeStates:
    """Run the batches up to the detect block and keep a bounded sample of token states.

    Spike tokens are those whose post-residual state at `detect_block` (default: the last
    step-up block) is massive against the median of the same sequence's state (all valid tokens
    and channels, Sun et al.'s definition). Keeps at most max_spike spike tokens (first tokens
    before other spike tokens, so the delimiter set is not crowded out when it is small) and
    max_other ordinary tokens, sampled uniformly with a seeded generator.
    """
    step_up_blocks = sorted(int(b) for b in step_up_blocks)
    first_up, after_block = step_up_blocks[0], step_up_blocks[-1]
    detect_block = int(detect_block or after_block)
    if first_up < 2:
        raise ValueError("the step-up block must have a block before it")
    device = next(model.parameters()).device
    requests = {(first_up, "input"), (after_block, "post_residual"), (detect_block, "post_residual")}
    generator = np.random.default_rng(seed)
    pool = _TokenPool()
    counts: Counter = Counter()
    n_spike_total = n_tokens_total = offset = 0
    for batch in batches:
        ids = batch["input_ids"].to(device)
        mask = batch.get("attention_mask")
        mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.to(device).bool()
        got = capture(model, requests, transform=lambda t: t.float(), input_ids=ids, attention_mask=mask.long())
        before, after = got[(first_up, "input")], got[(after_block, "post_residual")]
        spike = spike_tokens(got[(detect_block, "post_residual")], rule, mask).mask
        n_spike_total += int(spike.sum())
        n_tokens_total += int(mask.sum())
        for r, c in zip(*(index.tolist() for index in torch.nonzero(mask, as_tuple=True))):
            if spike[r, c] and c > 0:
                counts[int(ids[r, c])] += 1
            pool.add(before[r, c].cpu(), after[r, c].cpu(), bool(spike[r, c]), offset + r, c, int(ids[r, c]))
        offset += ids.shape[0]
        if len(pool) > 4 * (max_spike + max_other):  # bound memory: subsample as we go
            pool.keep(pool.subsample(max_spike, max_other, generator))
    keep = pool.subsample(max_spike, max_other, generator)
    rows = pool.rows
    return SpikeStates(
        before=torch.stack([rows["before"][i] for i in keep]) if keep.size else torch.zeros(0),
        after=torch.stack([rows["after"][i] for i in keep]) if keep.size else torch.zeros(0),
        is_spike=np.array(rows["spike"], dtype=bool)[keep],
        sample=np.array(rows["sample"])[keep],
        position=np.array(rows["position"])[keep],
        token_id=np.array(rows["token"])[keep],
        n_spike_total=n_spike_total,
        n_tokens_total=n_tokens_total,
        nonfirst_spike_tokens=counts,
    )


class _TokenPool:
    """Parallel per-token records (states before / after the step-up, flags, where from)."""

    FIELDS = ("before", "after", "spike", "sample", "position", "token")

    def __init__(self) -> None:
        self.rows: dict[str, list] = {name: [] for name in self.FIELDS}

    def __len__(self) -> int:
        return len(self.rows["spike"])

    def add(self, *values) -> None:
        for name, value in zip(self.FIELDS, values):
            self.rows[name].append(value)

    def subsample(self, max_spike: int, max_other: int, rng) -> np.ndarray:
        return _subsample(np.array(self.rows["spike"]), np.array(self.rows["position"]), max_spike, max_other, rng)

    def keep(self, index: np.ndarray) -> None:
        self.rows = {name: [values[i] for i in index] for name, values in self.rows.items()}


def _subsample(spike: np.ndarray, position: np.ndarray, max_spike: int, max_other: int, rng) -> np.ndarray:
    """Indices kept: up to max_spike spike tokens (first tokens and non-initial ones share the
    budget half-half when both exist) and up to max_other ordinary tokens; sorted."""
    spike_idx = np.flatnonzero(spike)
    first = spike_idx[position[spike_idx] == 0]
    later = spike_idx[position[spike_idx] > 0]
    if first.size and later.size:
        n_later = min(later.size, max_spike // 2)
        n_first = min(first.size, max_spike - n_later)
        n_later = min(later.size, max_spike - n_first)
    else:
        n_first, n_later = min(first.size, max_spike), min(later.size, max_spike)
    other = np.flatnonzero(~spike)
    chosen = [
        rng.choice(first, n_first, replace=False),
        rng.choice(later, n_later, replace=False),
        rng.choice(other, min(other.size, max_other), replace=False),
    ]
    return np.sort(np.concatenate(chosen).astype(np.int64))


# ------------------------------------------------------------------------------------------
# Summaries
# ------------------------------------------------------------------------------------------


@dataclass
class NormReading:
    """The norm that reads a state, as the formula the analyses apply (float32, on the CPU)."""

    weight: torch.Tensor | None  # effective gain (Gemma: 1 + weight)
    bias: torch.Tensor | None
    eps: float
    center: bool  # LayerNorm
    label: str


def next_norm(model, block: int) -> NormReading | None:
    """The norm that reads the post-residual of `block` (None when no norm does, e.g. OLMo 2).

    After an FFN block that is the next layer's attention input norm (or the final norm after
    the last layer); after an attention block it is the same layer's FFN input norm.
    """
    layout = model_layout(model)
    norm = layout.norm_reading(block)
    if norm is None:
        return None
    gain, bias = layout.norm_gain(norm)
    eps = next((float(getattr(norm, name)) for name in ("variance_epsilon", "eps") if hasattr(norm, name)), 0.0)
    return NormReading(
        None if gain is None else gain.cpu(),
        None if bias is None else bias.cpu(),
        eps,
        layout.adapter.norm_type == "layernorm",
        type(norm).__name__,
    )


def collapse_summary(states: SpikeStates, spike_channels: Sequence[int], norm: NormReading | None) -> dict:
    """Fig 5 numbers: cosines among spike tokens before/after, energy shares, the norm bound.

    `norm` is the norm that reads the post-step-up state (next_norm); without one (OLMo 2) only
    the weightless normalisation is reported and `no_norm_reads_state` is set.
    """
    center = bool(norm and norm.center)
    eps = norm.eps if norm else 0.0
    spike = torch.as_tensor(states.is_spike)
    before, after = states.before[spike], states.after[spike]
    other_after = states.after[~spike]
    first = torch.as_tensor(states.position == 0) & spike
    summary = {
        "n_spike_sampled": int(spike.sum()),
        "n_first_sampled": int(first.sum()),
        "n_other_sampled": int((~spike).sum()),
        "n_spike_total": states.n_spike_total,
        "n_tokens_total": states.n_tokens_total,
        "norm": norm.label if norm else None,
        "no_norm_reads_state": norm is None,
        "cos_before": offdiag_stats(pairwise_cosine(before)),
        "cos_after": offdiag_stats(pairwise_cosine(after)),
        "cos_after_normed_no_weight": offdiag_stats(pairwise_cosine(rms_normalize(after, None, eps, center=center))),
        "cos_other_after": offdiag_stats(pairwise_cosine(other_after)),
    }
    if norm:
        summary["cos_after_normed_weight"] = offdiag_stats(
            pairwise_cosine(rms_normalize(after, norm.weight, eps, norm.bias, center))
        )
    if len(spike_channels):
        frac = energy_fraction(after, spike_channels, center=center)
        summary["energy_share_spike"] = float(frac.median()) if frac.numel() else float("nan")
        if norm:
            frac_w = energy_fraction(after, spike_channels, norm.weight, center)
            summary["energy_share_spike_weighted"] = float(frac_w.median()) if frac_w.numel() else float("nan")
        other = energy_fraction(other_after, spike_channels, center=center) if other_after.numel() else torch.zeros(0)
        summary["energy_share_other"] = float(other.median()) if other.numel() else float("nan")
    everything = states.after
    peak, bound = rmsnorm_bound(everything, None, eps, center=center)
    bound_info = {
        "sqrt_d": bound,
        "max_abs_no_weight": float(peak.max()) if peak.numel() else float("nan"),
        "spike_max_abs_no_weight": float(peak[spike].max()) if spike.any() else float("nan"),
    }
    holds = bool((peak <= bound * (1 + 1e-5)).all())
    if norm:
        peak_w, bound_w = rmsnorm_bound(everything, norm.weight, eps, norm.bias, center)
        bound_info.update(bound_weight=bound_w, max_abs_weight=float(peak_w.max()) if peak_w.numel() else float("nan"))
        holds &= bool((peak_w <= bound_w * (1 + 1e-5)).all())
    summary["rmsnorm_bound"] = bound_info | {"holds": holds}
    return summary


def cosine_matrices(states: SpikeStates, norm: NormReading | None, max_tokens: int = 64) -> dict[str, np.ndarray]:
    """The small matrices Fig 5 draws: spike tokens before, after, after the next norm (with its weight)."""
    spike = torch.as_tensor(states.is_spike)
    before, after = states.before[spike][:max_tokens], states.after[spike][:max_tokens]
    out = {"before": pairwise_cosine(before).numpy(), "after": pairwise_cosine(after).numpy()}
    if norm:
        out["after_normed"] = pairwise_cosine(
            rms_normalize(after, norm.weight, norm.eps, norm.bias, norm.center)
        ).numpy()
    return out


def nonfirst_spike_counts(states: SpikeStates, tokenizer=None, top: int = 30) -> pd.DataFrame:
    """Non-initial spike tokens by count, with decoded strings (the delimiter list)."""
    rows = states.nonfirst_spike_tokens.most_common(top)
    text = tokenizer.batch_decode([[t] for t, _ in rows]) if tokenizer is not None and rows else [""] * len(rows)
    return pd.DataFrame({"token_id": [t for t, _ in rows], "text": text, "count": [c for _, c in rows]})


# ------------------------------------------------------------------------------------------
# Self-attention share in early layers (the attention observer, diagonals only)
# ------------------------------------------------------------------------------------------


class SelfAttentionShare(AttentionObserver):
    """p(t -> t) per (sample, layer, head, position), from the observer's chunked probabilities."""

    def __init__(self, model, layers: Sequence[int]):
        super().__init__(model, layers=layers, stop_after_last=True)
        self.diagonals: list[torch.Tensor] = []

    def _compute(self, layer, module, query, key, attention_mask, kwargs):
        _, chunks = probability_chunks(
            query, key, self.scaling(module, kwargs), attention_mask, **score_options(kwargs)
        )
        batch, n_heads, q_len, _ = query.shape
        diag = torch.zeros(batch, n_heads, q_len)
        for start, stop, probs in chunks:
            rows = torch.arange(stop - start)
            diag[:, :, start:stop] = probs[..., rows, start + rows].reshape(batch, n_heads, -1).cpu()
        return diag

    def _commit(self, per_layer) -> None:
        self.diagonals.append(torch.stack([per_layer[i] for i in self.layers], dim=1))


def self_attention_share(
    model, input_ids: torch.Tensor, layers: Sequence[int], attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """p(t -> t) per (sample, layer, head, position) for `layers` (0-based): (B, n_layers, H, T).

    The forward stops after the deepest requested layer; no T x T map is formed.
    """
    device = next(model.parameters()).device
    inputs = {"input_ids": input_ids.to(device), "use_cache": False}
    if attention_mask is not None:
        inputs["attention_mask"] = attention_mask.to(device)
    with SelfAttentionShare(model, sorted(int(x) for x in layers)) as share:
        run_decoder(model, **inputs)
    return share.diagonals[0]


def delimiter_self_attention(
    model, batch: Mapping[str, torch.Tensor], spike_mask: torch.Tensor, layers: Sequence[int]
) -> pd.DataFrame:
    """Mean (over heads) self-attention share per layer for non-initial spike vs ordinary tokens."""
    mask = batch.get("attention_mask")
    share = self_attention_share(model, batch["input_ids"], layers, mask)  # (B, L, H, T)
    valid = torch.ones_like(batch["input_ids"], dtype=torch.bool) if mask is None else mask.bool()
    valid = valid.clone()
    valid[:, 0] = False  # position 0 always attends to itself with weight 1
    mean_heads = share.mean(dim=2)  # (B, L, T)
    max_heads = share.amax(dim=2)
    rows = []
    for j, layer in enumerate(sorted(layers)):
        for kind, selector in (("spike", spike_mask & valid), ("other", ~spike_mask & valid)):
            if selector.any():
                rows.append(
                    {
                        "layer": layer,
                        "kind": kind,
                        "n": int(selector.sum()),
                        "self_share_mean": float(mean_heads[:, j][selector].mean()),
                        "self_share_max_head_mean": float(max_heads[:, j][selector].mean()),
                    }
                )
    return pd.DataFrame(rows)


def spike_mask_at(model, batch: Mapping[str, torch.Tensor], block: int, rule: SpikeRule) -> torch.Tensor:
    """(B, T) spike tokens of one block's post-residual (median per sequence over valid tokens)."""
    device = next(model.parameters()).device
    ids = batch["input_ids"].to(device)
    mask = batch.get("attention_mask")
    mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.to(device).bool()
    got = capture(model, [(block, "post_residual")], input_ids=ids, attention_mask=mask.long())
    return spike_tokens(got[(block, "post_residual")], rule, mask).mask.cpu()


# ------------------------------------------------------------------------------------------
# The whole analysis
# ------------------------------------------------------------------------------------------

_DELIMITER_CHARS = set(".,;:!?\n\r\t -–—\"'()[]{}…")


def is_delimiter_text(text: str) -> bool:
    """Punctuation / whitespace only (periods, commas, newlines, quotes...)."""
    return bool(text) and all(ch in _DELIMITER_CHARS or ch.isspace() for ch in text)


def run_collapse(
    model,
    tokenizer,
    input_ids: np.ndarray,
    lifecycle: Lifecycle,
    rule: SpikeRule,
    bos_added: bool = False,
    batch_size: int = 8,
    max_spike: int = 256,
    max_other: int = 256,
    matrix_tokens: int = 64,
    attention_prompts: int = 8,
    attention_layers: Sequence[int] | None = None,
    seed: int = 0,
) -> dict:
    """Fig 5 and the delimiter analysis for one model.

    input_ids: (n, T) corpus prompts. When the tokenizer added a BOS it is dropped, so that the
    first tokens of the prompts differ (with a BOS every first token is the same and the
    collapse would be trivial). Self-attention shares are taken on `attention_prompts` prompts
    in the layers up to the first step-up layer (the observer's diagonals only).
    """
    step_up = [int(b) for b in lifecycle.step_up]
    if not step_up:
        raise ValueError("the collapse is measured across the step-up block: none was detected")
    ids = np.asarray(input_ids)[:, 1:] if bos_added else np.asarray(input_ids)
    spike_channels = [int(c) for c in lifecycle.spike_channels]

    def batches():
        for start in range(0, len(ids), batch_size):
            yield {"input_ids": torch.as_tensor(ids[start : start + batch_size], dtype=torch.long)}

    states = collect_spike_states(
        model,
        batches(),
        step_up,
        rule,
        max_spike=max_spike,
        max_other=max_other,
        seed=seed,
    )
    norm = next_norm(model, step_up[-1])
    summary = collapse_summary(states, spike_channels, norm)
    summary.update(
        {
            "step_up": step_up,
            "spike_channels": spike_channels,
            "bos_dropped": bool(bos_added),
            "n_prompts": int(len(ids)),
            "seq_len": int(ids.shape[1]),
        }
    )
    delimiters = nonfirst_spike_counts(states, tokenizer, top=30)
    summary["n_nonfirst_spike"] = int(sum(states.nonfirst_spike_tokens.values()))
    summary["nonfirst_spike_counted"] = int(delimiters["count"].sum()) if len(delimiters) else 0  # the listed ones
    summary["nonfirst_spike_delimiter_share"] = (
        float(
            delimiters.loc[delimiters["text"].map(is_delimiter_text), "count"].sum() / max(delimiters["count"].sum(), 1)
        )
        if len(delimiters)
        else float("nan")
    )
    summary["gain_alignment"] = delimiter_gain_alignment(model, ids, states.nonfirst_spike_tokens)
    layers = list(attention_layers) if attention_layers is not None else list(range(block_layer(step_up[0]) + 1))
    layout = model_layout(model)
    linear = [layer for layer in layers if not layout.layers[layer].softmax]  # a hybrid's linear attention
    layers = [layer for layer in layers if layer not in linear]
    summary["self_attention_layers"] = layers
    if linear:
        summary["self_attention_skipped"] = f"layer(s) {linear}: {layout.no_softmax_reason(linear[0])}"
    sample = {"input_ids": torch.as_tensor(ids[:attention_prompts], dtype=torch.long)}
    mask = spike_mask_at(model, sample, step_up[-1], rule)
    self_attention = (
        delimiter_self_attention(model, sample, mask, layers)
        if layers
        else pd.DataFrame(columns=["layer", "kind", "n", "self_share_mean", "self_share_max_head_mean"])
    )
    others = states.after[~torch.as_tensor(states.is_spike)][:matrix_tokens]
    matrices = cosine_matrices(states, norm, matrix_tokens)
    matrices["other_after"] = pairwise_cosine(others).numpy()
    return {"summary": summary, "matrices": matrices, "delimiters": delimiters, "self_attention": self_attention}
