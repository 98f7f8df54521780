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
    attention_explicit,
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


# ----------------------------------------------------------------------------------------------
# sink remedies: each switch against a known answer


def causal_scores(q, k):
    scores = q.double() @ k.double().transpose(-1, -2) / math.sqrt(q.shape[-1])
    t = q.shape[-2]
    return scores.masked_fill(torch.triu(torch.ones(t, t, dtype=torch.bool), 1), float("-inf"))


def qkv(seed=5, shape=(2, 3, 11, 8)):
    gen = torch.Generator().manual_seed(seed)
    return (2 * torch.randn(*shape, generator=gen) for _ in range(3))


def test_plain_softmax_keeps_the_fused_path_and_the_explicit_path_matches_it():
    assert not build().layers[0].attn.branch.mixer.explicit
    assert all(build(**kw).layers[0].attn.branch.mixer.explicit for kw in REMEDY_SWITCHES)
    q, k, v = qkv()
    out, _, _ = attention_explicit(q, k, v, "softmax", max_chunk_elements=40)  # several query chunks
    assert torch.allclose(out, torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-5)


REMEDY_SWITCHES = (
    {"attention": "softmax1"},
    {"sink_logit": True},
    {"kv_bias": True},
    {"attention": "sigmoid"},
    {"attention": "relu"},
)


@pytest.mark.parametrize("chunk_elements", [1 << 22, 40])
def test_off_by_one_weights_sum_below_one_and_equal_softmax_over_scores_and_zero(chunk_elements):
    q, k, v = qkv()
    out, key0, weight_sum = attention_explicit(q, k, v, "softmax1", record=True, max_chunk_elements=chunk_elements)
    scores = causal_scores(q, k)
    full = torch.softmax(torch.cat([scores, torch.zeros(*scores.shape[:-1], 1, dtype=scores.dtype)], -1), -1)
    weights = full[..., :-1]  # softmax over [scores, 0], the 0 dropped
    assert (weights.sum(-1) < 1).all()
    assert torch.allclose(weights, torch.exp(scores) / (1 + torch.exp(scores).sum(-1, keepdim=True)))
    assert torch.allclose(out.double(), weights @ v.double(), atol=1e-5)
    assert torch.allclose(key0.double(), weights[..., 0].mean(-1), atol=1e-6)  # key 0 among the returned weights
    assert torch.allclose(weight_sum.double(), weights.sum(-1).mean(-1), atol=1e-6)


def test_sink_logit_share_is_one_minus_the_returned_weights():
    q, k, v = qkv()
    logit = torch.tensor([-1.0, 0.5, 3.0])  # one per head
    out, key0, weight_sum = attention_explicit(q, k, v, "softmax", sink_logit=logit, record=True)
    scores = causal_scores(q, k)
    slot = logit.double()[None, :, None, None].expand(*scores.shape[:-1], 1)
    full = torch.softmax(torch.cat([scores, slot], -1), -1)
    weights, share = full[..., :-1], full[..., -1]
    assert torch.allclose(out.double(), weights @ v.double(), atol=1e-5)
    assert torch.allclose(1 - weight_sum.double(), share.mean(-1), atol=1e-6)  # the learned-sink share
    assert torch.allclose(key0.double(), weights[..., 0].mean(-1), atol=1e-6)
    # a larger logit takes more of the mass: the heads' shares order as their logits
    per_head = (1 - weight_sum).mean(0)
    assert per_head[0] < per_head[1] < per_head[2]


def test_kv_bias_is_an_extra_key_and_value_every_query_sees():
    q, k, v = qkv()
    gen = torch.Generator().manual_seed(9)
    k_bias, v_bias = torch.randn(3, 8, generator=gen), torch.randn(3, 8, generator=gen)
    out, key0, weight_sum = attention_explicit(q, k, v, "softmax", k_bias=k_bias, v_bias=v_bias, record=True)
    scores = causal_scores(q, k)
    bias_score = (q.double() @ k_bias.double()[None, :, :, None]) / math.sqrt(8)  # (B, nh, T, 1)
    full = torch.softmax(torch.cat([scores, bias_score], -1), -1)
    expected = full[..., :-1] @ v.double() + full[..., -1:] * v_bias.double()[None, :, None, :]
    assert torch.allclose(out.double(), expected, atol=1e-5)
    assert torch.allclose(1 - weight_sum.double(), full[..., -1].mean(-1), atol=1e-6)
    assert torch.allclose(key0.double(), full[..., 0].mean(-1), atol=1e-6)


def hand_made(q1, q0=(1.0, 0.0)):
    """d_head 2 (scale 1/sqrt 2): k0 = (sqrt 2, 0), k1 = (0, sqrt 2), so query t scores key j with q_t[j]."""
    r2 = math.sqrt(2.0)
    q = torch.tensor([[q0, q1]])[None]  # (1, 1, 2, 2)
    k = torch.tensor([[[r2, 0.0], [0.0, r2]]])[None]
    v = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])[None]
    return q, k, v


def test_sigmoid_key0_statistic_is_key0s_share_of_each_querys_total_weight():
    # query 1 scores key 0 with 0 (sigmoid 1/2) and key 1 with log 3 (sigmoid 3/4): share 0.5 / 1.25 = 0.4;
    # query 0 sees key 0 only: share 1. Mean over the two queries: 0.7
    q, k, v = hand_made((0.0, math.log(3.0)))
    out, key0, weight_sum = attention_explicit(q, k, v, "sigmoid", record=True)
    assert key0.item() == pytest.approx(0.7, abs=1e-6)
    assert torch.allclose(out[0, 0, 1], torch.tensor([0.5, 0.75]), atol=1e-6)  # no normalisation
    assert weight_sum.item() == pytest.approx((torch.sigmoid(torch.tensor(1.0)).item() + 1.25) / 2, abs=1e-6)
    # bias -log 3: query 1's weights become 1/4 and 1/2, share 1/3; mean (1 + 1/3) / 2
    _, key0, _ = attention_explicit(q, k, v, "sigmoid", sigmoid_bias=-math.log(3.0), record=True)
    assert key0.item() == pytest.approx(2 / 3, abs=1e-6)


def test_relu_key0_statistic_and_a_query_that_attends_nowhere():
    # query 0 scores key 0 with -1: relu 0, it attends nowhere (share 0); query 1 scores 1 and 3, divided by
    # the 2 keys it sees: weights 0.5 and 1.5, share 0.25. Mean 0.125
    q, k, v = hand_made((1.0, 3.0), q0=(-1.0, 0.0))
    out, key0, weight_sum = attention_explicit(q, k, v, "relu", record=True)
    assert key0.item() == pytest.approx(0.125, abs=1e-6)
    assert torch.allclose(out[0, 0, 0], torch.zeros(2)) and torch.allclose(out[0, 0, 1], torch.tensor([0.5, 1.5]))
    assert weight_sum.item() == pytest.approx(1.0, abs=1e-6)  # (0 + 2) / 2


@pytest.mark.parametrize("switch", REMEDY_SWITCHES, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_recorded_key0_of_a_remedy_is_its_explicit_statistic(switch):
    model = build(**switch)
    attn = model.layers[1].attn.branch.mixer
    captured = {}
    attn.register_forward_hook(lambda m, args, out: captured.update(x=args[0]))
    attn.record_key0 = True
    with torch.no_grad():
        model(tokens(seq=20))
    x, cfg = captured["x"], model.cfg
    q, k, v = (w(x).view(2, 20, cfg.n_heads, cfg.d_head).transpose(1, 2) for w in (attn.wq, attn.wk, attn.wv))
    cos, sin = model.rope_cos[:20], model.rope_sin[:20]
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    _, key0, weight_sum = attention_explicit(
        q, k, v, attn.kind, attn.sink_logit, attn.k_bias, attn.v_bias, attn.sigmoid_bias, record=True
    )
    assert torch.allclose(attn.key0_mass, key0) and torch.allclose(attn.weight_sum, weight_sum)
    assert attn.has_sink_slot == (
        switch.get("attention") == "softmax1" or "sink_logit" in switch or "kv_bias" in switch
    )


def test_post_norm_output_has_unit_rms_after_the_add():
    model = build(norm="post")
    states = []
    for block in model.blocks():
        assert isinstance(block.branch.pre, torch.nn.Identity) and isinstance(block.branch.post, torch.nn.Identity)
        block.register_forward_hook(lambda m, args, out: states.append((args[0], out)))
    with torch.no_grad():
        model(tokens())
    for _, out in states:
        rms = out.pow(2).mean(-1).sqrt()
        assert torch.allclose(rms, torch.ones_like(rms), atol=1e-3)  # N(x + f(x)): every state back to RMS 1
    # the pre-norm baseline does not normalise the stream
    pre = build()
    with torch.no_grad():
        h = pre.blocks()[0](pre.embed(tokens()), pre.rope_cos[:16], pre.rope_sin[:16], None)
    assert not torch.allclose(h.pow(2).mean(-1).sqrt(), torch.ones(2, 16), atol=1e-2)


def test_learned_sink_and_kv_bias_parameters_and_their_init():
    model = build(sink_logit=True, kv_bias=True)
    attn = model.layers[0].attn.branch.mixer
    assert attn.sink_logit.shape == (TINY["n_heads"],) and torch.all(attn.sink_logit == 0)  # softmax1 at start
    assert attn.k_bias.shape == attn.v_bias.shape == (TINY["n_heads"], TINY["d_head"])
    assert 0.005 < attn.k_bias.std().item() < 0.05  # N(0, init_std) as Gu et al.
    model(tokens()).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in (attn.sink_logit, attn.k_bias, attn.v_bias))


@pytest.mark.parametrize(
    "switch,names",
    [
        ({"sink_logit": True, "attention": "sigmoid"}, ("sink_logit=true", "attention='sigmoid'")),
        ({"sink_logit": True, "attention": "relu"}, ("sink_logit=true", "attention='relu'")),
        ({"sink_logit": True, "attention": "softmax1"}, ("sink_logit=true", "attention='softmax1'")),
        ({"kv_bias": True, "attention": "sigmoid"}, ("kv_bias=true", "attention='sigmoid'")),
        ({"sigmoid_bias": -3.0, "attention": "softmax"}, ("sigmoid_bias=-3", "attention='softmax'")),
    ],
)
def test_remedies_that_cannot_combine_are_refused_naming_both(switch, names):
    with pytest.raises(ValueError) as err:
        ModelConfig(**{**TINY, **switch})
    assert all(name in str(err.value) for name in names), str(err.value)
    ModelConfig(**{**TINY, "sink_logit": True, "kv_bias": True})  # two slots combine
