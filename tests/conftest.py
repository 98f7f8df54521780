import os

import numpy as np
import pytest
import torch

# The CI machine has 2 cores; tests stay single-threaded so timings do not depend on load.
torch.set_num_threads(1)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# The one tiny decoder of the tests, with GQA (4 query heads share 2 key/value heads). Tests that
# need another size pass overrides (e.g. vocab_size=260 for the byte tokenizer of `source: random`).
TINY_CONFIG = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=128,
    max_position_embeddings=128,
)


def tiny_config_dict(**overrides) -> dict:
    """The tiny decoder's config keys with `overrides`: for a `source: random` model spec, or the
    keyword arguments of a transformers config class."""
    return {**TINY_CONFIG, **overrides}


def tiny_config(model_type: str = "llama", **overrides):
    """The tiny decoder as a transformers config of `model_type` (llama, qwen2, qwen3, mistral, ...)."""
    from transformers import AutoConfig

    return AutoConfig.for_model(model_type, **tiny_config_dict(**overrides))


def tiny_model(model_type: str = "llama", seed: int = 0, **overrides):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = tiny_config(model_type, **overrides)
    config._attn_implementation = "sdpa"
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def planted():
    from spikesink.acquisition.planted import build_planted_llama

    # 5e3 on the first spike channel: ~3x the 1000x-median bar (median ~1.7), and still small
    # enough for the planted step-down block to cancel it cleanly
    return build_planted_llama(spike_magnitude=5e3)


# One tiny config per supported model type, each exercising its family's attention variants:
# GQA (n_kv 2 of 4 heads), sliding windows shorter than the test sequences (Mistral, Gemma 2/3),
# logit soft-capping (Gemma 2's default 50), QK-norm (Qwen3, Gemma 3, OLMo 2), fused q/k/v (Phi-3,
# GPT-2, NeoX), a parallel residual (NeoX's default) and MoE FFNs (top-2 of 4 experts).
FAMILY_CONFIGS = {
    "llama": {},
    "mistral": dict(sliding_window=5, head_dim=8),
    "qwen2": {},
    # layer 1 is a NoPE layer (no rotary) and slides
    "smollm3": dict(no_rope_layer_interval=2, use_sliding_window=True, sliding_window=5),
    "qwen3": dict(head_dim=8),
    "gemma": dict(head_dim=8),
    "gemma2": dict(head_dim=8, sliding_window=5),
    "gemma3_text": dict(
        head_dim=8, sliding_window=5, layer_types=["sliding_attention", "full_attention", "sliding_attention"]
    ),
    "olmo2": {},
    "olmo3": dict(sliding_window=5, layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
    "phi3": dict(pad_token_id=0),
    "phi": dict(num_key_value_heads=None),
    "starcoder2": dict(sliding_window=5),
    "gpt2": dict(n_embd=32, n_layer=3, n_head=4, n_inner=64, n_positions=128),
    "gpt_neox": dict(num_key_value_heads=None),
    # global and local (window 5) layers alternate; the module's own softmax, q . k unscaled
    "gpt_neo": dict(
        num_key_value_heads=None, attention_types=[[["global", "local"], 1], [["global"], 1]], window_size=5
    ),
    "mixtral": dict(num_local_experts=4, num_experts_per_tok=2),
    "qwen2_moe": dict(
        num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=32
    ),
    "qwen3_moe": dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, head_dim=8),
    # learned sink logits, sliding and full layers alternating, MoE of clamped SwiGLU experts
    "gpt_oss": dict(
        num_local_experts=4,
        num_experts_per_tok=2,
        head_dim=8,
        sliding_window=5,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
    ),
    # hybrid: Gated DeltaNet (linear attention, no attention map) in layer 0, gated softmax attention (an output
    # gate in q_proj, QK-norm, partial rotary) in layers 1 and 2; MoE with a gated shared expert; RMSNorm 1 + w
    "qwen3_next": dict(
        layer_types=["linear_attention", "full_attention", "full_attention"],
        head_dim=8,
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=32,
        shared_expert_intermediate_size=32,
        linear_num_key_heads=2,
        linear_num_value_heads=4,
        linear_key_head_dim=8,
        linear_value_head_dim=8,
    ),
    # Qwen3.5's text decoder: the same hybrid layers (linear attention in layer 1 here), a dense SwiGLU FFN
    "qwen3_5_text": dict(
        layer_types=["full_attention", "linear_attention", "full_attention"],
        head_dim=8,
        linear_num_key_heads=2,
        linear_num_value_heads=4,
        linear_key_head_dim=8,
        linear_value_head_dim=8,
    ),
    # pre-norm OPT (125m, 1.3b, ...): fc1 / fc2 on the layer, learned positions with offset 2
    "opt": dict(num_key_value_heads=None, ffn_dim=64),
    # "type/variant": further configs of one model_type whose module layout differs (see family_model)
    # (Falcon derives num_key_value_heads from multi_query / num_kv_heads)
    "falcon": dict(num_key_value_heads=None),  # Falcon-7B: multi-query fused qkv, one LayerNorm for both
    "falcon/40b": dict(num_key_value_heads=None, new_decoder_architecture=True, num_kv_heads=2),  # ln_attn, ln_mlp
    "falcon/11b": dict(
        num_key_value_heads=None, new_decoder_architecture=True, num_kv_heads=2, num_ln_in_parallel_attn=1
    ),
    # sequential pre-norm blocks, per-head qkv with biases
    "falcon/rw": dict(num_key_value_heads=None, multi_query=False, parallel_attn=False, bias=True),
    # OPT-350m: true post-norm (LayerNorm after each residual add, no final norm), 16-wide
    # embeddings projected in and out
    "opt/350m": dict(num_key_value_heads=None, ffn_dim=64, do_layer_norm_before=False, word_embed_proj_dim=16),
}
FAMILY_BASE = dict(TINY_CONFIG, pad_token_id=None, bos_token_id=None, eos_token_id=None)


def model_type_of(key: str) -> str:
    """The model_type of a FAMILY_CONFIGS key ("falcon/40b" -> "falcon")."""
    return key.split("/")[0]


def family_spec(key: str, **extra) -> dict:
    """A `source: random` spec of the tests' tiny config FAMILY_CONFIGS[key], byte vocabulary."""
    config = {**FAMILY_BASE, **FAMILY_CONFIGS[key], "vocab_size": 260, **extra}
    for unset in ("pad_token_id", "bos_token_id", "eos_token_id", "num_key_value_heads"):
        if config.get(unset, 0) is None:
            del config[unset]
    return {"source": "random", "model_type": model_type_of(key), "seed": 0, "config": config}


def family_model(key: str, seed: int = 0, sharpen: float = 3.0):
    """A tiny random model of FAMILY_CONFIGS[key] on its family's base attention.

    Every matrix is scaled by `sharpen` (the 0.02 init gives almost uniform attention) and every
    norm gain is randomised, so that a statistic that skipped a norm or a q/k scaling would differ.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    from spikesink.instrumentation.families import adapter_for

    overrides, model_type = FAMILY_CONFIGS[key], model_type_of(key)
    if model_type == "gpt2":
        settings = dict(overrides, vocab_size=TINY_CONFIG["vocab_size"], bos_token_id=None, eos_token_id=None)
    else:
        settings = {**FAMILY_BASE, **overrides}
        if settings.get("num_key_value_heads", 0) is None:
            del settings["num_key_value_heads"]
    config = AutoConfig.for_model(model_type, **settings)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=adapter_for(config).base_attention)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".sinks"):  # learned sink logits (GPT-OSS): some heads give the sink most
                param.normal_(0.0, 2.0)
            elif param.dim() >= 2 and "embed" not in name and "wte" not in name and "wpe" not in name:
                param.mul_(sharpen)
            elif param.dim() == 1 and "norm" in name or name.endswith(("ln_1.weight", "ln_2.weight")):
                param.copy_(torch.rand_like(param) + 0.5)
    return model.eval()
