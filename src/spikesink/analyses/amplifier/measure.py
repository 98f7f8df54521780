"""The FFN as a quadratic amplifier (paper Fig 3, 4, 8) and position-0 attention as a fixed map.

With SiLU(x) ~ x (silu_regime.py), output channel k of a SwiGLU block is

    y_k = sum_i W_down[k, i] SiLU(g_i . h) (u_i . h) ~ h^T U_k h,
    U_k = sum_i W_down[k, i] g_i u_i^T = W_gate^T diag(W_down[k, :]) W_up        (d x d),

with g_i = W_gate[i, :], u_i = W_up[i, :] (HF: gate_proj.weight, up_proj.weight are (d_ffn, d),
down_proj.weight is (d, d_ffn)). Only the symmetric part S_k = (U_k + U_k^T) / 2 matters for
h^T U_k h.

Norms of all channels at once: ||U_k||_F^2 = sum_ij w_i w_j (g_i . g_j)(u_i . u_j) = w^T (G * V) w with
G = W_gate W_gate^T, V = W_up W_up^T (elementwise product), w = W_down[k, :]. One d_ffn x d_ffn
product serves every channel; it is formed in row chunks so memory stays O(chunk x d_ffn).

RMSNorm weight: h = gamma * n with n = x / rms(x) (unit-free, |n_i| <= sqrt(d)). With
`fold_norm=True` (default) gamma is folded into the input side, W_gate -> W_gate diag(gamma),
W_up -> W_up diag(gamma), so U_k acts on n, i.e. on the *direction of the residual stream*.
That makes s* (the top eigenvector of S_k) comparable with residual-stream vectors such as the
position-0 attention output. `fold_norm=False` gives U_k on h itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext

import numpy as np
import pandas as pd
import torch

from spikesink.analyses.amplifier.result import Amplifier
from spikesink.analyses.lifecycle.result import Lifecycle
from spikesink.analyses.unit import Job
from spikesink.instrumentation.attention import AttentionObserver
from spikesink.instrumentation.blocks import block_kind, block_layer
from spikesink.instrumentation.layout import NotApplicable, model_layout
from spikesink.instrumentation.taps import capture

FIRST_TOKENS = 4  # tokens per prompt the position-0 check runs (after any BOS)


def measure(job: Job) -> Amplifier:
    """U_k norms, S_k spectra and the position-0 map on the first tokens of the extraction prompts
    (a BOS dropped, so that the first tokens differ)."""
    prompts = job["prompts.extraction"]
    start = 1 if prompts.bos_added else 0
    n = min(job.settings.n_prompts, len(prompts.ids))
    first_tokens = torch.as_tensor(prompts.matrix(n, start + FIRST_TOKENS)[:, start:])
    out = run_amplifier(
        job.model.model, job["lifecycle"], first_tokens, n_control=job.settings.n_control, seed=job.settings.seed
    )
    return Amplifier(norms=out["norms"], spectra=out["spectra"], summary=out["summary"])


# ------------------------------------------------------------------------------------------
# Weights
# ------------------------------------------------------------------------------------------


def ffn_weights(
    model, block: int, fold_norm: bool = True, expert: str = "dense"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W_gate (d_ffn, d), W_up (d_ffn, d), W_down (d, d_ffn)) of one FFN block (or expert), float32.

    With fold_norm the effective gain of the FFN's input norm (Gemma: 1 + weight) multiplies the
    input columns of W_gate and W_up; a family without an FFN input norm (OLMo 2) has nothing to
    fold. Biases are refused rather than ignored; a non-gated FFN raises NotApplicable.
    """
    if block_kind(block) != "ffn":
        raise ValueError(f"block {block} is not an FFN (even) block")
    layout = model_layout(model)
    biased = layout.ffn_biases(block)
    if biased:
        raise NotApplicable(f"{', '.join(biased)} carry a bias: the quadratic form h^T U h would miss linear terms")
    weights = layout.gated_ffn_weights(block, expert)
    gate, up = weights.gate, weights.up
    norm = layout.layer_of(block).ffn_input_norm
    if fold_norm and norm is not None:
        gamma, _ = layout.norm_gain(norm)
        if gamma is not None:
            gate, up = gate * gamma, up * gamma
    return gate, up, weights.down


def uk_norms_from_weights(gate: torch.Tensor, up: torch.Tensor, down: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """||U_k||_F for every output channel k, via w_k^T (G * V) w_k in row chunks (float64 accumulation).

    Memory: chunk x d_ffn for each of G, V and their product (d_ffn = 11008, chunk = 2048:
    ~90 MB float32 each), never d_ffn^2 at once.
    """
    d_ffn = gate.shape[0]
    squared = torch.zeros(down.shape[0], dtype=torch.float64, device=down.device)
    for start in range(0, d_ffn, chunk):
        rows = slice(start, min(start + chunk, d_ffn))
        block = (gate[rows] @ gate.T) * (up[rows] @ up.T)  # (chunk, d_ffn) rows of G * V
        squared += ((down[:, rows] @ block) * down).sum(dim=1, dtype=torch.float64)
    return squared.clamp_min(0).sqrt().float()


def uk_matrix(gate: torch.Tensor, up: torch.Tensor, down: torch.Tensor, channel: int) -> torch.Tensor:
    """U_k = W_gate^T diag(W_down[k, :]) W_up (d x d), float32."""
    return (gate * down[channel][:, None]).T @ up


def uk_norms(
    model, blocks: Sequence[int] | None = None, fold_norm: bool = True, chunk: int = 2048, progress: bool = True
) -> pd.DataFrame:
    """Long table (block, expert, channel, uk_norm) for every output channel of every FFN block.

    Dense blocks have expert "dense"; an MoE block has one set of rows per expert (and the shared
    expert, where there is one). Per-block readings (claims, Fig 3) take the largest norm over
    a block's experts (`block_norms`).
    """
    from tqdm.auto import tqdm

    layout = model_layout(model)
    blocks = list(blocks) if blocks is not None else [lv.ffn_block for lv in layout.layers]
    frames = []
    for block in tqdm(blocks, desc="||U_k||", disable=not progress, unit="block"):
        for expert in layout.experts(block):
            gate, up, down = ffn_weights(model, block, fold_norm, expert)
            norms = uk_norms_from_weights(gate, up, down, chunk).cpu().numpy()
            frames.append(
                pd.DataFrame({"block": block, "expert": expert, "channel": np.arange(norms.size), "uk_norm": norms})
            )
    return pd.concat(frames, ignore_index=True)


def block_norms(norms: pd.DataFrame) -> pd.DataFrame:
    """(block, channel, uk_norm, expert): the largest ||U_k|| over each block's experts."""
    best = norms.loc[norms.groupby(["block", "channel"])["uk_norm"].idxmax()]
    return best[["block", "channel", "uk_norm", "expert"]].reset_index(drop=True)


def uk_outliers(norms: pd.DataFrame, top: int = 5) -> pd.DataFrame:
    """Per block: the `top` channels by ||U_k|| and their ratio to the block's median norm."""
    out = []
    for _, group in norms.groupby("block"):
        median = float(group["uk_norm"].median())
        best = group.nlargest(top, "uk_norm").copy()
        best["ratio_to_median"] = best["uk_norm"] / max(median, 1e-30)
        best["rank"] = np.arange(1, len(best) + 1)
        out.append(best)
    return pd.concat(out, ignore_index=True)


# ------------------------------------------------------------------------------------------
# Spectra of S_k and the shared direction s*
# ------------------------------------------------------------------------------------------


def symmetric_spectrum(u: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues of S = (U + U^T)/2 sorted by |lambda| descending, and the matching eigenvectors (columns)."""
    s = ((u + u.T) / 2).double()
    values, vectors = torch.linalg.eigh(s)
    order = torch.argsort(values.abs(), descending=True)
    return values[order].cpu().numpy(), vectors[:, order].cpu().numpy()


def channel_spectra(
    model, block: int, channels: Sequence[int], fold_norm: bool = True, expert: str = "dense"
) -> dict[int, dict]:
    """Per channel: eigenvalues of S_k (by |lambda|), top eigenvector, dominance ratios."""
    gate, up, down = ffn_weights(model, block, fold_norm, expert)
    out = {}
    for channel in channels:
        values, vectors = symmetric_spectrum(uk_matrix(gate, up, down, int(channel)))
        magnitude = np.abs(values)
        out[int(channel)] = {
            "eigenvalues": values,
            "top_vector": vectors[:, 0],
            "top_over_second": float(magnitude[0] / max(magnitude[1], 1e-300)),
            "top_share": float(magnitude[0] / max(magnitude.sum(), 1e-300)),
        }
    return out


def spectra_table(
    model,
    block: int,
    spike_channels: Sequence[int],
    n_control: int = 8,
    seed: int = 0,
    fold_norm: bool = True,
    expert: str = "dense",
) -> tuple[pd.DataFrame, dict[int, dict]]:
    """Fig 4: spectra of the spike channels and of `n_control` random non-spike channels.

    Returns a long table (channel, kind, rank, eigenvalue, abs_normalised = |lambda| / |lambda_1|)
    and the spectra dict.
    """
    d = model_layout(model).d_model
    rng = np.random.default_rng(seed)
    others = np.setdiff1d(np.arange(d), np.asarray(spike_channels))
    controls = sorted(rng.choice(others, size=min(n_control, others.size), replace=False).tolist())
    spectra = channel_spectra(model, block, list(spike_channels) + controls, fold_norm, expert)
    rows = []
    for channel, spec in spectra.items():
        values = spec["eigenvalues"]
        for rank, value in enumerate(values, start=1):
            rows.append(
                (
                    block,
                    channel,
                    "spike" if channel in set(spike_channels) else "control",
                    rank,
                    float(value),
                    float(abs(value) / max(abs(values[0]), 1e-300)),
                )
            )
    table = pd.DataFrame(rows, columns=["block", "channel", "kind", "rank", "eigenvalue", "abs_normalised"])
    return table, spectra


def shared_direction(spectra: Mapping[int, dict], channels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """|cos| between the top eigenvectors of the given channels, and s*-hat.

    s*-hat is the top eigenvector of the channel with the largest |lambda_1| (sign fixed so that
    its largest-magnitude coordinate is positive).
    """
    vectors = np.stack([spectra[int(c)]["top_vector"] for c in channels])
    cos = np.abs(vectors @ vectors.T)
    lead = max(channels, key=lambda c: abs(spectra[int(c)]["eigenvalues"][0]))
    s_star = spectra[int(lead)]["top_vector"].copy()
    s_star *= np.sign(s_star[np.argmax(np.abs(s_star))])
    return cos, s_star


# ------------------------------------------------------------------------------------------
# Position 0: attention is a fixed linear map
# ------------------------------------------------------------------------------------------


def attention_vo_matrix(model, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """W_VO = sum_h W_O[:, h] W_V[kv(h)] (d x d, float32) and the constant W_O b_V + b_O (or None).

    Query head h reads key/value head h // (n_heads / n_kv_heads), as in transformers' repeat_kv;
    fused q/k/v layouts are split by the family layout.
    """
    w = model_layout(model).attention_weights(layer)
    per_group = w.n_heads // w.n_kv_heads
    dh = w.head_dim
    vo = torch.zeros(w.o.shape[0], w.v.shape[1], dtype=torch.float32, device=w.v.device)
    bias = None
    for head in range(w.n_heads):
        group = head // per_group
        w_o = w.o[:, head * dh : (head + 1) * dh]
        vo += w_o @ w.v[group * dh : (group + 1) * dh]
        if w.v_bias is not None:
            term = w_o @ w.v_bias[group * dh : (group + 1) * dh]
            bias = term if bias is None else bias + term
    if w.o_bias is not None:
        bias = w.o_bias if bias is None else bias + w.o_bias
    return vo, bias


class _Position0SinkWeights(AttentionObserver):
    """Per head, the attention position 0 gives to key 0 when a learned sink logit joins its
    softmax (GPT-OSS): p = sigmoid(s_00 - sink_h), s_00 the scaled score of query 0 on key 0 as
    the softmax sees it (after RoPE). Without learned sinks p = 1 (position 0 sees only key 0)."""

    def __init__(self, model, layers: Sequence[int]):
        super().__init__(model, layers=layers)
        self.weights: dict[int, torch.Tensor] = {}

    def _compute(self, layer, module, query, key, attention_mask, kwargs):
        groups = query.shape[1] // key.shape[1]
        k0 = key[:, :, 0].float().repeat_interleave(groups, dim=1)  # (B, H, D)
        score = (query[:, :, 0].float() * k0).sum(-1) * self.scaling(module, kwargs)  # (B, H)
        sinks = kwargs.get("s_aux")
        return torch.ones_like(score) if sinks is None else torch.sigmoid(score - sinks.float()[None])

    def _commit(self, per_layer) -> None:
        self.weights = per_layer


def _weighted_attention_output(
    model, layer: int, normed: torch.Tensor, head_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Position 0's attention output from the extracted q/k/v/o split when each head h gives key 0
    the weight head_weights[:, h] (None: 1): sum_h W_O^h (w_h g_h * (W_V^h n + b_V^h)) + b_O, with
    g_h = sigmoid(W_G^h n + b_G^h) the output gate where the family has one (Qwen3-Next), else 1."""
    w = model_layout(model).attention_weights(layer)
    values = normed @ w.v.T + (0 if w.v_bias is None else w.v_bias)  # (N, H_kv * D)
    values = values.reshape(len(normed), w.n_kv_heads, 1, w.head_dim).expand(-1, -1, w.n_heads // w.n_kv_heads, -1)
    mixed = values.reshape(len(normed), w.n_heads, w.head_dim)
    if head_weights is not None:
        mixed = mixed * head_weights[..., None]
    if w.gate is not None:  # the output gate, per head and channel, from the gate rows of q
        gate = torch.sigmoid(normed @ w.gate.T + (0 if w.gate_bias is None else w.gate_bias))
        mixed = mixed * gate.reshape(len(normed), w.n_heads, w.head_dim)
    return mixed.reshape(len(normed), -1) @ w.o.T + (0 if w.o_bias is None else w.o_bias)


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-30)


def position0_attention(
    model,
    input_ids: torch.Tensor,
    attention_blocks: Sequence[int],
    s_star: np.ndarray | None = None,
    step_up_block: int | None = None,
) -> pd.DataFrame:
    """Check that the position-0 attention output equals W_VO applied to its normed input.

    For every sequence (position 0 only) and each attention block: relative error
    ||attn_out - (W_VO n_0 + b)|| / ||attn_out|| with n_0 the attention's normed input and attn_out
    its raw output (before any output norm), and, with s* given, cos(attn_out, s*), cos of the
    block's post-residual with s*, and (at step_up_block) cos of the FFN's input (the residual,
    which is what fold_norm=True's s* lives on) with s*.

    With learned sink logits (GPT-OSS) position 0 gives key 0 only 1 - p(sink) per head, a
    share that depends on the token: the prediction weights each head by the share the model's
    softmax gave (frame.attrs["learned_sinks"]); the map is then not fixed. Likewise with an output
    gate (Qwen3-Next): the prediction multiplies each head's value by sigmoid(W_G n_0), computed from
    the gate rows of the query projection (frame.attrs["output_gate"]). A hybrid's linear-attention
    blocks have no softmax to reduce to key 0: they are left out (frame.attrs["no_softmax_blocks"]).
    """
    device = next(model.parameters()).device
    blocks = sorted(int(b) for b in attention_blocks)
    if any(block_kind(b) != "attn" for b in blocks):
        raise ValueError("attention_blocks must be odd blocks")
    layout = model_layout(model)
    no_softmax = [b for b in blocks if not layout.layer_of(b).softmax]
    blocks = [b for b in blocks if b not in no_softmax]
    requests = [(b, state) for b in blocks for state in ("normed_input", "raw_output", "post_residual")]
    if step_up_block:
        requests.append((step_up_block, "input"))
    learned_sinks = bool(layout.adapter.attention_parts.sinks)
    output_gate = bool(layout.adapter.attention_parts.q_gate)
    if not blocks:
        frame = pd.DataFrame(columns=["block", "rel_error_median", "rel_error_max", "attn_norm_median"])
        frame.attrs.update(learned_sinks=learned_sinks, output_gate=output_gate, no_softmax_blocks=no_softmax)
        return frame
    with _Position0SinkWeights(model, [block_layer(b) for b in blocks]) if learned_sinks else nullcontext() as sink:
        # the whole forward: the observer commits its weights when the decoder stack returns
        got = capture(
            model, requests, stop=not learned_sinks, transform=lambda t: t[:, 0].float(), input_ids=input_ids.to(device)
        )
    star = None if s_star is None else torch.as_tensor(np.asarray(s_star), dtype=torch.float32, device=device)
    rows = []
    for block in blocks:
        if learned_sinks or output_gate:
            weights = sink.weights[block_layer(block)] if learned_sinks else None
            predicted = _weighted_attention_output(model, block_layer(block), got[(block, "normed_input")], weights)
        else:
            vo, bias = attention_vo_matrix(model, block_layer(block))
            predicted = got[(block, "normed_input")] @ vo.T + (0 if bias is None else bias)
        actual = got[(block, "raw_output")]
        error = (actual - predicted).norm(dim=-1) / actual.norm(dim=-1).clamp_min(1e-30)
        row = {
            "block": block,
            "rel_error_median": float(error.median()),
            "rel_error_max": float(error.max()),
            "attn_norm_median": float(actual.norm(dim=-1).median()),
        }
        if star is not None:
            row["cos_attn_s_star_median"] = float(_cos(actual, star).median())
            row["abs_cos_attn_s_star_median"] = float(_cos(actual, star).abs().median())
            row["cos_resid_s_star_median"] = float(_cos(got[(block, "post_residual")], star).median())
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs.update(learned_sinks=learned_sinks, output_gate=output_gate, no_softmax_blocks=no_softmax)
    if star is not None and step_up_block:
        cos_in = _cos(got[(step_up_block, "input")], star)
        frame.attrs["step_up_input_cos_s_star"] = {
            "median": float(cos_in.median()),
            "min": float(cos_in.min()),
            "abs_median": float(cos_in.abs().median()),
            "abs_values": [float(v) for v in cos_in.abs().cpu()],  # per sequence: the claim's interval
        }
    return frame


# ------------------------------------------------------------------------------------------
# The whole analysis
# ------------------------------------------------------------------------------------------


def position0_top_channels(model, input_ids: torch.Tensor, block: int, k: int = 3) -> list[int]:
    """The k channels with the largest mean |h| at position 0 after `block` (the spike pattern)."""
    device = next(model.parameters()).device
    got = capture(
        model, [(block, "post_residual")], transform=lambda t: t[:, 0].float(), input_ids=input_ids.to(device)
    )
    return got[(block, "post_residual")].abs().mean(0).topk(k).indices.tolist()


def _lead_expert(norms: pd.DataFrame, block: int, channels: Sequence[int]) -> str:
    """The expert of a block whose U_k are largest on `channels` ('dense' for a dense FFN)."""
    rows = norms[(norms["block"] == block) & norms["channel"].isin(list(channels))]
    return str(rows.groupby("expert")["uk_norm"].sum().idxmax())


def run_amplifier(
    model,
    lifecycle: Lifecycle,
    first_token_ids: torch.Tensor,
    n_control: int = 8,
    seed: int = 0,
    fold_norm: bool = True,
    chunk: int = 2048,
    progress: bool = True,
) -> dict:
    """Fig 3/4/8 and the position-0 map for one model, driven by the detected life cycle.

    first_token_ids: (n, T>=1) prompts whose position 0 is a spike token (BOS stripped when the
    tokenizer adds one, so first tokens vary). Channels whose top eigenvectors are compared
    ("sharing channels"): the spike channels when there are at least two, else the three
    largest channels of the position-0 state after the last step-up block (recorded).
    MoE blocks: norms per expert; per-block readings use the largest over experts and the
    spectra the expert whose U_k are largest on the sharing channels. A family without a gated
    FFN gets `summary["not_applicable"]` (U_k / S_k need a gate) and still the position-0 check.
    Returns dict(norms, outliers, spectra (long table), summary).
    """
    layout = model_layout(model)
    step_up = [int(b) for b in lifecycle.step_up]
    step_down = [int(b) for b in lifecycle.step_down]
    spike_channels = [int(c) for c in lifecycle.spike_channels]
    summary: dict = {
        "step_up": step_up,
        "step_down": step_down,
        "spike_channels": spike_channels,
        "fold_norm": bool(fold_norm and layout.layers[0].ffn_input_norm is not None),
        "ffn_kind": layout.ffn_kind,
        "d_model": layout.d_model,
    }
    out = {
        "norms": pd.DataFrame(columns=["block", "expert", "channel", "uk_norm"]),
        "outliers": pd.DataFrame(columns=["block", "expert", "channel", "uk_norm", "ratio_to_median", "rank"]),
        "spectra": pd.DataFrame(columns=["block", "channel", "kind", "rank", "eigenvalue", "abs_normalised"]),
        "summary": summary,
        "s_star": {},
    }
    try:
        norms = uk_norms(model, fold_norm=fold_norm, chunk=chunk, progress=progress)
    except NotApplicable as reason:
        summary["not_applicable"] = str(reason)
        norms = None
    if norms is not None:
        out["norms"], out["outliers"] = norms, uk_outliers(block_norms(norms), top=5)
        summary["uk_ratio_to_median"] = _ratios_to_median(block_norms(norms), spike_channels)
        if step_up:
            if len(spike_channels) >= 2:
                sharing, sharing_from = spike_channels, "spike channels"
            else:
                sharing = position0_top_channels(model, first_token_ids, step_up[-1], 3)
                sharing_from = "top-3 position-0 channels after the step-up block"
            summary.update({"sharing_channels": sharing, "sharing_from": sharing_from})
            out["spectra"], summary["blocks"], out["s_star"] = _step_block_spectra(
                model, norms, step_up + step_down, sharing, n_control, seed, fold_norm
            )
            s_stars = out["s_star"]
            summary["s_star_abs_cos_between_blocks"] = {
                f"{a}-{b}": float(abs(s_stars[a] @ s_stars[b])) for a in s_stars for b in s_stars if a < b
            }
    if not step_up:
        summary["note"] = "no step-up block detected: spectra, s* and the position-0 check skipped"
        return out
    summary["position0"] = _position0_summary(model, first_token_ids, step_up[0], out["s_star"].get(step_up[0]))
    return out


def _ratios_to_median(per_block: pd.DataFrame, channels: Sequence[int]) -> dict:
    """{channel: {block: ||U_k|| / median over the block's channels}} for the spike channels."""
    medians = per_block.groupby("block")["uk_norm"].median()
    return {
        channel: {
            int(b): float(v)
            for b, v in (per_block[per_block["channel"] == channel].set_index("block")["uk_norm"] / medians).items()
        }
        for channel in channels
    }


def _step_block_spectra(model, norms, blocks, sharing, n_control, seed, fold_norm) -> tuple[pd.DataFrame, dict, dict]:
    """(spectra long table, per-block summary, s* per block) of the step-up and step-down blocks."""
    tables, per_block, s_stars = [], {}, {}
    for block in blocks:
        expert = _lead_expert(norms, block, sharing)
        table, spectra = spectra_table(
            model, block, sharing, n_control=n_control, seed=seed, fold_norm=fold_norm, expert=expert
        )
        tables.append(table.assign(expert=expert))
        cos, s_stars[block] = shared_direction(spectra, sharing)
        controls = [spectra[c]["top_over_second"] for c in spectra if c not in set(sharing)]
        per_block[block] = {
            "expert": expert,
            "top_over_second": {c: spectra[c]["top_over_second"] for c in sharing},
            "top_share": {c: spectra[c]["top_share"] for c in sharing},
            "control_top_over_second_median": float(np.median(controls)) if controls else float("nan"),
            "top_vector_abs_cos_min": float(cos[~np.eye(len(sharing), dtype=bool)].min()) if len(sharing) > 1 else 1.0,
            "top_vector_abs_cos": cos.tolist(),
        }
    return pd.concat(tables, ignore_index=True), per_block, {int(b): v for b, v in s_stars.items()}


def _position0_summary(model, first_token_ids, step_up_block: int, s_star) -> dict:
    """The fixed-map check on the attention blocks before the first step-up block."""
    attention_blocks = list(range(1, step_up_block, 2))
    check = position0_attention(model, first_token_ids, attention_blocks, s_star=s_star, step_up_block=step_up_block)
    no_softmax = check.attrs["no_softmax_blocks"]
    return {
        "attention_blocks": [b for b in attention_blocks if b not in no_softmax],
        # a hybrid's linear-attention blocks before the step-up, with the reason they are not checked
        "no_softmax_blocks": no_softmax,
        "no_softmax_reason": model_layout(model).no_softmax_reason(block_layer(no_softmax[0])) if no_softmax else None,
        "output_gate": check.attrs["output_gate"],
        "rel_error_max": float(check["rel_error_max"].max()) if len(check) else float("nan"),
        "per_block": check.to_dict(orient="records"),
        "step_up_input_cos_s_star": check.attrs.get("step_up_input_cos_s_star"),
        "random_abs_cos_scale": float(1 / np.sqrt(model_layout(model).d_model)),
        "n_sequences": int(first_token_ids.shape[0]),
        "learned_sinks": check.attrs["learned_sinks"],
    }
