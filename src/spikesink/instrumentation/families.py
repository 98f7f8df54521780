"""Family adapters: each supported decoder family described as data (torch-free).

An adapter names where things live in a Hugging Face `*ForCausalLM` of that family (module
paths) and states the switches the analyses read: where the norms sit, which FFN and attention
parts exist, how the residual is formed. Nothing here touches a model; `layout.py` resolves an
adapter against a loaded model and fails with the module path when the model does not match.
This module is imported while the workflow builds its DAG, so it must not import torch.

Norm placement, read off the norms an adapter names:

    pre        x + Attn(N(x)), then x + FFN(N(x))                   Llama, Qwen, Mistral, Phi-3, GPT-2
    sandwich   x + N_out(Attn(N_in(x))), same for the FFN           Gemma 2, Gemma 3
    post       x + N_out(Attn(x)), x + N_out(FFN(x)) (no input norm) OLMo 2
    post_residual  N(x + Attn(x)), then N(h + FFN(h)): the original     OPT-350m
               Transformer's post-norm; the residual stream is itself a norm's output
    parallel   x + Attn(N1(x)) + FFN(N2(x))                          GPT-NeoX / Pythia
               x + Attn(N(x)) + FFN(N(x)) (one norm)                 Phi-1/2

Adding a family: one `FamilyAdapter` in `ADAPTERS` below and one tiny-model test (README,
"Adding a model family").
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

README_SECTION = 'README section "Adding a model family"'
LINEAR_ATTENTION_REASON = "linear attention (Gated DeltaNet): no softmax, no attention map"


class UnsupportedArchitectureError(ValueError):
    """A model type without an adapter, or a model whose modules do not match its adapter."""


@dataclass(frozen=True)
class FFNParts:
    """Where the FFN's weights are, relative to the FFN module.

    kind: "gated" (down(act(gate(h)) * up(h)): SwiGLU / GeGLU), "mlp" (down(act(up(h))): GPT-2,
    NeoX) or "moe" (a router and experts; a layer whose FFN has no `experts` module is dense).
    `gate_up` names a fused [gate; up] projection (Phi-3). MoE experts hold stacked weights
    `gate_up_proj` (E, 2 d_ffn, d) and `down_proj` (E, d, d_ffn) (transformers 5).
    """

    kind: str = "gated"
    gate: str | None = "gate_proj"
    up: str | None = "up_proj"
    down: str | None = "down_proj"
    gate_up: str | None = None
    activation: str = "act_fn"  # attribute of the FFN (or experts) module holding the activation
    router: str | None = None
    experts: str | None = None
    shared_expert: str | None = None  # a dense gated FFN beside the experts (Qwen2-MoE)
    shared_expert_gate: str | None = None
    # why a gated FFN is not down(act(gate h) * up h), so that the analyses built on that form
    # (U_k, the SiLU regime) do not apply (GPT-OSS's clamped experts)
    not_gated_form: str | None = None


@dataclass(frozen=True)
class AttentionParts:
    """Where the attention's projections are, relative to the attention module.

    qkv_layout for a fused projection `qkv`: "stacked" (rows [q; k; v], Phi-3), "per_head"
    (rows per key/value head: its query heads, its key, its value; [q_h; k_h; v_h] per head
    without GQA, GPT-NeoX; [all q; k; v] with one key/value head, Falcon-7B) or "conv1d"
    (GPT-2's Conv1D, columns [q, k, v]).
    qk_norm_scope: "head" (a norm over each head's d_head, Qwen3 / Gemma 3) or "full" (over all
    heads at once, OLMo 2).
    """

    q: str | None = "q_proj"
    k: str | None = "k_proj"
    v: str | None = "v_proj"
    o: str = "o_proj"
    qkv: str | None = None
    qkv_layout: str | None = None
    q_norm: str | None = None
    k_norm: str | None = None
    qk_norm_scope: str | None = None
    # one learned logit per query head that joins every query's softmax and is dropped after it
    # (GPT-OSS): a sink by design, handed to the attention function as `s_aux`
    sinks: str | None = None
    # the factor of q . k where the attention module applies its own (GPT-Neo: 1, no 1/sqrt(d_head))
    scaling: float | None = None
    # a boolean buffer (1, 1, max_positions, max_positions) of the keys each query may see that
    # the module applies itself (GPT-Neo's causal and local-window `bias`)
    mask_buffer: str | None = None
    # an output gate in the query projection (Qwen3-Next): "per_head" when q's rows hold, per head,
    # its query (d_head rows) then its gate (d_head rows); the attention output is multiplied by
    # sigmoid(gate) before the output projection
    q_gate: str | None = None
    # ((Linear name, role), ...) inside a hybrid's linear-attention mixer (FamilyAdapter.linear_mixers):
    # the projections the activation-scale and quantisation analyses see there ("linear_in" reads the
    # normed residual, "linear_out" the mixer's own features)
    linear_roles: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class FamilyAdapter:
    name: str  # human-readable family name, e.g. "Gemma 3"
    model_types: tuple[str, ...]
    # module paths: the decoder stack inside the causal LM, and inside the decoder stack
    decoder: str = "model"  # dotted where the stack sits deeper (OPT: model.decoder)
    layers: str = "layers"
    embedding: str = "embed_tokens"
    final_norm: str | None = "norm"  # None: no norm after the last layer (OPT-350m's post-norm)
    # inside each decoder layer
    attention: str = "self_attn"
    # None: the FFN's parts sit on the decoder layer itself (OPT: fc1 / activation_fn / fc2); its
    # input is then the up projection's input and its output the down projection's output
    ffn: str | None = "mlp"
    attn_input_norm: str | None = "input_layernorm"
    attn_output_norm: str | None = None
    ffn_input_norm: str | None = "post_attention_layernorm"
    ffn_output_norm: str | None = None
    # true post-norm: a norm applied to the residual sum, x <- N(x + Attn(x)) (OPT-350m)
    attn_residual_norm: str | None = None
    ffn_residual_norm: str | None = None
    # the layer flattens (B, T, d) to (B * T, d) around its FFN (OPT): taps restore (B, T, d)
    flat_ffn: bool = False
    # True, or the name of the boolean config flag that turns the parallel residual on
    parallel_residual: bool | str = False
    norm_type: str = "rmsnorm"  # rmsnorm | layernorm
    # Gemma's RMSNorm multiplies by (1 + weight): the effective gain is offset + weight
    norm_gain_offset: float = 0.0
    ffn_parts: FFNParts = field(default_factory=FFNParts)
    attention_parts: AttentionParts = field(default_factory=AttentionParts)
    positions: str = "rotary"  # rotary | learned
    # Gemma multiplies the token embedding by sqrt(d_model) inside its embedding module
    embedding_scale: str | None = None
    # attention implementation the family runs on: sdpa, or eager where sdpa is unsupported
    base_attention: str = "sdpa"
    # False: the attention module computes its own softmax instead of calling transformers'
    # attention interface (GPT-Neo's `_attn`); the observers then see its query, key and value
    # through forward hooks on the q / k / v projections (instrumentation.attention)
    attention_interface: bool = True
    bos: str = "as the tokenizer adds it"
    # hybrid decoders (Qwen3-Next): ((layer type, module path, reason), ...) where a layer whose
    # config.layer_types entry is that type mixes tokens with that module instead of `attention`:
    # a block of the residual stream like any other, but no softmax and no attention map, so every
    # attention statistic of that layer is NaN with the reason
    linear_mixers: tuple[tuple[str, str, str], ...] = ()
    # the decoder layer adds into a sublayer's output tensor in place (Falcon: mlp_output +=
    # attention_output): taps hand on copies, or a kept state would change after the hook
    copy_states: bool = False
    # ((config flag, value), ...) -> field overrides: one model_type, several module layouts
    # (Falcon's decoder variants); every condition must hold (a tuple value: any of them),
    # later variants win
    variants: tuple[tuple[tuple[tuple[str, object], ...], tuple[tuple[str, object], ...]], ...] = ()
    # (config flag, reason): a config with that flag set is refused (a mechanism not reproduced)
    refuse: tuple[tuple[str, str], ...] = ()

    def for_config(self, config) -> FamilyAdapter:
        """This adapter with the overrides of every variant whose conditions `config` meets."""
        adapter = self
        for conditions, overrides in self.variants:
            if all(getattr(config, flag, None) in _any_of(value) for flag, value in conditions):
                adapter = replace(adapter, **dict(overrides))
        return adapter

    def norm_placement(self, config=None) -> str:
        """'pre', 'sandwich', 'post', 'post_residual' or 'parallel' (module docstring)."""
        if self.is_parallel(config):
            return "parallel"
        if self.attn_residual_norm:
            return "post_residual"
        if self.attn_output_norm and self.attn_input_norm:
            return "sandwich"
        if self.attn_output_norm:
            return "post"
        return "pre"

    def is_parallel(self, config=None) -> bool:
        if isinstance(self.parallel_residual, str):
            return bool(getattr(config, self.parallel_residual, False)) if config is not None else True
        return bool(self.parallel_residual)


def _any_of(value) -> tuple:
    return value if isinstance(value, tuple) else (value,)


ADAPTERS: tuple[FamilyAdapter, ...] = (
    FamilyAdapter("Llama", ("llama",)),
    FamilyAdapter("Mistral", ("mistral",)),
    FamilyAdapter("Qwen2", ("qwen2",)),
    FamilyAdapter(
        "Qwen3", ("qwen3",), attention_parts=AttentionParts(q_norm="q_norm", k_norm="k_norm", qk_norm_scope="head")
    ),
    # Llama blocks; every few layers skip rotary (NoPE): config.no_rope_layers, 0 = no rotary
    FamilyAdapter("SmolLM3", ("smollm3",), positions="rotary, NoPE layers"),
    FamilyAdapter("Gemma", ("gemma",), norm_gain_offset=1.0, embedding_scale="sqrt(d_model)", bos="BOS required"),
    FamilyAdapter(
        "Gemma 2",
        ("gemma2",),
        attn_output_norm="post_attention_layernorm",
        ffn_input_norm="pre_feedforward_layernorm",
        ffn_output_norm="post_feedforward_layernorm",
        norm_gain_offset=1.0,
        embedding_scale="sqrt(d_model)",
        base_attention="eager",  # logit soft-capping: transformers' sdpa path refuses it
        bos="BOS required",
    ),
    FamilyAdapter(
        "Gemma 3",
        ("gemma3_text",),
        attn_output_norm="post_attention_layernorm",
        ffn_input_norm="pre_feedforward_layernorm",
        ffn_output_norm="post_feedforward_layernorm",
        norm_gain_offset=1.0,
        attention_parts=AttentionParts(q_norm="q_norm", k_norm="k_norm", qk_norm_scope="head"),
        embedding_scale="sqrt(d_model)",
        bos="BOS required",
    ),
    FamilyAdapter(
        "OLMo 2",
        ("olmo2",),
        attn_input_norm=None,
        attn_output_norm="post_attention_layernorm",
        ffn_input_norm=None,
        ffn_output_norm="post_feedforward_layernorm",
        attention_parts=AttentionParts(q_norm="q_norm", k_norm="k_norm", qk_norm_scope="full"),
    ),
    FamilyAdapter(  # OLMo 2's blocks; three of every four layers slide (config.layer_types)
        "OLMo 3",
        ("olmo3",),
        attn_input_norm=None,
        attn_output_norm="post_attention_layernorm",
        ffn_input_norm=None,
        ffn_output_norm="post_feedforward_layernorm",
        attention_parts=AttentionParts(q_norm="q_norm", k_norm="k_norm", qk_norm_scope="full"),
    ),
    FamilyAdapter(
        "Phi-3",
        ("phi3",),
        ffn_parts=FFNParts(gate=None, up=None, gate_up="gate_up_proj", activation="activation_fn"),
        attention_parts=AttentionParts(q=None, k=None, v=None, qkv="qkv_proj", qkv_layout="stacked"),
    ),
    FamilyAdapter(  # Llama's module names, GPT-2's blocks: LayerNorm, GELU MLP, biases; sliding window
        "StarCoder2",
        ("starcoder2",),
        norm_type="layernorm",
        ffn_parts=FFNParts(kind="mlp", gate=None, up="c_fc", down="c_proj", activation="act"),
    ),
    FamilyAdapter(
        "GPT-2",
        ("gpt2",),
        decoder="transformer",
        layers="h",
        embedding="wte",
        final_norm="ln_f",
        attention="attn",
        attn_input_norm="ln_1",
        ffn_input_norm="ln_2",
        norm_type="layernorm",
        ffn_parts=FFNParts(kind="mlp", gate=None, up="c_fc", down="c_proj", activation="act"),
        attention_parts=AttentionParts(q=None, k=None, v=None, o="c_proj", qkv="c_attn", qkv_layout="conv1d"),
        positions="learned",
    ),
    FamilyAdapter(  # GPT-2's blocks with separate q/k/v; global and local (windowed) layers alternate
        "GPT-Neo",
        ("gpt_neo",),
        decoder="transformer",
        layers="h",
        embedding="wte",
        final_norm="ln_f",
        attention="attn.attention",
        attn_input_norm="ln_1",
        ffn_input_norm="ln_2",
        norm_type="layernorm",
        ffn_parts=FFNParts(kind="mlp", gate=None, up="c_fc", down="c_proj", activation="act"),
        # its own `_attn`: q . k unscaled, the causal / local window from its `bias` buffer
        attention_parts=AttentionParts(o="out_proj", scaling=1.0, mask_buffer="bias"),
        positions="learned",
        base_attention="eager",
        attention_interface=False,
    ),
    FamilyAdapter(
        "GPT-NeoX",
        ("gpt_neox",),
        decoder="gpt_neox",
        embedding="embed_in",
        final_norm="final_layer_norm",
        attention="attention",
        parallel_residual="use_parallel_residual",
        norm_type="layernorm",
        ffn_parts=FFNParts(kind="mlp", gate=None, up="dense_h_to_4h", down="dense_4h_to_h", activation="act"),
        attention_parts=AttentionParts(q=None, k=None, v=None, o="dense", qkv="query_key_value", qkv_layout="per_head"),
    ),
    FamilyAdapter(  # Phi-1 / Phi-1.5 / Phi-2: both sublayers read one LayerNorm, partial rotary
        "Phi",
        ("phi",),
        final_norm="final_layernorm",
        ffn_input_norm="input_layernorm",
        parallel_residual=True,
        norm_type="layernorm",
        ffn_parts=FFNParts(kind="mlp", gate=None, up="fc1", down="fc2", activation="activation_fn"),
        attention_parts=AttentionParts(o="dense"),
    ),
    FamilyAdapter(  # Falcon-7B as the base: one shared LayerNorm, multi-query fused qkv
        "Falcon",
        ("falcon",),
        decoder="transformer",
        layers="h",
        embedding="word_embeddings",
        final_norm="ln_f",
        attention="self_attention",
        ffn_input_norm="input_layernorm",
        parallel_residual=True,
        norm_type="layernorm",
        ffn_parts=FFNParts(kind="mlp", gate=None, up="dense_h_to_4h", down="dense_4h_to_h", activation="act"),
        attention_parts=AttentionParts(q=None, k=None, v=None, o="dense", qkv="query_key_value", qkv_layout="per_head"),
        copy_states=True,
        variants=(
            # Falcon-40B / 180B: a norm per sublayer (Falcon 2 11B keeps one: num_ln_in_parallel_attn 1)
            # (None: the default, which the decoder layers set to 2 when they are built)
            (
                (("new_decoder_architecture", True), ("num_ln_in_parallel_attn", (2, None))),
                (("attn_input_norm", "ln_attn"), ("ffn_input_norm", "ln_mlp")),
            ),
            # Falcon-RW style: sequential pre-norm blocks
            (
                (("new_decoder_architecture", False), ("parallel_attn", False)),
                (("ffn_input_norm", "post_attention_layernorm"), ("parallel_residual", False)),
            ),
        ),  # fmt: skip
        refuse=(
            (
                "alibi",
                "ALiBi adds a per-head position bias to the attention scores, which the attention "
                "statistics do not reproduce",
            ),
        ),  # fmt: skip
    ),
    FamilyAdapter(  # OPT-125m / 1.3b / ...: pre-norm LayerNorm blocks, learned positions (offset 2)
        "OPT",
        ("opt",),
        decoder="model.decoder",
        final_norm="final_layer_norm",
        ffn=None,
        attn_input_norm="self_attn_layer_norm",
        ffn_input_norm="final_layer_norm",
        norm_type="layernorm",
        ffn_parts=FFNParts(kind="mlp", gate=None, up="fc1", down="fc2", activation="activation_fn"),
        attention_parts=AttentionParts(o="out_proj"),  # q is scaled before the attention function
        positions="learned",
        flat_ffn=True,
        variants=(
            # OPT-350m: LayerNorm after each residual add, no final norm (project_in / project_out
            # map its 512-wide embeddings to the 1024-wide stream and back)
            (
                (("do_layer_norm_before", False),),
                (
                    ("attn_input_norm", None),
                    ("ffn_input_norm", None),
                    ("attn_residual_norm", "self_attn_layer_norm"),
                    ("ffn_residual_norm", "final_layer_norm"),
                    ("final_norm", None),
                ),
            ),
        ),
    ),
    FamilyAdapter(  # sliding and full attention alternate (config.layer_types)
        "GPT-OSS",
        ("gpt_oss",),
        ffn_parts=FFNParts(
            kind="moe",
            gate=None,
            up=None,
            down=None,
            router="router",
            experts="experts",
            not_gated_form="experts compute (clamp(up h) + 1) * clamp(gate h) * sigmoid(alpha * clamp(gate h)) "
            "with biases, not down(act(gate h) * up h)",
        ),
        attention_parts=AttentionParts(sinks="sinks"),
        base_attention="eager",  # transformers' sdpa path has no learned sink logits
    ),
    FamilyAdapter(
        "Mixtral",
        ("mixtral",),
        ffn_parts=FFNParts(kind="moe", gate=None, up=None, down=None, router="gate", experts="experts"),
    ),
    FamilyAdapter(
        "Qwen2-MoE",
        ("qwen2_moe",),
        ffn_parts=FFNParts(
            kind="moe",
            router="gate",
            experts="experts",
            shared_expert="shared_expert",
            shared_expert_gate="shared_expert_gate",
        ),  # fmt: skip
    ),
    FamilyAdapter(
        "Qwen3-MoE",
        ("qwen3_moe",),
        ffn_parts=FFNParts(kind="moe", router="gate", experts="experts"),
        attention_parts=AttentionParts(q_norm="q_norm", k_norm="k_norm", qk_norm_scope="head"),
    ),
    FamilyAdapter(  # hybrid: Gated DeltaNet layers, and every few layers gated softmax attention
        "Qwen3-Next",
        ("qwen3_next",),
        norm_gain_offset=1.0,  # Qwen3NextRMSNorm: x * (1 + weight)
        ffn_parts=FFNParts(
            kind="moe",
            router="gate",
            experts="experts",
            shared_expert="shared_expert",
            shared_expert_gate="shared_expert_gate",
        ),  # fmt: skip
        attention_parts=AttentionParts(
            q_norm="q_norm",
            k_norm="k_norm",
            qk_norm_scope="head",
            q_gate="per_head",
            linear_roles=(("in_proj_qkvz", "linear_in"), ("in_proj_ba", "linear_in"), ("out_proj", "linear_out")),
        ),
        linear_mixers=(("linear_attention", "linear_attn", LINEAR_ATTENTION_REASON),),
    ),
    FamilyAdapter(  # Qwen3.5's text decoder: Qwen3-Next's hybrid layers with a dense SwiGLU FFN
        "Qwen3.5",
        ("qwen3_5_text",),
        norm_gain_offset=1.0,  # Qwen3_5RMSNorm: x * (1 + weight)
        attention_parts=AttentionParts(
            q_norm="q_norm",
            k_norm="k_norm",
            qk_norm_scope="head",
            q_gate="per_head",
            linear_roles=(
                ("in_proj_qkv", "linear_in"),
                ("in_proj_z", "linear_in"),
                ("in_proj_b", "linear_in"),
                ("in_proj_a", "linear_in"),
                ("out_proj", "linear_out"),
            ),
        ),
        linear_mixers=(("linear_attention", "linear_attn", LINEAR_ATTENTION_REASON),),
    ),
)

BY_MODEL_TYPE: dict[str, FamilyAdapter] = {t: a for a in ADAPTERS for t in a.model_types}
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(BY_MODEL_TYPE)

# llama.cpp's general.architecture -> transformers model_type, where they differ
GGUF_ARCHITECTURES = {"gemma3": "gemma3_text", "qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe"}


def unsupported_message(model_type) -> str:
    return (
        f"model_type {model_type!r} has no family adapter; supported: {', '.join(SUPPORTED_MODEL_TYPES)}. "
        f"To add one, see the {README_SECTION}"
    )


def adapter_for(config_or_type) -> FamilyAdapter:
    """The adapter of a transformers config (or a model_type string); raises for unknown types."""
    model_type = (
        config_or_type
        if isinstance(config_or_type, str) or config_or_type is None
        else getattr(config_or_type, "model_type", None)
    )
    adapter = BY_MODEL_TYPE.get(model_type)
    if adapter is None:
        raise UnsupportedArchitectureError(unsupported_message(model_type))
    if isinstance(config_or_type, str) or config_or_type is None:
        return adapter
    for flag, reason in adapter.refuse:
        if getattr(config_or_type, flag, None):
            raise UnsupportedArchitectureError(
                f"{adapter.name} with {flag}={getattr(config_or_type, flag)!r}: {reason}"
            )
    return adapter.for_config(config_or_type)


def model_type_of_gguf(architecture: str) -> str:
    """The transformers model_type a GGUF's `general.architecture` loads as."""
    return GGUF_ARCHITECTURES.get(architecture, architecture)
