"""Training data for the ablations: a small BPE tokenizer and memory-mapped token files.

The corpus is a passages.jsonl file ({"doc", "index", "text"} per line). It is split into train
and held-out text BY DOCUMENT (by contiguous passages when there is a single document), so that
held-out perplexity and the sink/spike statistics are measured on text the model never saw. A
byte-level BPE is trained on the training split only (small vocabulary: on CPU the output layer
dominates the cost), every split is tokenized once into a flat uint16/uint32 file, and training
reads random windows from a np.memmap of it.

Everything lands in one cache folder; meta.json is written last and carries a fingerprint of the
inputs, so a half-written cache is never reused and a changed corpus or setting rebuilds it.

A Hugging Face `datasets` source (GPU preset) streams documents through the same path; the import
is lazy so the default install does not need the package. The synthetic Bigram-Backcopy language
(spikesink.ablations.synthetic) is written to the same files, with its separator as EOS.

`prepare_from_config` reads the `ablations.data` section and picks the source.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from spikesink.acquisition.corpus import read_passages  # noqa: F401  (the one passages.jsonl reader; re-exported)
from spikesink.io import atomic_path, read_json, sha256_file, write_json

if TYPE_CHECKING:
    from .synthetic import BigramBackcopy

EOS_TOKEN = "<|endoftext|>"
CACHE_VERSION = 1


@dataclass
class TokenData:
    train: np.ndarray  # np.memmap of token ids (uint16 or uint32)
    heldout: np.ndarray
    vocab_size: int
    eos_id: int
    tokenizer_path: Path | None  # None for the synthetic language (ids are its tokens)
    meta: dict


# ----------------------------------------------------------------------------------------------
# passages and the split


def split_by_document(passages: list[dict], heldout_frac: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, heldout) with no document on both sides.

    Documents are shuffled with `seed` and moved to the held-out side until it holds at least
    `heldout_frac` of the characters (at least one document, never all of them). With a single
    document the last `heldout_frac` of its passages (a contiguous block, so neighbouring text
    does not leak) is held out instead.
    """
    if not 0.0 < heldout_frac < 1.0:
        raise ValueError(f"heldout_frac must be in (0, 1), got {heldout_frac}")
    docs = sorted({str(p["doc"]) for p in passages})
    if len(docs) == 1:
        ordered = sorted(passages, key=lambda p: int(p["index"]))
        n_held = min(len(ordered) - 1, max(1, round(heldout_frac * len(ordered))))
        if n_held < 1:
            raise ValueError("need at least two passages to split a single document")
        return ordered[:-n_held], ordered[-n_held:]
    chars = {doc: 0 for doc in docs}
    for p in passages:
        chars[str(p["doc"])] += len(p["text"])
    order = [docs[i] for i in np.random.default_rng(seed).permutation(len(docs))]
    target = heldout_frac * sum(chars.values())
    held: set[str] = set()
    held_chars = 0
    for doc in order[:-1]:  # never hold out every document
        if held and held_chars >= target:
            break
        held.add(doc)
        held_chars += chars[doc]
    train = [p for p in passages if str(p["doc"]) not in held]
    heldout = [p for p in passages if str(p["doc"]) in held]
    return train, heldout


_WORDS = {
    "adj": "quiet old bright young small grey happy careful gentle proud clever silent".split(),
    "noun": "girl captain house letter garden sister carriage morning friend village window river".split(),
    "verb": "admired visited answered followed watched remembered described praised avoided found".split(),
    "place": "park church road hill library ballroom parlour cottage harbour meadow".split(),
}


def write_synthetic_corpus(
    path: str | os.PathLike, n_docs: int = 4, passages_per_doc: int = 20, sentences_per_passage: int = 6, seed: int = 0
) -> Path:
    """A small English-like passages.jsonl from templates (tests and smoke runs; no download needed)."""
    rng = np.random.default_rng(seed)

    def pick(kind: str) -> str:
        words = _WORDS[kind]
        return words[int(rng.integers(len(words)))]

    lines = []
    for d in range(n_docs):
        for i in range(passages_per_doc):
            sentences = [
                f"The {pick('adj')} {pick('noun')} {pick('verb')} the {pick('noun')} near the {pick('place')}."
                for _ in range(sentences_per_passage)
            ]
            lines.append(json.dumps({"doc": f"doc-{d:03d}", "index": i, "text": " ".join(sentences)}))
    target = Path(path)
    with atomic_path(target) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def hashed_split(doc: str, heldout_frac: float) -> bool:
    """Streaming split (HF source): a document is held out when a stable hash of its id says so."""
    return (zlib.crc32(doc.encode("utf-8")) % 10_000) < heldout_frac * 10_000


def hf_passages(
    name: str,
    split: str = "train",
    text_field: str = "text",
    config_name: str | None = None,
    max_docs: int | None = None,
    id_field: str | None = None,
) -> Iterator[dict]:
    """Documents of a Hugging Face dataset as passages (GPU preset; needs `datasets` and network/cache).

    Streamed, so a large corpus is never held in memory; each document is one passage.
    """
    import datasets  # lazy: not a default dependency

    stream = datasets.load_dataset(name, config_name, split=split, streaming=True)
    for i, row in enumerate(stream):
        if max_docs is not None and i >= max_docs:
            break
        doc = str(row[id_field]) if id_field else f"{name}:{split}:{i}"
        yield {"doc": doc, "index": 0, "text": row[text_field]}


# ----------------------------------------------------------------------------------------------
# tokenizer and token files


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE (GPT-2 style) with one special token, <|endoftext|> (id 0).

    Byte-level means every string is encodable (no unknown token); training is single-pass and
    deterministic for a given input order.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def write_tokens(path: Path, tokenizer, texts: Iterable[str], dtype: np.dtype, eos_id: int, batch: int = 256) -> int:
    """Tokenize texts in batches straight into a flat binary file (EOS after each passage); returns the count."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        buffer: list[str] = []

        def flush() -> int:
            n = 0
            for enc in tokenizer.encode_batch(buffer):
                ids = np.asarray(enc.ids + [eos_id], dtype=dtype)
                handle.write(ids.tobytes())
                n += ids.size
            buffer.clear()
            return n

        for text in texts:
            buffer.append(text)
            if len(buffer) >= batch:
                count += flush()
        if buffer:
            count += flush()
    return count


def open_tokens(path: Path, dtype: str) -> np.ndarray:
    return np.memmap(path, dtype=np.dtype(dtype), mode="r")


def data_fingerprint(source_id: str, vocab_size: int, heldout_frac: float, seed: int) -> str:
    payload = json.dumps([CACHE_VERSION, source_id, vocab_size, heldout_frac, seed])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def is_complete_cache(cache: Path, fingerprint: str) -> bool:
    """meta.json is written last, so its presence with the same fingerprint means a usable cache."""
    meta_path = cache / "meta.json"
    return meta_path.exists() and read_json(meta_path).get("fingerprint") == fingerprint


def prepare_data(
    cache_dir: str | os.PathLike,
    vocab_size: int,
    heldout_frac: float = 0.1,
    seed: int = 0,
    corpus_path: str | os.PathLike | None = None,
    hf: dict | None = None,
) -> TokenData:
    """Build (or reuse) the tokenizer and the train / held-out token files in `cache_dir`.

    Exactly one source: `corpus_path` (passages.jsonl) or `hf` (kwargs of hf_passages plus
    optional `max_tokenizer_docs`). Reused when meta.json's fingerprint matches.
    """
    if (corpus_path is None) == (hf is None):
        raise ValueError("give exactly one data source: corpus_path or hf")
    cache = Path(cache_dir)
    source_id = (
        f"sha256:{sha256_file(corpus_path)}" if corpus_path is not None else "hf:" + json.dumps(hf, sort_keys=True)
    )
    fingerprint = data_fingerprint(source_id, vocab_size, heldout_frac, seed)
    meta_path = cache / "meta.json"
    if is_complete_cache(cache, fingerprint):
        return load_data(cache)
    cache.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(vocab_size)

    if corpus_path is not None:
        train_p, held_p = split_by_document(read_passages(corpus_path), heldout_frac, seed)
        tokenizer = train_tokenizer((p["text"] for p in train_p), vocab_size)
        eos_id = tokenizer.token_to_id(EOS_TOKEN)
        n_train = write_tokens(cache / "train.bin", tokenizer, (p["text"] for p in train_p), dtype, eos_id)
        n_held = write_tokens(cache / "heldout.bin", tokenizer, (p["text"] for p in held_p), dtype, eos_id)
        split_info = {
            "train_docs": sorted({str(p["doc"]) for p in train_p}),
            "heldout_docs": sorted({str(p["doc"]) for p in held_p}),
            "train_passages": len(train_p),
            "heldout_passages": len(held_p),
        }
    else:
        hf_kwargs = {k: v for k, v in hf.items() if k != "max_tokenizer_docs"}
        n_tok_docs = hf.get("max_tokenizer_docs", 20_000)

        def side(heldout: bool, limit: int | None = None) -> Iterator[str]:
            kept = 0
            for p in hf_passages(**hf_kwargs):
                if hashed_split(p["doc"], heldout_frac) == heldout:
                    yield p["text"]
                    kept += 1
                    if limit is not None and kept >= limit:
                        return

        tokenizer = train_tokenizer(side(False, n_tok_docs), vocab_size)
        eos_id = tokenizer.token_to_id(EOS_TOKEN)
        n_train = write_tokens(cache / "train.bin", tokenizer, side(False), dtype, eos_id)
        n_held = write_tokens(cache / "heldout.bin", tokenizer, side(True), dtype, eos_id)
        split_info = {"split": "crc32(doc) hash"}

    with atomic_path(cache / "tokenizer.json") as tmp:
        tokenizer.save(str(tmp))
    meta = {
        "fingerprint": fingerprint,
        "source": source_id,
        "vocab_size": tokenizer.get_vocab_size(),
        "requested_vocab_size": vocab_size,
        "eos_id": eos_id,
        "dtype": dtype.name,
        "train_tokens": n_train,
        "heldout_tokens": n_held,
        "heldout_frac": heldout_frac,
        "seed": seed,
        **split_info,
    }
    write_json(meta_path, meta)  # written last: its presence marks a complete cache
    return load_data(cache)


def prepare_synthetic(cache_dir: str | os.PathLike, spec: BigramBackcopy) -> TokenData:
    """The Bigram-Backcopy language as train / held-out token files (independent samples of one language)."""
    from .synthetic import SEPARATOR_ID, bayes_loss, token_stream

    cache = Path(cache_dir)
    fingerprint = data_fingerprint(
        "bigram_backcopy:" + json.dumps(spec.to_dict(), sort_keys=True), spec.vocab_size, 0.0, spec.seed
    )
    meta_path = cache / "meta.json"
    if is_complete_cache(cache, fingerprint):
        return load_data(cache)
    cache.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(spec.vocab_size)
    counts = {}
    for split, stream, n_tokens in (("train", 1, spec.train_tokens), ("heldout", 2, spec.heldout_tokens)):
        tokens = token_stream(spec, n_tokens, stream).astype(dtype)
        with atomic_path(cache / f"{split}.bin") as tmp:
            tokens.tofile(tmp)
        counts[split] = tokens
    meta = {
        "fingerprint": fingerprint,
        "source": "bigram_backcopy",
        "bigram_backcopy": spec.to_dict(),
        "vocab_size": spec.vocab_size,
        "eos_id": SEPARATOR_ID,
        "dtype": dtype.name,
        "train_tokens": int(counts["train"].size),
        "heldout_tokens": int(counts["heldout"].size),
        "heldout_bayes_loss": bayes_loss(spec, counts["heldout"].astype(np.int64)),
        "split": "independent samples of the same language (stream 1 train, 2 held-out)",
    }
    write_json(meta_path, meta)  # last: marks a complete cache
    return load_data(cache)


def prepare_from_config(
    cache_dir: str | os.PathLike, ablation_cfg: dict, corpus_path: str | os.PathLike | None = None
) -> TokenData:
    """The data of an `ablations:` section: `data.source` passages (corpus_path or `corpus`), hf, or bigram_backcopy."""
    data_cfg = ablation_cfg.get("data", {})
    source = data_cfg.get("source", "passages")
    if source == "bigram_backcopy":
        from .synthetic import BigramBackcopy

        return prepare_synthetic(cache_dir, BigramBackcopy.from_dict(data_cfg.get("bigram_backcopy", {})))
    common = {
        "vocab_size": int(data_cfg.get("vocab_size", 4096)),
        "heldout_frac": float(data_cfg.get("heldout_frac", 0.1)),
        "seed": int(data_cfg.get("seed", 0)),
    }
    if source == "hf":
        return prepare_data(cache_dir, hf=data_cfg["hf"], **common)
    if source != "passages":
        raise ValueError(f"ablations.data.source: unknown source {source!r} (passages, hf, bigram_backcopy)")
    corpus = corpus_path or ablation_cfg.get("corpus")
    if corpus is None:
        raise ValueError("ablations.data.source passages needs a corpus: set ablations.corpus or pass --corpus")
    return prepare_data(cache_dir, corpus_path=corpus, **common)


def load_data(cache_dir: str | os.PathLike) -> TokenData:
    cache = Path(cache_dir)
    meta = read_json(cache / "meta.json")
    tokenizer = cache / "tokenizer.json"
    return TokenData(
        train=open_tokens(cache / "train.bin", meta["dtype"]),
        heldout=open_tokens(cache / "heldout.bin", meta["dtype"]),
        vocab_size=int(meta["vocab_size"]),
        eos_id=int(meta["eos_id"]),
        tokenizer_path=tokenizer if tokenizer.exists() else None,
        meta=meta,
    )


# ----------------------------------------------------------------------------------------------
# batches


def _windows(
    tokens: np.ndarray, starts: np.ndarray, seq_len: int, bos_id: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets (B, T) from windows starting at `starts`.

    With `bos_id`, position 0 holds that token and the text fills positions 1..T-1, so the first
    token is always the same (a BOS-like setting); without it position 0 is an arbitrary token.
    """
    span = seq_len if bos_id is not None else seq_len + 1
    rows = np.stack([np.asarray(tokens[s : s + span], dtype=np.int64) for s in starts])
    if bos_id is not None:
        rows = np.concatenate([np.full((len(starts), 1), bos_id, dtype=np.int64), rows], axis=1)
    seq = torch.from_numpy(rows)
    return seq[:, :-1].contiguous(), seq[:, 1:].contiguous()


def sample_batch(
    tokens: np.ndarray, batch_size: int, seq_len: int, rng: np.random.Generator, bos_id: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of random windows; the rng is the only state, so a step's batch is reproducible."""
    span = seq_len if bos_id is not None else seq_len + 1
    if len(tokens) <= span:
        raise ValueError(f"{len(tokens)} tokens cannot fill a window of {span}")
    starts = rng.integers(0, len(tokens) - span + 1, size=batch_size)
    return _windows(tokens, starts, seq_len, bos_id)


def step_rng(seed: int, step: int) -> np.random.Generator:
    """The data rng of one training step: a pure function of (seed, step), so resuming needs no data state."""
    return np.random.default_rng([seed, step])


def heldout_batches(
    tokens: np.ndarray, n_windows: int, seq_len: int, batch_size: int, bos_id: int | None = None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed, evenly spaced held-out windows (the same every evaluation), in batches."""
    span = seq_len if bos_id is not None else seq_len + 1
    if len(tokens) < span:
        raise ValueError(f"held-out split has {len(tokens)} tokens, fewer than one window of {span}")
    n_windows = max(1, min(n_windows, len(tokens) // span))
    starts = np.linspace(0, len(tokens) - span, n_windows).astype(np.int64)
    return [_windows(tokens, starts[i : i + batch_size], seq_len, bos_id) for i in range(0, n_windows, batch_size)]


def main(argv: list[str] | None = None) -> None:
    """CLI: build the cache once (a rule of its own, so parallel variant runs share it without racing)."""
    import yaml

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--config", required=True, help="YAML file with an `ablations:` section")
    parser.add_argument("--corpus", help="passages.jsonl (overrides ablations.corpus)")
    parser.add_argument("--out", required=True, help="cache folder")
    args = parser.parse_args(argv)
    with open(args.config, encoding="utf-8") as handle:
        cfg = yaml.safe_load(handle)["ablations"]
    data = prepare_from_config(args.out, cfg, args.corpus)
    print(json.dumps({k: v for k, v in data.meta.items() if not k.endswith("_docs")}, indent=2))


if __name__ == "__main__":
    main()
