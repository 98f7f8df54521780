"""A small Llama-style decoder in which every Section 4 ablation is one visible switch.

Written out plainly (nanoGPT style) instead of wrapping a library model, so that a reader sees
where each ablation acts:

    x0 = embed(tokens)                                        (B, T, d_model)
    for each layer l = 1..L:                                  2L blocks, numbered from 1
        block 2l-1 (attention): x = x + post(Attn(pre(x)))    odd block
        block 2l   (FFN):       x = x + post(FFN(pre(x)))     even block
    logits = head(final_norm(x))                              (B, T, vocab)

`pre`/`post` are RMSNorm, DynamicTanh or identity depending on `norm` / `norm_type` (`norm: post`
instead normalises after the residual add, x = N(x + f(x)), the original Transformer's post-norm);
the FFN can be SwiGLU, GeLU, a single linear map, a second attention (the paper's "attention-only"
model) or nothing; attention can be gated by a * sigmoid(g) with g from the hidden state
(conditional), a learned constant (unconditional), a learned per-position constant or the token
embedding.

Sink remedies, one switch each (`attention`, `sink_logit`, `kv_bias`; see `attention_explicit`):
softmax with an extra 1 in the denominator, a learned per-head sink logit (gpt-oss), a learned key
and value per head, sigmoid attention (Gu et al. 2025) and ReLU attention (Guo et al. 2024), both
without normalisation. Plain softmax stays on the fused `scaled_dot_product_attention`; the others
run an explicit path over query chunks.

Defaults follow the paper's recipe where it has one (RoPE theta 1e4, RMSNorm eps 1e-5, normal
init std 0.02 for projections, std 1.0 for the input embedding and d_model**-0.5 for the output
head as in the official code, untied embeddings as in Llama); sizes are tiny so a CPU can train it.

For evaluation each attention module can also report, per head, the mean attention its queries
give to key 0 (`record_key0`), computed from q and k in query chunks: no T x T map is kept. For
the kinds whose weights do not sum to 1 the statistic is defined in `attention_explicit`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

# the configuration lives in the torch-free configs.py (the workflow resolves variants without
# torch); re-exported here, its old home
from .configs import (  # noqa: F401
    ATTENTIONS,
    FFN_TYPES,
    GATE_GRANULARITIES,
    GATES,
    NORM_TYPES,
    NORMS,
    ModelConfig,
    strict_from_dict,
)

# ----------------------------------------------------------------------------------------------
# normalisation


class RMSNorm(nn.Module):
    """RMSNorm computed in float32 (the spike lives in the residual stream; bf16 would clip its tail)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.type_as(x)


class DynamicTanh(nn.Module):
    """DyT (Zhu et al. 2025): w * tanh(alpha * x), a normalisation-free stand-in for RMSNorm."""

    def __init__(self, dim: int, alpha_init: float):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((1,), float(alpha_init)))
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * torch.tanh(self.alpha * x)


def make_norm(cfg: ModelConfig, dim: int, alpha_init: float) -> nn.Module:
    if cfg.norm_type == "dyt":
        return DynamicTanh(dim, alpha_init)
    return RMSNorm(dim, cfg.norm_eps)


# ----------------------------------------------------------------------------------------------
# rotary position embedding


def rope_tables(d_head: int, max_seq_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables of shape (max_seq_len, d_head) in the rotate-half convention of Llama."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, d_head, 2, dtype=torch.float32) / d_head))  # (d_head/2,)
    freqs = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)  # (T, d_head/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, d_head)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, nh, T, hs) queries or keys by position; computed in float32."""
    half = x.shape[-1] // 2
    xf = x.float()
    rotated = torch.cat((-xf[..., half:], xf[..., :half]), dim=-1)
    return (xf * cos + rotated * sin).type_as(x)


# ----------------------------------------------------------------------------------------------
# the key-0 statistic


def key0_attention_mass(q: torch.Tensor, k: torch.Tensor, max_chunk_elements: int = 1 << 22) -> torch.Tensor:
    """Mean over queries of the causal softmax mass each head puts on key 0; (B, nh, T, hs) x2 -> (B, nh).

    p0(t) = exp(s_t0 - logsumexp_{j<=t} s_tj) with s = q.k / sqrt(hs). Queries are processed in
    chunks (and only against the keys they can see) so the largest temporary is about
    `max_chunk_elements` floats instead of a (B, nh, T, T) map. Every query sees key 0, so the
    mean runs over all T queries (Gu et al.: column sum / number of queries that see the key).
    """
    bsz, n_heads, seq_len, d_head = q.shape
    scale = 1.0 / math.sqrt(d_head)
    qf, kf = q.float(), k.float()
    chunk = max(1, min(seq_len, max_chunk_elements // max(1, bsz * n_heads * seq_len)))
    total = torch.zeros(bsz, n_heads, dtype=torch.float32, device=q.device)
    for start in range(0, seq_len, chunk):
        stop = min(seq_len, start + chunk)
        scores = qf[:, :, start:stop] @ kf[:, :, :stop].transpose(-1, -2) * scale  # (B, nh, C, stop)
        query_pos = torch.arange(start, stop, device=q.device)[:, None]
        key_pos = torch.arange(stop, device=q.device)[None, :]
        scores = scores.masked_fill(key_pos > query_pos, float("-inf"))
        p0 = torch.exp(scores[..., 0] - torch.logsumexp(scores, dim=-1))  # (B, nh, C)
        total += p0.sum(-1)
    return total / seq_len


def attention_explicit(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kind: str = "softmax",
    sink_logit: torch.Tensor | None = None,
    k_bias: torch.Tensor | None = None,
    v_bias: torch.Tensor | None = None,
    sigmoid_bias: float = 0.0,
    record: bool = False,
    max_chunk_elements: int = 1 << 22,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Causal attention written out, for every kind but fused plain softmax; (B, nh, T, hs) x3 ->
    (output (B, nh, T, hs), key-0 statistic (B, nh) or None, weight sum (B, nh) or None).

    With s_tj = q_t.k_j / sqrt(hs) for the keys j <= t a query sees, the weights w_tj are

    - softmax family: the softmax over [s_t0..s_tt, extra slots], the slots dropped afterwards:
      softmax1 adds a logit fixed at 0 (exp(s_tj) / (1 + sum_i exp(s_ti))), `sink_logit` (nh,) a
      learned logit per head (gpt-oss), `k_bias`/`v_bias` (nh, hs) a learned key whose score is
      q_t.k_b / sqrt(hs) and whose value v_b joins the output. The token weights sum to < 1; the
      rest went to the slots.
    - sigmoid: w_tj = sigmoid(s_tj + sigmoid_bias), no normalisation (Gu et al. 2025, bias 0).
    - relu: w_tj = relu(s_tj) / (t + 1), no normalisation (Guo et al. 2024, their code divides by
      the number of keys the query sees).

    The key-0 statistic (`record`), per head, averaged over all T queries: for the softmax family
    the weight on key 0 among the returned weights, w_t0 (the slots' share is apart: 1 - the weight
    sum); for sigmoid and relu the share of the query's total weight that key 0 gets,
    w_t0 / sum_j w_tj (Gu et al.'s sink metric for unnormalised attention), 0 for a query whose
    weights are all 0 (it attends nowhere, which parks nothing on key 0). The weight sum is the
    mean over queries of sum_j w_tj. Queries run in chunks of about `max_chunk_elements` scores.
    """
    bsz, n_heads, seq_len, d_head = q.shape
    scale = 1.0 / math.sqrt(d_head)
    chunk = max(1, min(seq_len, max_chunk_elements // max(1, bsz * n_heads * seq_len)))
    outs = []
    key0 = torch.zeros(bsz, n_heads, dtype=torch.float32, device=q.device) if record else None
    total = torch.zeros(bsz, n_heads, dtype=torch.float32, device=q.device) if record else None
    for start in range(0, seq_len, chunk):
        stop = min(seq_len, start + chunk)
        qc = q[:, :, start:stop]  # (B, nh, C, hs)
        scores = (qc @ k[:, :, :stop].transpose(-1, -2)).float() * scale  # (B, nh, C, stop)
        query_pos = torch.arange(start, stop, device=q.device)[:, None]
        future = torch.arange(stop, device=q.device)[None, :] > query_pos  # (C, stop)
        bias_weight = None
        if kind in ("softmax", "softmax1"):
            slots = []
            if kind == "softmax1":
                slots.append(scores.new_zeros(*scores.shape[:-1], 1))
            if sink_logit is not None:
                slots.append(sink_logit.float()[None, :, None, None].expand(bsz, n_heads, stop - start, 1))
            if k_bias is not None:
                slots.append((qc.float() @ k_bias.float()[None, :, :, None]) * scale)  # (B, nh, C, 1)
            probs = torch.softmax(torch.cat([scores.masked_fill(future, float("-inf")), *slots], dim=-1), dim=-1)
            weights = probs[..., :stop]
            if k_bias is not None:
                bias_weight = probs[..., -1:]  # the key/value bias is the last slot
        elif kind == "sigmoid":
            weights = torch.sigmoid(scores + sigmoid_bias).masked_fill(future, 0.0)
        elif kind == "relu":
            weights = torch.relu(scores).masked_fill(future, 0.0) / (query_pos + 1).to(scores.dtype)
        else:
            raise ValueError(f"attention kind {kind!r}; expected one of {', '.join(ATTENTIONS)}")
        out = weights.to(v.dtype) @ v[:, :, :stop]  # (B, nh, C, hs)
        if bias_weight is not None:
            out = out + bias_weight.to(v.dtype) * v_bias.to(v.dtype)[None, :, None, :]
        outs.append(out)
        if record:
            with torch.no_grad():
                sums = weights.sum(-1)  # (B, nh, C)
                first = weights[..., 0]
                if kind in ("sigmoid", "relu"):
                    first = torch.where(sums > 0, first / sums.clamp_min(1e-30), torch.zeros_like(first))
                key0 += first.sum(-1)
                total += sums.sum(-1)
    out = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]
    if record:
        return out, key0 / seq_len, total / seq_len
    return out, None, None


# ----------------------------------------------------------------------------------------------
# mixers: attention and the FFN variants. Each takes (x, cos, sin, emb) and returns (B, T, d_model).


class Attention(nn.Module):
    """Causal multi-head attention with RoPE, optional QK-norm and optional output gate.

    Projections: d_model -> n_heads*d_head for q, k, v and back with wo. The gate multiplies the
    attention output before wo: a * sigmoid(g), g of shape (B or 1, T or 1, n_gate) with
    n_gate = n_heads*d_head (channel), n_heads (head) or 1 (single). Plain softmax runs fused
    sdpa; `attention`, `sink_logit` and `kv_bias` switch to `attention_explicit` (the bias key
    gets no RoPE: it has no position).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.d_head = cfg.n_heads, cfg.d_head
        inner = cfg.n_heads * cfg.d_head
        self.wq = nn.Linear(cfg.d_model, inner, bias=False)
        self.wk = nn.Linear(cfg.d_model, inner, bias=False)
        self.wv = nn.Linear(cfg.d_model, inner, bias=False)
        self.wo = nn.Linear(inner, cfg.d_model, bias=False)
        self.q_norm = RMSNorm(inner, cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(inner, cfg.norm_eps) if cfg.qk_norm else None

        self.gate = cfg.gate
        n_gate = {"channel": inner, "head": cfg.n_heads, "single": 1}[cfg.gate_granularity]
        self.wg = None
        self.gate_logit = None  # learned constants: not weight-decayed (see train.param_groups)
        if cfg.gate in ("conditional", "embedding"):
            self.wg = nn.Linear(cfg.d_model, n_gate, bias=False)
        elif cfg.gate == "unconditional":
            self.gate_logit = nn.Parameter(torch.zeros(n_gate))
        elif cfg.gate == "positional":
            self.gate_logit = nn.Parameter(torch.zeros(cfg.max_seq_len, n_gate))

        # sink remedies: learned constants, not weight-decayed (train.NO_DECAY)
        self.kind, self.sigmoid_bias = cfg.attention, cfg.sigmoid_bias
        self.explicit, self.has_sink_slot = cfg.explicit_attention, cfg.has_sink_slot
        self.sink_logit = nn.Parameter(torch.zeros(cfg.n_heads)) if cfg.sink_logit else None
        self.k_bias = nn.Parameter(torch.zeros(cfg.n_heads, cfg.d_head)) if cfg.kv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(cfg.n_heads, cfg.d_head)) if cfg.kv_bias else None

        self.record_key0 = False  # set by the evaluator; then key0_mass (and weight_sum) hold (B, nh) after forward
        self.key0_mass: torch.Tensor | None = None
        self.weight_sum: torch.Tensor | None = None  # mean over queries of the summed token weights

    def forward(self, x, cos, sin, emb):
        bsz, seq_len, _ = x.shape
        q, k, v = self.wq(x), self.wk(x), self.wv(x)  # (B, T, nh*hs) each
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q = q.view(bsz, seq_len, self.n_heads, self.d_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(bsz, seq_len, self.n_heads, self.d_head).transpose(1, 2)
        v = v.view(bsz, seq_len, self.n_heads, self.d_head).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.explicit:
            a, key0, weight_sum = attention_explicit(
                q, k, v, self.kind, self.sink_logit, self.k_bias, self.v_bias, self.sigmoid_bias, self.record_key0
            )
            if self.record_key0:
                self.key0_mass, self.weight_sum = key0, weight_sum
        else:
            if self.record_key0:
                self.key0_mass = key0_attention_mass(q, k)
                self.weight_sum = torch.ones_like(self.key0_mass)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        a = a.transpose(1, 2)  # (B, T, nh, hs)
        if self.gate != "none":
            a = a * torch.sigmoid(self._gate_logits(x, emb, seq_len)).to(a.dtype)
        return self.wo(a.reshape(bsz, seq_len, self.n_heads * self.d_head))

    def _gate_logits(self, x, emb, seq_len):
        """Gate logits shaped to broadcast against (B, T, nh, hs)."""
        if self.gate == "conditional":
            g = self.wg(x)  # (B, T, n_gate): depends on the token's (normalised) hidden state
        elif self.gate == "embedding":
            g = self.wg(emb)  # (B, T, n_gate): depends on the token identity only
        elif self.gate == "unconditional":
            g = self.gate_logit[None, None, :]  # (1, 1, n_gate): a learned constant
        else:  # positional
            g = self.gate_logit[None, :seq_len, :]  # (1, T, n_gate): a learned constant per position
        n_gate = g.shape[-1]
        if n_gate == self.n_heads * self.d_head:
            return g.reshape(*g.shape[:2], self.n_heads, self.d_head)
        if n_gate == self.n_heads:
            return g.reshape(*g.shape[:2], self.n_heads, 1)
        return g.reshape(*g.shape[:2], 1, 1)


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate = nn.Linear(cfg.d_model, cfg.d_ffn, bias=False)
        self.up = nn.Linear(cfg.d_model, cfg.d_ffn, bias=False)
        self.down = nn.Linear(cfg.d_ffn, cfg.d_model, bias=False)

    def forward(self, x, cos, sin, emb):
        return self.down(F.silu(self.gate(x)) * self.up(x))  # (B, T, d_ffn) -> (B, T, d_model)


class GeLUFFN(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.d_ffn, bias=False)
        self.down = nn.Linear(cfg.d_ffn, cfg.d_model, bias=False)

    def forward(self, x, cos, sin, emb):
        return self.down(F.gelu(self.up(x)))


class LinearFFN(nn.Module):
    """The paper's linear FFN: one d_model x d_model map (no hidden layer, no nonlinearity)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.net = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x, cos, sin, emb):
        return self.net(x)


class NoFFN(nn.Module):
    """No FFN at all: the even block adds zero (kept so the 2L-block numbering stays intact)."""

    def forward(self, x, cos, sin, emb):
        return torch.zeros_like(x)


def make_ffn(cfg: ModelConfig) -> nn.Module:
    if cfg.ffn_type == "swiglu":
        return SwiGLU(cfg)
    if cfg.ffn_type == "gelu":
        return GeLUFFN(cfg)
    if cfg.ffn_type == "linear":
        return LinearFFN(cfg)
    if cfg.ffn_type == "attention":
        return Attention(cfg)  # official "attention-only" model: a second attention replaces the FFN
    return NoFFN()


# ----------------------------------------------------------------------------------------------
# blocks and the model


class Branch(nn.Module):
    """What a block adds to the residual stream: post(mixer(pre(x))). Hook it to get block outputs.
    With `norm: post` both are identities: the block normalises after the add instead."""

    def __init__(self, cfg: ModelConfig, mixer: nn.Module, alpha_init: float):
        super().__init__()
        has_mixer = not isinstance(mixer, NoFFN)
        self.pre = (
            make_norm(cfg, cfg.d_model, alpha_init) if cfg.norm in ("pre", "sandwich") and has_mixer else nn.Identity()
        )
        self.mixer = mixer
        self.post = (
            make_norm(cfg, cfg.d_model, alpha_init)
            if cfg.norm in ("sandwich", "output") and has_mixer
            else nn.Identity()
        )

    def forward(self, x, cos, sin, emb):
        return self.post(self.mixer(self.pre(x), cos, sin, emb))


class Block(nn.Module):
    """One residual block: x + branch(x), or N(x + branch(x)) with `norm: post` (true post-norm: the
    residual stream itself is normalised after every block). Hook it to get the post-residual state."""

    def __init__(self, cfg: ModelConfig, mixer: nn.Module, alpha_init: float):
        super().__init__()
        self.branch = Branch(cfg, mixer, alpha_init)
        post = cfg.norm == "post" and not isinstance(mixer, NoFFN)
        self.post_norm = make_norm(cfg, cfg.d_model, alpha_init) if post else None

    def forward(self, x, cos, sin, emb):
        x = x + self.branch(x, cos, sin, emb)
        return x if self.post_norm is None else self.post_norm(x)


class Layer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn = Block(cfg, Attention(cfg), cfg.dyt_alpha_attn)  # block 2l-1
        self.ffn = Block(cfg, make_ffn(cfg), cfg.dyt_alpha_ffn)  # block 2l

    def forward(self, x, cos, sin, emb):
        x = self.attn(x, cos, sin, emb)
        return self.ffn(x, cos, sin, emb)


class Decoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.n_layers))
        self.final_norm = RMSNorm(cfg.d_model, cfg.norm_eps)  # kept RMSNorm in every variant (official code)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        cos, sin = rope_tables(cfg.d_head, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)  # (max_seq_len, d_head)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.gradient_checkpointing = False
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official-code init: projections N(0, init_std), embedding N(0, embed_init_std), head N(0, d^-1/2);
        a key/value bias N(0, init_std) like Gu et al.'s, a sink logit 0 (the softmax1 logit at start)."""
        cfg = self.cfg
        for name, param in self.named_parameters():
            if name.endswith("gate_logit"):
                nn.init.normal_(param, std=cfg.init_std)
            elif param.ndim >= 2 and not name.startswith(("embed.", "head.")):
                nn.init.normal_(param, std=cfg.init_std)
        nn.init.normal_(self.head.weight, std=cfg.d_model**-0.5)
        if not cfg.tie_embeddings:
            nn.init.normal_(self.embed.weight, std=cfg.embed_init_std)

    def blocks(self) -> list[Block]:
        """The 2L blocks in paper order: index i holds block i+1 (odd = attention, even = FFN)."""
        return [block for layer in self.layers for block in (layer.attn, layer.ffn)]

    def attention_modules(self) -> list[Attention]:
        """Every attention module in depth order (two per layer in the attention-only model)."""
        return [m for m in self.modules() if isinstance(m, Attention)]

    def num_parameters(self, exclude_embeddings: bool = True) -> int:
        total = sum(p.numel() for p in self.parameters())
        if exclude_embeddings and not self.cfg.tie_embeddings:
            total -= self.embed.weight.numel()
        return total

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> logits (B, T, vocab)."""
        seq_len = idx.shape[1]
        if seq_len > self.cfg.max_seq_len:
            raise ValueError(f"sequence of {seq_len} tokens exceeds max_seq_len {self.cfg.max_seq_len}")
        cos, sin = self.rope_cos[:seq_len], self.rope_sin[:seq_len]  # (T, hs)
        emb = self.embed(idx)  # (B, T, d_model)
        x = emb
        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                x = checkpoint(layer, x, cos, sin, emb, use_reentrant=False)
            else:
                x = layer(x, cos, sin, emb)
        return self.head(self.final_norm(x))


def lm_loss(
    logits: torch.Tensor, targets: torch.Tensor, loss_min_pos: int = 0, loss_max_pos: int | None = None
) -> torch.Tensor:
    """Mean next-token cross-entropy over positions [loss_min_pos, loss_max_pos) (paper Table 8), in float32."""
    logits = logits[:, loss_min_pos:loss_max_pos]
    targets = targets[:, loss_min_pos:loss_max_pos]
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
