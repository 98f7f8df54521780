"""A deterministic byte-level tokenizer for tiny test models, built locally with no download.

Random test models need *a* tokenizer that round-trips any text and has a stable, known vocabulary:
ids 0..255 are the 256 bytes (so id == byte value), followed by the special tokens. There are no
merges, so every byte is one token: sequence lengths are predictable and no training corpus is
needed. The byte symbols are GPT-2's printable spelling of bytes, which is what the `ByteLevel`
pre-tokenizer and decoder of the `tokenizers` library expect.

Whether a BOS token is prepended is a switch (a `TemplateProcessing` post-processor), because
attention-sink results depend on what sits at position 0 and tests must cover both cases.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

BOS_TOKEN = "<|bos|>"
EOS_TOKEN = "<|endoftext|>"  # GPT-2's name: tokenizer classes that add it by default find it present
N_BYTES = 256
# Specials follow the bytes, in this order: ids 256 and 257.
SPECIAL_TOKENS = (BOS_TOKEN, EOS_TOKEN)


def byte_symbols() -> list[str]:
    """GPT-2's printable character for each byte value, indexed by byte.

    Printable Latin-1 bytes stand for themselves; the others are shifted to code points >= 256 so
    that every symbol is a visible, non-whitespace character (the `ByteLevel` convention).
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    symbols: dict[int, str] = {byte: chr(byte) for byte in printable}
    shift = 0
    for byte in range(N_BYTES):
        if byte not in symbols:
            symbols[byte] = chr(N_BYTES + shift)
            shift += 1
    return [symbols[byte] for byte in range(N_BYTES)]


def byte_vocab() -> dict[str, int]:
    """Symbol -> id: the 256 bytes first (id == byte value), then the special tokens."""
    vocab = {symbol: byte for byte, symbol in enumerate(byte_symbols())}
    for offset, token in enumerate(SPECIAL_TOKENS):
        vocab[token] = N_BYTES + offset
    return vocab


def byte_tokenizer_size() -> int:
    """Number of ids the byte tokenizer can emit; a model's vocab_size must be at least this."""
    return N_BYTES + len(SPECIAL_TOKENS)


def build_byte_tokenizer(add_bos: bool = True) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with no merges, wrapped for transformers.

    `add_bos=True` prepends `<|bos|>` (id 256) to every encoded sequence, like Llama tokenizers;
    `add_bos=False` leaves position 0 to the first text byte, like Qwen and SmolLM2 tokenizers.
    The BOS token is in the vocabulary either way, so the vocabulary size does not depend on it.
    """
    vocab = byte_vocab()
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False, byte_fallback=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    if add_bos:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{BOS_TOKEN} $A",
            pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B",
            special_tokens=[(BOS_TOKEN, vocab[BOS_TOKEN])],
        )
    else:
        # Explicit no-op, so that saving and reloading cannot fall back to a model-specific default.
        backend.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B", special_tokens=[])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=1 << 20,
        clean_up_tokenization_spaces=False,
    )
