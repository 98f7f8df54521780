"""The ablation decoder: every switch changes the architecture as named; key-0 mass is exact."""

from __future__ import annotations

import math

import pytest
import torch

from spikesink.ablations.model import (
    Attention,
    Decoder,
    DynamicTanh,
    GeLUFFN,
    LinearFFN,
    ModelConfig,
    NoFFN,
    RMSNorm,
    SwiGLU,
    apply_rope,
    key0_attention_mass,
)

torch.set_num_threads(1)

TINY = dict(vocab_size=97, max_seq_len=32, d_model=24, n_layers=2, n_heads=3, d_head=10, d_ffn=40)


def build(**overrides) -> Decoder:
    torch.manual_seed(0)
    return Decoder(ModelConfig(**{**TINY, **overrides}))


def tokens(batch=2, seq=16, vocab=97, seed=1):
    return torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))


def test_blocks_follow_paper_numbering():
    model = build()
    blocks = model.blocks()
    assert len(blocks) == 2 * TINY["n_layers"]
    assert all(isinstance(b.branch.mixer, Attention) for b in blocks[0::2])  # odd blocks (1, 3, ...)
    assert all(isinstance(b.branch.mixer, SwiGLU) for b in blocks[1::2])  # even blocks
    assert model(tokens()).shape == (2, 16, TINY["vocab_size"])


@pytest.mark.parametrize("n_heads,d_head", [(3, 10), (1, 48), (6, 4)])
def test_head_count_and_dim_are_independent_of_width(n_heads, d_head):
    model = build(n_heads=n_heads, d_head=d_head)
    attn = model.layers[0].attn.branch.mixer
    for proj in (attn.wq, attn.wk, attn.wv):
        assert proj.weight.shape == (n_heads * d_head, TINY["d_model"])
    assert attn.wo.weight.shape == (TINY["d_model"], n_heads * d_head)
    assert model.rope_cos.shape == (TINY["max_seq_len"], d_head)
    model(tokens())


@pytest.mark.parametrize(
    "ffn_type,cls,shapes",
    [
        ("swiglu", SwiGLU, {"gate.weight": (40, 24), "up.weight": (40, 24), "down.weight": (24, 40)}),
        ("gelu", GeLUFFN, {"up.weight": (40, 24), "down.weight": (24, 40)}),
        ("linear", LinearFFN, {"net.weight": (24, 24)}),
        ("attention", Attention, {"wq.weight": (30, 24), "wo.weight": (24, 30)}),
        ("none", NoFFN, {}),
    ],
)
def test_ffn_switch(ffn_type, cls, shapes):
    model = build(ffn_type=ffn_type)
    mixer = model.layers[0].ffn.branch.mixer
    assert type(mixer) is cls
    assert {k: tuple(v.shape) for k, v in mixer.named_parameters() if k in shapes} == shapes
    if ffn_type == "none":
        assert not list(model.layers[0].ffn.parameters())  # no norms either
        x = torch.randn(2, 5, 24)
        assert torch.equal(model.layers[0].ffn(x, None, None, None), x)
    if ffn_type == "attention":
        assert len(model.attention_modules()) == 2 * TINY["n_layers"]
    model(tokens())


@pytest.mark.parametrize(
    "norm,norm_type,qk,pre,post",
    [
        ("pre", "rmsnorm", False, RMSNorm, torch.nn.Identity),
        ("sandwich", "rmsnorm", False, RMSNorm, RMSNorm),
        ("sandwich", "rmsnorm", True, RMSNorm, RMSNorm),
        ("output", "rmsnorm", True, torch.nn.Identity, RMSNorm),
        ("pre", "dyt", False, DynamicTanh, torch.nn.Identity),
    ],
)
def test_norm_switches(norm, norm_type, qk, pre, post):
    model = build(norm=norm, norm_type=norm_type, qk_norm=qk)
    for block in model.blocks():
        assert type(block.branch.pre) is pre and type(block.branch.post) is post
    attn = model.layers[0].attn.branch.mixer
    assert (attn.q_norm is not None) == qk and (attn.k_norm is not None) == qk
    if qk:
        assert attn.q_norm.weight.shape == (TINY["n_heads"] * TINY["d_head"],)
    if norm_type == "dyt":
        assert model.layers[0].attn.branch.pre.alpha.item() == pytest.approx(0.8)
        assert model.layers[0].ffn.branch.pre.alpha.item() == pytest.approx(0.2)
    assert isinstance(model.final_norm, RMSNorm)
    model(tokens())


def test_output_norm_bounds_block_output():
    """With an output RMSNorm (unit gains) each block adds a vector of RMS 1, whatever its input."""
    model = build(norm="output")
    x = 50 * torch.randn(2, 7, 24)
    block = model.layers[0].ffn
    out = block.branch(x, None, None, None)
    assert torch.allclose(out.pow(2).mean(-1).sqrt(), torch.ones(2, 7), atol=1e-3)


@pytest.mark.parametrize(
    "gate,gran,param,shape",
    [
        ("conditional", "channel", "wg.weight", (30, 24)),
        ("conditional", "head", "wg.weight", (3, 24)),
        ("conditional", "single", "wg.weight", (1, 24)),
        ("unconditional", "channel", "gate_logit", (30,)),
        ("unconditional", "head", "gate_logit", (3,)),
        ("unconditional", "single", "gate_logit", (1,)),
        ("positional", "channel", "gate_logit", (32, 30)),
        ("embedding", "channel", "wg.weight", (30, 24)),
    ],
)
def test_gate_switches(gate, gran, param, shape):
    model = build(gate=gate, gate_granularity=gran)
    attn = model.layers[0].attn.branch.mixer
    assert dict(attn.named_parameters())[param].shape == shape
    assert "wg.weight" not in dict(build().layers[0].attn.branch.mixer.named_parameters())
    model(tokens())


def test_closed_gate_silences_attention_and_open_gate_halves_it():
    x = torch.randn(2, 8, 24)
    cos, sin = Decoder(ModelConfig(**TINY)).rope_cos[:8], Decoder(ModelConfig(**TINY)).rope_sin[:8]
    torch.manual_seed(0)
    plain = Attention(ModelConfig(**TINY))
    torch.manual_seed(0)
    gated = Attention(ModelConfig(**TINY, gate="unconditional", gate_granularity="head"))
    with torch.no_grad():
        gated.gate_logit.fill_(-60.0)
        assert gated(x, cos, sin, None).abs().max() < 1e-20
        gated.gate_logit.fill_(0.0)  # sigmoid(0) = 1/2
        assert torch.allclose(gated(x, cos, sin, None), 0.5 * plain(x, cos, sin, None), atol=1e-6)


def test_conditional_gate_depends_on_hidden_state_embedding_gate_on_embedding():
    cfg = ModelConfig(**TINY, gate="embedding")
    torch.manual_seed(0)
    attn = Attention(cfg)
    x = torch.randn(1, 6, 24)
    cos, sin = Decoder(cfg).rope_cos[:6], Decoder(cfg).rope_sin[:6]
    emb_a, emb_b = torch.randn(1, 6, 24), torch.randn(1, 6, 24)
    assert not torch.allclose(attn(x, cos, sin, emb_a), attn(x, cos, sin, emb_b))
    cond = Attention(ModelConfig(**TINY, gate="conditional"))
    assert torch.allclose(cond(x, cos, sin, emb_a), cond(x, cos, sin, emb_b))


def test_tied_and_untied_embeddings():
    assert build().head.weight is not build().embed.weight
    tied = build(tie_embeddings=True)
    assert tied.head.weight is tied.embed.weight
    assert sum(p.numel() for p in tied.parameters()) == sum(p.numel() for p in build().parameters()) - 97 * 24


def explicit_key0(q, k):
    d = q.shape[-1]
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    t = q.shape[-2]
    scores = scores.masked_fill(torch.triu(torch.ones(t, t, dtype=torch.bool), 1), float("-inf"))
    return torch.softmax(scores.double(), dim=-1)[..., 0].mean(-1)  # (B, nh)


@pytest.mark.parametrize("chunk_elements", [1 << 22, 50])  # one chunk; many small chunks
def test_key0_mass_equals_explicit_softmax(chunk_elements):
    gen = torch.Generator().manual_seed(3)
    q, k = 3 * torch.randn(2, 4, 37, 8, generator=gen), 3 * torch.randn(2, 4, 37, 8, generator=gen)
    k[..., 0, :] += 2 * q.mean(-2)  # make key 0 attractive so the values are not all tiny
    got = key0_attention_mass(q, k, max_chunk_elements=chunk_elements)
    assert got.shape == (2, 4)
    assert torch.allclose(got.double(), explicit_key0(q, k), atol=1e-5)
    assert got.max() > 0.1


def test_recorded_key0_mass_matches_module_attention():
    """The attention module's recorded statistic equals the softmax of its own q, k (after RoPE and QK-norm)."""
    cfg = ModelConfig(**TINY, qk_norm=True)
    model = build(qk_norm=True)
    attn = model.layers[1].attn.branch.mixer
    captured = {}
    attn.register_forward_hook(lambda m, args, out: captured.update(x=args[0]))
    attn.record_key0 = True
    with torch.no_grad():
        model(tokens(seq=20))
    x = captured["x"]
    q = attn.q_norm(attn.wq(x)).view(2, 20, cfg.n_heads, cfg.d_head).transpose(1, 2)
    k = attn.k_norm(attn.wk(x)).view(2, 20, cfg.n_heads, cfg.d_head).transpose(1, 2)
    cos, sin = model.rope_cos[:20], model.rope_sin[:20]
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    assert torch.allclose(attn.key0_mass.double(), explicit_key0(q, k), atol=1e-5)


def test_rope_preserves_norm_and_is_relative():
    cos, sin = Decoder(ModelConfig(**TINY)).rope_cos, Decoder(ModelConfig(**TINY)).rope_sin
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 10, generator=gen), torch.randn(1, 1, 1, 10, generator=gen)
    rq = apply_rope(q.expand(1, 1, 32, 10), cos, sin)
    rk = apply_rope(k.expand(1, 1, 32, 10), cos, sin)
    assert torch.allclose(rq.norm(dim=-1), q.norm(dim=-1).expand(1, 1, 32), atol=1e-5)
    # q at position i+3 against k at i depends only on the offset
    dots = (rq[0, 0, 3:] * rk[0, 0, :-3]).sum(-1)
    assert torch.allclose(dots, dots[0].expand_as(dots), atol=1e-4)


def test_config_rejects_unknown_choices():
    with pytest.raises(ValueError):
        ModelConfig(ffn_type="relu")
    with pytest.raises(ValueError):
        ModelConfig.from_dict({"d_modle": 3})
    with pytest.raises(ValueError):
        ModelConfig(d_head=7)


def test_gradient_checkpointing_gives_the_same_gradients():
    x = tokens()
    grads = []
    for flag in (False, True):
        model = build()
        model.gradient_checkpointing = flag
        model(x).float().pow(2).mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-6) for n in grads[0])
