"""Where the blocks of a Llama-style pre-norm decoder live, and the paper's block numbering.

A model with L decoder layers has 2L blocks numbered from 1: block 2l-1 is the attention block
of layer l and block 2l its feed-forward block (paper, Section 3). Everything that hooks a model
goes through `decoder_layers` so that a family with other module names fails here, loudly,
instead of producing empty statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# Families whose decoder layer is x + Attn(RMSNorm(x)) then x + SwiGLU(RMSNorm(x)) with the
# module names used below. Families with sandwich norms (Gemma 2/3, OLMo 2) are excluded on
# purpose: their post_attention_layernorm normalises the block output, not the residual.
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


class UnsupportedArchitectureError(ValueError):
    pass


@dataclass(frozen=True)
class LayerModules:
    index: int  # 0-based decoder layer
    layer: nn.Module
    input_norm: nn.Module  # RMSNorm before attention
    attention: nn.Module
    post_attention_norm: nn.Module  # RMSNorm before the FFN; its *input* is the post-attention residual
    mlp: nn.Module

    @property
    def attention_block(self) -> int:
        return 2 * self.index + 1

    @property
    def ffn_block(self) -> int:
        return 2 * self.index + 2


def check_supported(config) -> None:
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedArchitectureError(
            f"model_type {model_type!r} is not a supported Llama-style pre-norm decoder; "
            f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )


def base_model(model: nn.Module) -> nn.Module:
    """The decoder stack (the `model` attribute of a *ForCausalLM, or the model itself)."""
    check_supported(model.config)
    inner = getattr(model, "model", model)
    if not hasattr(inner, "layers"):
        raise UnsupportedArchitectureError(f"{type(model).__name__} has no decoder `layers` list")
    return inner


def decoder_layers(model: nn.Module) -> list[LayerModules]:
    check_supported(model.config)
    layers = []
    for index, layer in enumerate(base_model(model).layers):
        missing = [
            name
            for name in ("input_layernorm", "self_attn", "post_attention_layernorm", "mlp")
            if not hasattr(layer, name)
        ]
        if missing:
            raise UnsupportedArchitectureError(
                f"decoder layer {index} ({type(layer).__name__}) lacks {', '.join(missing)}"
            )
        layers.append(
            LayerModules(
                index=index,
                layer=layer,
                input_norm=layer.input_layernorm,
                attention=layer.self_attn,
                post_attention_norm=layer.post_attention_layernorm,
                mlp=layer.mlp,
            )
        )
    return layers


def n_blocks(model: nn.Module) -> int:
    return 2 * len(base_model(model).layers)


def block_kind(block: int) -> str:
    """'attn' for odd (attention) blocks, 'ffn' for even (feed-forward) blocks; 1-based."""
    return "attn" if block % 2 == 1 else "ffn"


def block_layer(block: int) -> int:
    """0-based decoder layer that holds a 1-based block."""
    return (block - 1) // 2


def first_tensor(output) -> torch.Tensor:
    """Decoder layers and attention modules return a tensor or a tuple led by one."""
    return output[0] if isinstance(output, (tuple, list)) else output


def rms_norm_eps(norm: nn.Module) -> float:
    for name in ("variance_epsilon", "eps"):
        if hasattr(norm, name):
            return float(getattr(norm, name))
    raise UnsupportedArchitectureError(f"{type(norm).__name__} exposes no epsilon")
