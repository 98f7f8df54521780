"""What every model source shares: the error type, config-key naming, the model-type check and
the file patterns of a Hugging Face model directory."""

from __future__ import annotations

from spikesink.instrumentation.families import BY_MODEL_TYPE, unsupported_message

SOURCES = ("pypi_gguf", "local", "random", "planted", "hub")
MANIFEST = "manifest.json"
# Hub repositories that need an accepted licence and a token; checked before any download so
# the failure is immediate and says what to do. A spec can also say `gated: true` itself.
GATED_PREFIXES = ("meta-llama/",)
HUB_PATTERNS = ["*.safetensors", "*.json", "tokenizer*", "*.model"]
# Files of a Hugging Face model directory that are copied; weights are safetensors only.
MODEL_FILE_PATTERNS = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "*.model",
    "chat_template.json",
    "chat_template.jinja",
)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
PROBE_TEXT = "The quick brown fox jumps over the lazy dog. Massive activations live at token 0."


class ModelSourceError(ValueError):
    """A model spec that cannot be acquired; the message names the config key and the fix."""


def key(name: str, field: str) -> str:
    """The config key a message points at, e.g. `models.smollm2.sha256`."""
    return f"models.{name}.{field}"


def check_model_type(name: str, model_type: str | None, field: str) -> None:
    """Fail before any expensive step when no family adapter describes this model type."""
    if model_type not in BY_MODEL_TYPE:
        raise ModelSourceError(f"{key(name, field)}: {unsupported_message(model_type)}")
