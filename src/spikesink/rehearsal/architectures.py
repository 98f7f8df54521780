"""The paper's seven architectures, shrunk: tiny hub repositories that load exactly as the real ones.

Each entry holds the real model's published config.json (Appendix C, Table 10 models; the values
of the hub's config files) and how its repository looks. `tiny_config` keeps everything that
decides how the pipeline treats the model — model_type, head_dim (128), the query / KV head
ratio, RoPE base and scaling, norm epsilon, vocabulary size, tied or untied embeddings, BOS and
EOS ids, position range — and divides the width by 16 and the depth by 8. `build_repo` writes a
repository of that shape: the config in the hub's (pre-transformers-5) key format, seeded random
weights in the published dtype and shard layout, a tokenizer of the real length and BOS
convention, the files the acquisition must skip (pickles, original/ checkpoints) and a README.

What it cannot rehearse: the real weights' spikes (random weights have none), the real
tokenizers' merges (a BPE trained on the given text, padded with unreachable filler entries to
the real length), and the real sizes' memory and time (README, "Running the paper's models").
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

WIDTH_DIVISOR = 16
DEPTH_DIVISOR = 8
HEAD_DIM = 128  # every one of the seven models

_LLAMA2 = {
    "architectures": ["LlamaForCausalLM"],
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "initializer_range": 0.02,
    "max_position_embeddings": 4096,
    "model_type": "llama",
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "transformers_version": "4.31.0.dev0",
    "use_cache": True,
    "vocab_size": 32000,
}
_QWEN25 = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151643,
    "hidden_act": "silu",
    "initializer_range": 0.02,
    "max_position_embeddings": 131072,
    "model_type": "qwen2",
    "rope_theta": 1000000.0,
    "sliding_window": 131072,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 152064,
}
_QWEN3 = {
    "architectures": ["Qwen3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "head_dim": 128,
    "hidden_act": "silu",
    "initializer_range": 0.02,
    "max_position_embeddings": 40960,
    "model_type": "qwen3",
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.51.0",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}


@dataclass(frozen=True)
class Architecture:
    """One of the paper's models as its hub repository publishes it."""

    paper_model: str  # the paper's name (config `paper_model:`)
    repo_id: str  # the real hub repository
    config: dict  # its config.json
    tokenizer: str  # tokenizer family: llama2 (SentencePiece BPE, BOS), llama3 (byte BPE, BOS), qwen (byte BPE, no BOS)
    tokenizer_size: int  # len(tokenizer) of the real one (may be below vocab_size: padded embeddings)
    shards: int  # safetensors shards of the real checkpoint
    extra_files: tuple[str, ...] = field(default=())  # what the acquisition must not fetch


ARCHITECTURES = {
    "Llama-2-7B": Architecture(
        "Llama-2-7B",
        "meta-llama/Llama-2-7b-hf",
        _LLAMA2
        | dict(
            hidden_size=4096,
            intermediate_size=11008,
            num_attention_heads=32,
            num_hidden_layers=32,
            num_key_value_heads=32,
        ),
        "llama2",
        32000,
        2,
        ("pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin", "LICENSE.txt"),
    ),
    "Llama-2-13B": Architecture(
        "Llama-2-13B",
        "meta-llama/Llama-2-13b-hf",
        _LLAMA2
        | dict(
            hidden_size=5120,
            intermediate_size=13824,
            num_attention_heads=40,
            num_hidden_layers=40,
            num_key_value_heads=40,
        ),
        "llama2",
        32000,
        3,
        ("pytorch_model-00001-of-00003.bin", "LICENSE.txt"),
    ),
    "Llama-3-8B": Architecture(
        "Llama-3-8B",
        "meta-llama/Meta-Llama-3-8B",
        {
            "architectures": ["LlamaForCausalLM"],
            "attention_bias": False,
            "attention_dropout": 0.0,
            "bos_token_id": 128000,
            "eos_token_id": 128001,
            "hidden_act": "silu",
            "hidden_size": 4096,
            "initializer_range": 0.02,
            "intermediate_size": 14336,
            "max_position_embeddings": 8192,
            "model_type": "llama",
            "num_attention_heads": 32,
            "num_hidden_layers": 32,
            "num_key_value_heads": 8,
            "pretraining_tp": 1,
            "rms_norm_eps": 1e-05,
            "rope_scaling": None,
            "rope_theta": 500000.0,
            "tie_word_embeddings": False,
            "torch_dtype": "bfloat16",
            "transformers_version": "4.40.0.dev0",
            "use_cache": True,
            "vocab_size": 128256,
        },
        "llama3",
        128256,
        4,
        ("original/consolidated.00.pth", "original/params.json", "original/tokenizer.model", "LICENSE"),
    ),
    "Qwen2.5-7B": Architecture(
        "Qwen2.5-7B",
        "Qwen/Qwen2.5-7B",
        _QWEN25
        | dict(
            hidden_size=3584,
            intermediate_size=18944,
            max_window_layers=28,
            num_attention_heads=28,
            num_hidden_layers=28,
            num_key_value_heads=4,
            rms_norm_eps=1e-06,
            transformers_version="4.40.1",
            use_mrope=False,
        ),
        "qwen2",
        151665,
        4,
        ("LICENSE",),
    ),
    "Qwen2.5-14B": Architecture(
        "Qwen2.5-14B",
        "Qwen/Qwen2.5-14B",
        _QWEN25
        | dict(
            hidden_size=5120,
            intermediate_size=13824,
            max_window_layers=48,
            num_attention_heads=40,
            num_hidden_layers=48,
            num_key_value_heads=8,
            rms_norm_eps=1e-05,
            transformers_version="4.43.1",
        ),
        "qwen2",
        151665,
        8,
        ("LICENSE",),
    ),
    "Qwen3-8B": Architecture(
        "Qwen3-8B",
        "Qwen/Qwen3-8B",
        _QWEN3
        | dict(
            hidden_size=4096,
            intermediate_size=12288,
            max_window_layers=36,
            num_attention_heads=32,
            num_hidden_layers=36,
            num_key_value_heads=8,
        ),
        "qwen3",
        151669,
        5,
        ("LICENSE",),
    ),
    "Qwen3-14B": Architecture(
        "Qwen3-14B",
        "Qwen/Qwen3-14B",
        _QWEN3
        | dict(
            hidden_size=5120,
            intermediate_size=17408,
            max_window_layers=40,
            num_attention_heads=40,
            num_hidden_layers=40,
            num_key_value_heads=8,
        ),
        "qwen3",
        151669,
        8,
        ("LICENSE",),
    ),
}


def head_dim(config: dict) -> int:
    return int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])


def tiny_config(arch: Architecture) -> dict:
    """The published config with width / 16 and depth / 8; head_dim, the head ratio and the rest kept.

    KV heads shrink 8x (at least one) and query heads follow at the real ratio; head_dim stays
    128, so it is written explicitly (the Llama-2 files derive it from hidden_size / heads).
    """
    real = arch.config
    heads, kv_heads = real["num_attention_heads"], real.get("num_key_value_heads") or real["num_attention_heads"]
    ratio = heads // kv_heads
    small_kv = max(1, kv_heads // 8)
    tiny = dict(real)
    tiny.update(
        hidden_size=real["hidden_size"] // WIDTH_DIVISOR,
        intermediate_size=real["intermediate_size"] // WIDTH_DIVISOR,
        num_hidden_layers=math.ceil(real["num_hidden_layers"] / DEPTH_DIVISOR),
        num_attention_heads=small_kv * ratio,
        num_key_value_heads=small_kv,
        head_dim=head_dim(real),
    )
    if "max_window_layers" in tiny:
        tiny["max_window_layers"] = tiny["num_hidden_layers"]
    return dict(sorted(tiny.items()))


def build_repo(arch: Architecture, out_dir: Path, texts: Iterable[str], seed: int = 0) -> dict[str, Path]:
    """Write the tiny repository of `arch` into `out_dir`; return {path in repo: file}.

    Deterministic for a seed, the texts and the library versions, so its commit hash is too.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = tiny_config(arch)
    dtype = getattr(torch, config["torch_dtype"])
    hf_config = AutoConfig.for_model(**{k: v for k, v in config.items() if k not in ("architectures", "torch_dtype")})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(hf_config).to(dtype)
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    # the published number of shards (never more than one per ~1 MB)
    model.save_pretrained(out_dir, max_shard_size=max(size // arch.shards + 1, 1 << 20))
    # the hub's config.json, not transformers 5's rewrite of it: the acquisition must read the old format
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tokenizer_files = build_tokenizer(arch, out_dir, texts)
    files = {p.name: p for p in out_dir.iterdir() if p.is_file()}
    for extra in arch.extra_files:
        path = out_dir / extra
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"stand-in for {arch.repo_id}/{extra}: the acquisition must never fetch this\n".encode())
        files[extra] = path
    readme = out_dir / "README.md"
    readme.write_text(
        f"# {arch.repo_id}, shrunk for the spikesink rehearsal\n\nWidth / {WIDTH_DIVISOR}, depth / {DEPTH_DIVISOR}, "
        "random weights; the real model's config otherwise.\n"
    )
    files["README.md"] = readme
    assert set(tokenizer_files) <= set(files)
    return dict(sorted(files.items()))


# ---------------------------------------------------------------- tokenizers

LLAMA3_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# added tokens after the regular vocabulary, as the real tokenizers number them
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN3_THINK = ["<think>", "</think>"]


def build_tokenizer(arch: Architecture, out_dir: Path, texts: Iterable[str], core_size: int = 4000) -> list[str]:
    """A tokenizer of the real family, length and BOS convention; returns the files written.

    A BPE of `core_size` entries is trained on `texts`; the rest of the regular vocabulary is
    filled with unreachable entries, so every id of the real range exists (the vocabulary probe
    decodes all of them) and the special tokens sit at their real ids.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(texts)
    if arch.tokenizer == "llama2":
        specials = ["<unk>", "<s>", "</s>"]
        byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
        trainer_tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
        trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        trainer = trainers.BpeTrainer(vocab_size=core_size, special_tokens=specials + byte_tokens, show_progress=False)
        trainer_tok.train_from_iterator(texts, trainer)
        vocab, merges = _vocab_and_merges(trainer_tok)
        vocab = _fill(vocab, arch.tokenizer_size, lambda i: f"<filler_{i}>")
        tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Sequence(
            [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
        )
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
        )
        tok.add_special_tokens(specials)
        named = dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", tokenizer_class="LlamaTokenizer")
    else:
        split = LLAMA3_SPLIT if arch.tokenizer == "llama3" else QWEN_SPLIT
        pre = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(split_pattern(split), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        trainer_tok = Tokenizer(models.BPE())
        trainer_tok.pre_tokenizer = pre
        trainer = trainers.BpeTrainer(
            vocab_size=core_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
        )
        trainer_tok.train_from_iterator(texts, trainer)
        vocab, merges = _vocab_and_merges(trainer_tok)
        if arch.tokenizer == "llama3":
            regular = 128000
            specials = ["<|begin_of_text|>", "<|end_of_text|>"] + [
                f"<|reserved_special_token_{i}|>" for i in range(arch.tokenizer_size - regular - 2)
            ]
        else:
            regular = 151643
            extra = QWEN_SPECIALS + (QWEN3_THINK if arch.tokenizer == "qwen3" else [])
            specials = extra + [f"<|extra_{i}|>" for i in range(arch.tokenizer_size - regular - len(extra))]
        vocab = _fill(vocab, regular, lambda i: f"<|filler_{i}|>")
        tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
        tok.pre_tokenizer = pre
        tok.decoder = decoders.ByteLevel()
        if arch.tokenizer == "llama3":
            tok.post_processor = processors.TemplateProcessing(
                single="<|begin_of_text|> $A",
                pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                special_tokens=[("<|begin_of_text|>", regular)],
            )
            named = dict(
                bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>", tokenizer_class="PreTrainedTokenizerFast"
            )
        else:
            tok.post_processor = processors.ByteLevel(trim_offsets=False)
            named = dict(eos_token="<|endoftext|>", pad_token="<|endoftext|>", tokenizer_class="Qwen2Tokenizer")
        tok.add_special_tokens(specials)
    tokenizer_class = named.pop("tokenizer_class")
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, **named)
    assert len(wrapped) == arch.tokenizer_size, (arch.paper_model, len(wrapped))
    written = wrapped.save_pretrained(out_dir)
    config_path = out_dir / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text())
    tokenizer_config["tokenizer_class"] = tokenizer_class
    config_path.write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    return sorted(Path(p).name for p in written if os.path.isfile(p))


def split_pattern(regex: str):
    from tokenizers import Regex

    return Regex(regex)


def _vocab_and_merges(tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return dict(model["vocab"]), merges


def _fill(vocab: dict[str, int], size: int, name) -> dict[str, int]:
    """`vocab` extended with unreachable entries to exactly `size` ids."""
    if len(vocab) > size:
        raise ValueError(f"the trained vocabulary ({len(vocab)}) exceeds {size}")
    out = dict(vocab)
    for i in range(size - len(vocab)):
        out[name(i)] = len(out)
    return out
