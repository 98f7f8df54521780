"""A family adapter resolved against a loaded model: modules, weights and switches.

`model_layout(model)` is the one place that knows where a model's parts are. It resolves the
adapter's module paths once and fails with the full module path when a module is missing or a
weight has an unexpected shape, so an analysis never runs on a half-matched model and never
reports zeros for parts it could not find. Weights come out in one standard layout, float32:
Linear-style (out, in) matrices, q/k/v/o split per role, FFN gate/up/down per expert.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .blocks import block_kind, block_layer
from .families import FamilyAdapter, UnsupportedArchitectureError, adapter_for


class LayoutError(UnsupportedArchitectureError):
    """The model's modules do not match its family adapter (the message names the module path)."""


class NotApplicable(Exception):
    """An analysis that does not apply to this model; the message is the reason shown as 'n/a'."""


@dataclass(frozen=True)
class LayerView:
    """The resolved modules of one decoder layer (norms are None where the family has none)."""

    index: int  # 0-based
    path: str  # e.g. "model.layers.3"
    layer: nn.Module
    attention: nn.Module
    ffn: nn.Module
    attn_input_norm: nn.Module | None
    attn_output_norm: nn.Module | None
    ffn_input_norm: nn.Module | None
    ffn_output_norm: nn.Module | None
    parallel: bool
    moe: bool
    # true post-norm (OPT-350m): the norms applied to x + Attn(x) and to h + FFN(h)
    attn_residual_norm: nn.Module | None = None
    ffn_residual_norm: nn.Module | None = None
    # where the FFN's input and output are seen: the FFN module, or its up / down projections
    # when the FFN has no module of its own (OPT)
    ffn_entry: nn.Module | None = None
    ffn_exit: nn.Module | None = None
    # a hybrid decoder's layer that mixes tokens without softmax attention (Qwen3-Next's Gated
    # DeltaNet): `attention` is that mixer, and this says why no attention statistic applies
    no_softmax: str | None = None
    attention_path: str = "self_attn"  # the token mixer's path inside the layer

    @property
    def softmax(self) -> bool:
        return self.no_softmax is None

    @property
    def attention_block(self) -> int:
        return 2 * self.index + 1

    @property
    def ffn_block(self) -> int:
        return 2 * self.index + 2


@dataclass
class AttentionWeights:
    """One attention module's projections as (out, in) float32 matrices; biases may be None."""

    q: torch.Tensor  # (H * D, d)
    k: torch.Tensor  # (H_kv * D, d)
    v: torch.Tensor  # (H_kv * D, d)
    o: torch.Tensor  # (d, H * D)
    q_bias: torch.Tensor | None
    k_bias: torch.Tensor | None
    v_bias: torch.Tensor | None
    o_bias: torch.Tensor | None
    n_heads: int
    n_kv_heads: int
    head_dim: int
    # the output gate's rows of the query projection (Qwen3-Next): the attention output of head h is
    # multiplied by sigmoid(gate_h n + gate_bias_h) before o; None without an output gate
    gate: torch.Tensor | None = None  # (H * D, d)
    gate_bias: torch.Tensor | None = None


@dataclass
class GatedFFNWeights:
    """down(act(gate h) * up h) as float32 (out, in) matrices, one expert or a dense FFN."""

    gate: torch.Tensor  # (d_ffn, d)
    up: torch.Tensor  # (d_ffn, d)
    down: torch.Tensor  # (d, d_ffn)
    expert: str  # "dense", "shared" or the expert index as a string


def linear_weight(module: nn.Module, path: str = "?") -> tuple[torch.Tensor, torch.Tensor | None]:
    """(W (out, in), b) float32 of an nn.Linear or a GPT-2 Conv1D (which stores W as (in, out))."""
    weight = getattr(module, "weight", None)
    if weight is None or weight.dim() != 2:
        raise LayoutError(f"{path} ({type(module).__name__}) has no 2-D weight")
    bias = getattr(module, "bias", None)
    w = weight.detach().float()
    if type(module).__name__ == "Conv1D":
        w = w.T
    return w, None if bias is None else bias.detach().float()


def _has(root: nn.Module, dotted: str) -> bool:
    try:
        _get(root, dotted)
    except AttributeError:
        return False
    return True


def _get(root: nn.Module, dotted: str):
    for part in dotted.split("."):
        root = getattr(root, part)
    return root


def _find(root: nn.Module, dotted: str, path: str, role: str, model_type: str) -> nn.Module:
    module = root
    for part in dotted.split("."):
        if not hasattr(module, part):
            raise LayoutError(
                f"{path}.{dotted} ({role}) does not exist in this {model_type!r} model "
                f"({type(root).__name__}); the family adapter does not match its modules"
            )
        module = getattr(module, part)
    return module


class ModelLayout:
    """Resolved adapter of one model. Build it with `model_layout(model)` (cached per model)."""

    def __init__(self, model: nn.Module):
        config = model.config
        self.model = model
        self.config = config
        self.adapter: FamilyAdapter = adapter_for(config)
        self.model_type = str(config.model_type)
        a = self.adapter
        if _has(model, a.decoder):
            self.decoder, self.decoder_path = _get(model, a.decoder), a.decoder
        elif hasattr(model, a.layers):  # the decoder stack itself was passed
            self.decoder, self.decoder_path = model, ""
        else:
            raise LayoutError(f"{type(model).__name__} has no decoder stack `{a.decoder}` ({self.model_type!r})")
        prefix = f"{self.decoder_path}." if self.decoder_path else ""
        layers = _find(
            self.decoder, a.layers, self.decoder_path or type(model).__name__, "decoder layers", self.model_type
        )
        self.embedding = _find(self.decoder, a.embedding, self.decoder_path, "token embedding", self.model_type)
        self.final_norm = (
            None
            if a.final_norm is None
            else _find(self.decoder, a.final_norm, self.decoder_path, "final norm", self.model_type)
        )
        parallel = a.is_parallel(config)
        self.layers: list[LayerView] = []
        for index, layer in enumerate(layers):
            path = f"{prefix}{a.layers}.{index}"

            def get(name, role, required=True, layer=layer, path=path):
                if name is None:
                    return None
                return _find(layer, name, path, role, self.model_type)

            ffn = layer if a.ffn is None else get(a.ffn, "feed-forward")
            moe = a.ffn_parts.kind == "moe" and hasattr(ffn, a.ffn_parts.experts or "")
            inline = a.ffn is None  # the FFN's parts on the layer itself: seen at its projections
            entry = get(a.ffn_parts.up or a.ffn_parts.gate_up, "FFN input projection") if inline else ffn
            exit_ = get(a.ffn_parts.down, "FFN output projection") if inline else ffn
            mixer, no_softmax = self._mixer(index)
            self.layers.append(
                LayerView(
                    index=index,
                    path=path,
                    layer=layer,
                    attention=get(mixer, "attention" if no_softmax is None else "token mixer"),
                    ffn=ffn,
                    attn_input_norm=get(a.attn_input_norm, "attention input norm"),
                    attn_output_norm=get(a.attn_output_norm, "attention output norm"),
                    ffn_input_norm=get(a.ffn_input_norm, "FFN input norm"),
                    ffn_output_norm=get(a.ffn_output_norm, "FFN output norm"),
                    parallel=parallel,
                    moe=moe,
                    attn_residual_norm=get(a.attn_residual_norm, "attention residual norm"),
                    ffn_residual_norm=get(a.ffn_residual_norm, "FFN residual norm"),
                    ffn_entry=entry,
                    ffn_exit=exit_,
                    no_softmax=no_softmax,
                    attention_path=mixer,
                )
            )
        if not self.layers:
            raise LayoutError(f"{prefix}{a.layers} is empty")
        if not self.softmax_layers:
            raise LayoutError(f"{self.model_type!r}: no layer attends through softmax attention")
        if a.attention_parts.sinks:  # a sink by design: without its logits the softmax would differ
            for lv in self.layers:
                where = f"{lv.path}.{a.attention}"
                sinks = getattr(lv.attention, a.attention_parts.sinks, None)
                if not isinstance(sinks, torch.Tensor) or sinks.numel() != self.n_heads:
                    raise LayoutError(
                        f"{where}.{a.attention_parts.sinks} (learned sink logits, one per head) is missing or does "
                        f"not hold {self.n_heads} values: a {self.model_type!r} model attends through them"
                    )

    def _mixer(self, index: int) -> tuple[str, str | None]:
        """(path of layer `index`'s token mixer, why it has no softmax attention or None)."""
        if not self.adapter.linear_mixers:
            return self.adapter.attention, None
        layer_types = getattr(self.config, "layer_types", None)
        if layer_types is None or len(layer_types) <= index:
            raise LayoutError(f"{self.model_type!r}: config.layer_types does not name layer {index}'s token mixer")
        for layer_type, path, reason in self.adapter.linear_mixers:
            if layer_types[index] == layer_type:
                return path, reason
        return self.adapter.attention, None

    # ---- shape ------------------------------------------------------------------------------

    @property
    def softmax_layers(self) -> list[int]:
        """0-based layers that attend through softmax attention (all but a hybrid's linear layers)."""
        return [lv.index for lv in self.layers if lv.softmax]

    def no_softmax_reason(self, layer: int) -> str | None:
        """Why layer `layer` (0-based) has no attention map (None when it has one)."""
        return self.layers[layer].no_softmax

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_blocks(self) -> int:
        return 2 * len(self.layers)

    @property
    def d_model(self) -> int:
        return int(self.config.hidden_size)

    @property
    def n_heads(self) -> int:
        return int(self.config.num_attention_heads)

    @property
    def n_kv_heads(self) -> int:
        return int(getattr(self.config, "num_key_value_heads", None) or self.n_heads)

    @property
    def head_dim(self) -> int:
        return int(getattr(self.config, "head_dim", None) or self.d_model // self.n_heads)

    @property
    def norm_placement(self) -> str:
        return self.adapter.norm_placement(self.config)

    def layer_of(self, block: int) -> LayerView:
        if not 1 <= block <= self.n_blocks:
            raise ValueError(f"block {block} is outside 1..{self.n_blocks}")
        return self.layers[block_layer(block)]

    # ---- FFN --------------------------------------------------------------------------------

    @property
    def activation_name(self) -> str:
        for name in ("hidden_activation", "hidden_act", "activation_function", "activation"):
            value = getattr(self.config, name, None)
            if isinstance(value, str):
                return value
        return "unknown"

    @property
    def gated(self) -> bool:
        return self.not_gated_reason is None

    @property
    def not_gated_reason(self) -> str | None:
        """Why the FFN is not down(act(gate h) * up h) (None when it is): U_k and the SiLU regime need it."""
        parts = self.adapter.ffn_parts
        if parts.kind not in ("gated", "moe"):
            return f"{self.ffn_kind}: no gate x = W_gate h"
        return f"{self.ffn_kind}: {parts.not_gated_form}" if parts.not_gated_form else None

    @property
    def ffn_kind(self) -> str:
        """'SwiGLU', 'GeGLU', 'GELU MLP' or 'MoE (E experts, top-k, SwiGLU)'."""
        act = self.activation_name
        glu = "SwiGLU" if act == "silu" else "GeGLU" if act.startswith("gelu") else f"gated {act}"
        kind = self.adapter.ffn_parts.kind
        if kind == "mlp":
            return "GELU MLP" if act.startswith("gelu") else f"{act} MLP"
        if kind == "moe":
            experts = getattr(self.config, "num_local_experts", None) or getattr(self.config, "num_experts", "?")
            top_k = getattr(self.config, "num_experts_per_tok", "?")
            shared = " + shared expert" if self.adapter.ffn_parts.shared_expert else ""
            return f"MoE ({experts} experts, top-{top_k}{shared}, {glu})"
        return glu

    def ffn_activation(self, block: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """The activation applied to the gate (gated FFN) or to fc_in (MLP) of an FFN block."""
        lv = self._ffn_layer(block)
        owner = (
            _find(lv.ffn, self.adapter.ffn_parts.experts, lv.path + ".mlp", "experts", self.model_type)
            if lv.moe
            else lv.ffn
        )
        act = getattr(owner, self.adapter.ffn_parts.activation, None)
        if act is None:
            raise LayoutError(
                f"{lv.path}.{self.adapter.ffn}.{self.adapter.ffn_parts.activation} (activation) does not exist"
            )
        return act

    def _ffn_layer(self, block: int) -> LayerView:
        if block_kind(block) != "ffn":
            raise ValueError(f"block {block} is not an FFN (even) block")
        return self.layer_of(block)

    def experts(self, block: int) -> list[str]:
        """Expert names of an FFN block: ['dense'] for a dense FFN, else '0'..'E-1' (+ 'shared')."""
        lv = self._ffn_layer(block)
        if not lv.moe:
            return ["dense"]
        parts = self.adapter.ffn_parts
        experts = _find(lv.ffn, parts.experts, f"{lv.path}.{self.adapter.ffn}", "experts", self.model_type)
        names = [str(e) for e in range(experts.gate_up_proj.shape[0])]
        return names + (["shared"] if parts.shared_expert and hasattr(lv.ffn, parts.shared_expert) else [])

    def gated_ffn_weights(self, block: int, expert: str = "dense") -> GatedFFNWeights:
        """gate, up, down of one FFN block (one expert of an MoE block), float32 (out, in)."""
        if not self.gated:
            raise NotApplicable(f"{self.not_gated_reason}: U_k = W_gate^T diag(w_k) W_up needs a gated FFN")
        lv = self._ffn_layer(block)
        parts = self.adapter.ffn_parts
        where = f"{lv.path}.{self.adapter.ffn}"
        if lv.moe and expert not in ("dense", "shared"):
            experts = _find(lv.ffn, parts.experts, where, "experts", self.model_type)
            e = int(expert)
            gate_up = experts.gate_up_proj[e].detach().float()
            gate, up = gate_up.chunk(2, dim=0)
            down = experts.down_proj[e].detach().float()
        else:
            module = lv.ffn
            if lv.moe:
                if expert != "shared":
                    raise ValueError(f"block {block} is an MoE block: pick an expert of {self.experts(block)}")
                module, where = (
                    _find(lv.ffn, parts.shared_expert, where, "shared expert", self.model_type),
                    f"{where}.{parts.shared_expert}",
                )
                gate, up, down = (
                    linear_weight(_find(module, n, where, r, self.model_type), f"{where}.{n}")[0]
                    for n, r in (("gate_proj", "gate"), ("up_proj", "up"), ("down_proj", "down"))
                )
            elif parts.gate_up:
                fused, _ = linear_weight(
                    _find(module, parts.gate_up, where, "fused gate/up", self.model_type), f"{where}.{parts.gate_up}"
                )
                gate, up = fused.chunk(2, dim=0)
                down, _ = linear_weight(
                    _find(module, parts.down, where, "down", self.model_type), f"{where}.{parts.down}"
                )
            else:
                gate, up, down = (
                    linear_weight(_find(module, n, where, r, self.model_type), f"{where}.{n}")[0]
                    for n, r in ((parts.gate, "gate"), (parts.up, "up"), (parts.down, "down"))
                )
        if gate.shape != up.shape or down.shape != (gate.shape[1], gate.shape[0]) or gate.shape[1] != self.d_model:
            raise LayoutError(
                f"{where}: gate {tuple(gate.shape)}, up {tuple(up.shape)}, down {tuple(down.shape)} do not form a "
                f"gated FFN of width d_model={self.d_model}"
            )
        return GatedFFNWeights(gate=gate, up=up, down=down, expert=expert)

    def ffn_biases(self, block: int) -> list[str]:
        """Names of the FFN projections that carry a bias (the quadratic form ignores them)."""
        lv = self._ffn_layer(block)
        if self.adapter.ffn is None:  # the FFN's projections on the layer itself (OPT)
            parts = self.adapter.ffn_parts
            names = [n for n in (parts.gate, parts.up, parts.gate_up, parts.down) if n]
            return [n for n in names if getattr(getattr(lv.layer, n), "bias", None) is not None]
        return [name for name, m in lv.ffn.named_modules() if getattr(m, "bias", None) is not None and name]

    # ---- attention --------------------------------------------------------------------------

    def attention_weights(self, layer: int) -> AttentionWeights:
        """q, k, v, o of one layer's attention in (out, in) layout, fused projections split (and
        an output gate's rows split from the query's)."""
        lv = self.layers[layer]
        if not lv.softmax:
            raise NotApplicable(f"layer {layer}: {lv.no_softmax}")
        parts = self.adapter.attention_parts
        where = f"{lv.path}.{lv.attention_path}"
        h, hkv, dh, d = self.n_heads, self.n_kv_heads, self.head_dim, self.d_model

        def lin(name, role):
            return linear_weight(_find(lv.attention, name, where, role, self.model_type), f"{where}.{name}")

        if parts.qkv is None:
            (q, qb), (k, kb), (v, vb) = lin(parts.q, "query"), lin(parts.k, "key"), lin(parts.v, "value")
        else:
            w, b = lin(parts.qkv, "fused qkv")
            if parts.qkv_layout == "per_head":  # per key/value head: its G query heads, key, value
                g = h // hkv
                if w.shape[0] != hkv * (g + 2) * dh:
                    raise LayoutError(f"{where}.{parts.qkv}: {w.shape[0]} rows, expected {hkv * (g + 2) * dh}")

                def split(t):
                    t = t.reshape(hkv, g + 2, dh, -1)
                    return (
                        t[:, :g].reshape(h * dh, -1),
                        t[:, g].reshape(hkv * dh, -1),
                        t[:, g + 1].reshape(hkv * dh, -1),
                    )

                q, k, v = split(w)
                qb, kb, vb = (None, None, None) if b is None else (x[:, 0] for x in split(b[:, None]))
            else:  # stacked rows [q; k; v] (Phi-3; GPT-2's Conv1D columns after the transpose)
                sizes = [h * dh, hkv * dh, hkv * dh]
                if w.shape[0] != sum(sizes):
                    raise LayoutError(f"{where}.{parts.qkv}: {w.shape[0]} rows, expected {sum(sizes)} = q + k + v")
                q, k, v = w.split(sizes, dim=0)
                qb, kb, vb = (None, None, None) if b is None else b.split(sizes)
        gate = gb = None
        if parts.q_gate == "per_head":  # rows per head: its query, then its gate

            def halves(t):
                if t.shape[0] != 2 * h * dh:
                    raise LayoutError(f"{where}.{parts.q}: {t.shape[0]} rows, expected {2 * h * dh} = query + gate")
                t = t.reshape(h, 2, dh, -1)
                return t[:, 0].reshape(h * dh, -1), t[:, 1].reshape(h * dh, -1)

            q, gate = halves(q)
            qb, gb = (None, None) if qb is None else (x[:, 0] for x in halves(qb[:, None]))
        o, ob = lin(parts.o, "output")
        expected = {"q": (h * dh, d), "k": (hkv * dh, d), "v": (hkv * dh, d), "o": (d, h * dh)}
        for name, tensor in (("q", q), ("k", k), ("v", v), ("o", o)):
            if tuple(tensor.shape) != expected[name]:
                raise LayoutError(f"{where}: {name} projection is {tuple(tensor.shape)}, expected {expected[name]}")
        return AttentionWeights(q, k, v, o, qb, kb, vb, ob, h, hkv, dh, gate, gb)

    def attention_features(self) -> dict:
        config = self.config
        parts = self.adapter.attention_parts
        layer_types = getattr(config, "layer_types", None)
        sliding = getattr(config, "sliding_window", None)
        return {
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
            "head_dim": self.head_dim,
            "gqa": self.n_kv_heads != self.n_heads,
            "qk_norm": parts.qk_norm_scope,
            "fused_qkv": parts.qkv_layout,
            "sliding_window": int(sliding)
            if sliding and (layer_types is None or "sliding_attention" in layer_types)
            else None,
            "sliding_layers": sum(t == "sliding_attention" for t in layer_types)
            if layer_types and sliding
            else (self.n_layers if sliding else 0),
            # layers that attend without rotary embeddings (SmolLM3's NoPE layers: flag 0)
            "nope_layers": sum(not flag for flag in getattr(config, "no_rope_layers", None) or ()),
            "learned_sinks": bool(parts.sinks),
            "output_gate": bool(parts.q_gate),
            # layers that mix tokens without softmax attention (Qwen3-Next's Gated DeltaNet)
            "linear_attention_layers": self.n_layers - len(self.softmax_layers),
            "logit_softcap": getattr(config, "attn_logit_softcapping", None),
            "final_logit_softcap": getattr(config, "final_logit_softcapping", None),
        }

    # ---- norms ------------------------------------------------------------------------------

    def norm_reading(self, block: int) -> nn.Module | None:
        """The norm that reads a block's post-residual state (None when no norm does, OLMo 2).

        After an attention block: the same layer's FFN input norm (none with a parallel residual,
        where the FFN reads the layer input). After an FFN block: the next layer's attention
        input norm, or the final norm after the last layer. With true post-norm (OPT-350m) the
        post-residual state is itself a norm's output, which the next block reads as it is: None.
        """
        lv = self.layer_of(block)
        if self.norm_placement == "post_residual":
            return None
        if block_kind(block) == "attn":
            return None if lv.parallel else lv.ffn_input_norm
        if lv.index + 1 < self.n_layers:
            return self.layers[lv.index + 1].attn_input_norm
        return self.final_norm

    def norm_gain(self, norm: nn.Module) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(effective gain g, bias b) of a norm, float32: its output is g * normalise(x) + b."""
        weight = getattr(norm, "weight", None)
        bias = getattr(norm, "bias", None)
        gain = None if weight is None else weight.detach().float() + self.adapter.norm_gain_offset
        return gain, None if bias is None else bias.detach().float()

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits (float32) of final hidden states (the decoder output, final norm included): the
        LM head, then the family's final logit soft-capping where the config has one (Gemma 2)."""
        head = self.model.get_output_embeddings()
        if head is None:
            raise LayoutError(f"{type(self.model).__name__} has no LM head (pass the *ForCausalLM model)")
        logits = head(hidden).float()
        cap = getattr(self.config, "final_logit_softcapping", None)
        return logits if not cap else torch.tanh(logits / cap) * cap

    def apply_norm(self, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """norm(x) computed from the norm's parameters (float32), without calling the module, so
        that its hooks (taps, edits) do not fire: what the model's norm would output for x."""
        gain, bias = self.norm_gain(norm)
        eps = next((float(getattr(norm, n)) for n in ("variance_epsilon", "eps") if hasattr(norm, n)), 0.0)
        x = x.float()
        if self.adapter.norm_type == "layernorm":
            x = x - x.mean(dim=-1, keepdim=True)
        out = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
        if gain is not None:
            out = out * gain.to(out.device)
        return out if bias is None else out + bias.to(out.device)

    def linear_modules(self) -> list[tuple[str, str, int, nn.Module]]:
        """(module path, role, block, module) of every Linear / Conv1D inside the decoder layers.

        Roles: q, k, v, qkv (fused), o for attention; gate, up, gate_up (fused), down for a gated
        FFN, fc_in / fc_out for an MLP; shared_* for an MoE shared expert. MoE experts keep their
        weights as stacked parameters (no Linear) and routers are not Linear: neither is listed.
        """
        a = self.adapter
        att, ffn = a.attention_parts, a.ffn_parts
        attention_roles = {att.q: "q", att.k: "k", att.v: "v", att.qkv: "qkv", att.o: "o"}
        linear_roles = dict(att.linear_roles)  # a hybrid's linear-attention mixer (Qwen3-Next)
        if ffn.kind == "mlp":
            ffn_roles = {ffn.up: "fc_in", ffn.down: "fc_out"}
        else:
            ffn_roles = {ffn.gate: "gate", ffn.up: "up", ffn.gate_up: "gate_up", ffn.down: "down"}
        out = []
        for lv in self.layers:
            for owner, prefix, roles, block in (
                (lv.attention, lv.attention_path, attention_roles if lv.softmax else linear_roles, lv.attention_block),
                (lv.ffn, a.ffn, ffn_roles, lv.ffn_block),
            ):
                for name, module in owner.named_modules():
                    if not name or not (isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"):
                        continue
                    leaf = name.split(".")[-1]
                    role = roles.get(leaf)
                    if ffn.shared_expert and name.startswith(ffn.shared_expert + "."):
                        role = "shared_" + {"gate_proj": "gate", "up_proj": "up", "down_proj": "down"}.get(leaf, leaf)
                    if role is None:
                        continue  # e.g. a shared-expert gate (one output), not an activation path we quantise
                    if owner is lv.layer and name.split(".")[0] != name:
                        continue  # an FFN on the layer itself (OPT): its own projections only
                    where = f"{lv.path}.{prefix}.{name}" if prefix else f"{lv.path}.{name}"
                    out.append((where, role, block, module))
        return out

    # ---- summary ----------------------------------------------------------------------------

    def describe(self) -> dict:
        """JSON-safe description: what the analyses and figures label a model with."""
        return {
            "family": self.adapter.name,
            "model_type": self.model_type,
            "n_layers": self.n_layers,
            "n_blocks": self.n_blocks,
            "d_model": self.d_model,
            "norm_placement": self.norm_placement,
            "norm_type": self.adapter.norm_type,
            "ffn_kind": self.ffn_kind,
            "gated_ffn": self.gated,
            "activation": self.activation_name,
            "positions": self.adapter.positions,
            "embedding_scale": self.adapter.embedding_scale,
            "attention": self.attention_features(),
            # a hybrid's layers without softmax attention (0-based) and why no attention statistic applies
            "no_softmax_layers": [lv.index for lv in self.layers if not lv.softmax],
            "no_softmax_reason": next((lv.no_softmax for lv in self.layers if not lv.softmax), None),
            "bos": self.adapter.bos,
        }


_LAYOUTS: weakref.WeakKeyDictionary[nn.Module, ModelLayout] = weakref.WeakKeyDictionary()


def model_layout(model: nn.Module) -> ModelLayout:
    """The resolved layout of `model` (built once per model object)."""
    layout = _LAYOUTS.get(model)
    if layout is None:
        layout = ModelLayout(model)
        _LAYOUTS[model] = layout
    return layout
