"""Sources random and planted: tiny models built locally from a config and a seed (tests), or
with a spike planted at known blocks and channels (ground truth for every detector)."""

from __future__ import annotations

from pathlib import Path

from spikesink.acquisition.spec import ModelSourceError, check_model_type, key


def build_random(name: str, spec: dict, staged: Path, cache_dir: Path) -> dict:
    """A small model with seeded random weights and the local byte tokenizer.

    The global torch RNG is forked, so building a model does not shift the random stream of the
    caller; the same (model_type, config, seed) gives bit-identical weights.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from spikesink.acquisition.tokenizer_bytes import build_byte_tokenizer

    model_type = spec.get("model_type")
    check_model_type(name, model_type, "model_type")
    if spec.get("tokenizer", "bytes") != "bytes":
        raise ModelSourceError(f"{key(name, 'tokenizer')} must be 'bytes' for source 'random'")
    seed = spec.get("seed")
    if not isinstance(seed, int):
        raise ModelSourceError(f"{key(name, 'seed')} must be an integer for source 'random'")
    add_bos = bool(spec.get("add_bos", True))
    tokenizer = build_byte_tokenizer(add_bos=add_bos)
    overrides = dict(spec.get("config") or {})
    overrides.setdefault("bos_token_id", tokenizer.bos_token_id)
    overrides.setdefault("eos_token_id", tokenizer.eos_token_id)
    overrides.setdefault("pad_token_id", tokenizer.pad_token_id)
    try:
        config = AutoConfig.for_model(model_type, **overrides)
    except (TypeError, ValueError) as error:
        raise ModelSourceError(f"{key(name, 'config')}: {error}") from None
    if config.vocab_size < len(tokenizer):
        raise ModelSourceError(
            f"{key(name, 'config.vocab_size')} is {config.vocab_size} but the byte tokenizer has "
            f"{len(tokenizer)} ids; set it to at least {len(tokenizer)}"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(staged)
    tokenizer.save_pretrained(staged)
    return {
        "model_type": model_type,
        "seed": seed,
        "config": overrides,
        "tokenizer": "bytes",
        "add_bos": add_bos,
    }


def build_planted(name: str, spec: dict, staged: Path, cache_dir: Path) -> dict:
    """The planted Llama of spikesink.acquisition.planted with the spec's build arguments."""
    from spikesink.acquisition.planted import save_planted_into

    params = spec.get("planted")
    if not isinstance(params, dict):
        raise ModelSourceError(f"{key(name, 'planted')} must be a mapping of build_planted_llama arguments")
    try:
        manifest = save_planted_into(staged, **params)
    except TypeError as error:
        raise ModelSourceError(f"{key(name, 'planted')}: {error}") from None
    return {"builder": manifest["builder"], "params": manifest["params"], "planted": manifest["planted"]}
