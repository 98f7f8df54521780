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
