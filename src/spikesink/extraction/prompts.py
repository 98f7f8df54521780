"""Prompts and sentences sampled from the acquired corpus, reproducibly (one place for all stages).

Every prompt starts at the start of a passage (the paper's prompts start at text starts); the
tokenizer's own special-token behaviour is kept (Llama tokenizers prepend a BOS, Qwen/SmolLM2
ones do not), which decides what sits at position 0, where spikes and sinks live. The extraction
writes the prompts it sampled (results/<model>/prompts.json); later stages reuse them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from spikesink.acquisition.corpus import CorpusError, split_sentences
from spikesink.results import PromptSet


def _ordered_docs(passages: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Group passages by doc (first-appearance order), each doc sorted by passage index."""
    docs: dict[str, list[dict[str, Any]]] = {}
    for record in passages:
        docs.setdefault(record["doc"], []).append(record)
    for records in docs.values():
        records.sort(key=lambda r: r["index"])
    return docs


def _encode(tokenizer, text: str, add_special_tokens: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])


def special_token_layout(tokenizer) -> tuple[int, int]:
    """How many special tokens the tokenizer adds before and after a text by default.

    Measured on a probe string rather than read from the tokenizer's config, because the
    post-processor (not a flag) decides: Llama-2/3 prepend a BOS, Qwen/SmolLM2 add none.
    """
    probe = "The quick brown fox."
    plain = _encode(tokenizer, probe, add_special_tokens=False)
    full = _encode(tokenizer, probe, add_special_tokens=True)
    if not plain:
        raise CorpusError("the tokenizer encodes a plain sentence to no tokens")
    for prefix in range(len(full) - len(plain) + 1):
        if full[prefix : prefix + len(plain)] == plain:
            return prefix, len(full) - len(plain) - prefix
    raise CorpusError("cannot locate the text tokens inside the tokenizer's special-token output")


def sample_prompts(
    passages: Sequence[dict[str, Any]],
    tokenizer,
    n_prompts: int,
    seq_len: int,
    seed: int,
    max_positions: int | None = None,
    keys: tuple[str, str] = ("extraction.n_prompts", "extraction.seq_len"),
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw ``n_prompts`` token sequences of exactly ``seq_len`` tokens, reproducibly.

    Each prompt starts at the start of a passage (the paper's prompts start at text
    starts); that passage and the following ones of the same document are joined with
    blank lines until the tokenized text reaches ``seq_len`` tokens, then cut to
    ``seq_len``. Special tokens follow the tokenizer's default (``add_special_tokens``),
    and the meta records ``bos_added`` and the first token id per prompt. Starting passages
    are drawn with ``numpy.random.default_rng(seed)``; prompts never share a passage, so
    they are distinct, non-overlapping samples. Returns int64 ids (n_prompts, seq_len)
    and one meta dict per prompt.
    """
    if n_prompts <= 0 or seq_len <= 0:
        raise CorpusError(f"n_prompts ({n_prompts}) and seq_len ({seq_len}) must be positive")
    if max_positions is not None and seq_len > max_positions:
        raise CorpusError(
            f"{keys[1]} = {seq_len} exceeds the model's maximum number of positions "
            f"({max_positions}); lower {keys[1]} to at most {max_positions}"
        )
    if not passages:
        raise CorpusError("the corpus is empty: no passages to sample prompts from")
    docs = _ordered_docs(passages)
    n_prefix, n_suffix = special_token_layout(tokenizer)
    bos_id = getattr(tokenizer, "bos_token_id", None)
    flat = [(doc, pos) for doc, records in docs.items() for pos in range(len(records))]
    order = np.random.default_rng(seed).permutation(len(flat))

    used: set[tuple[str, int]] = set()
    rows: list[list[int]] = []
    meta: list[dict[str, Any]] = []
    for k in order:
        doc, start = flat[int(k)]
        if (doc, start) in used:
            continue
        span = _build_span(docs[doc], start, tokenizer, seq_len + n_suffix, n_prefix + n_suffix)
        if span is None:
            continue  # the document ends before seq_len tokens
        end, ids, text = span
        if any((doc, p) in used for p in range(start, end)):
            continue
        used.update((doc, p) for p in range(start, end))
        ids = ids[:seq_len]
        rows.append(ids)
        meta.append(
            {
                "prompt": len(rows) - 1,
                "doc": doc,
                "start_index": docs[doc][start]["index"],
                "n_passages": end - start,
                "n_chars": len(text),
                "bos_added": bool(n_prefix > 0 and bos_id is not None and ids[0] == bos_id),
                "n_special_prefix": n_prefix,
                "first_token_id": int(ids[0]),
                "text_start": text[:80],
            }
        )
        if len(rows) == n_prompts:
            return np.asarray(rows, dtype=np.int64), meta
    total_chars = sum(len(r["text"]) for r in passages)
    raise CorpusError(
        f"not enough text for {n_prompts} prompts x {seq_len} tokens: found only {len(rows)} "
        f"non-overlapping passage-aligned spans of {seq_len} tokens in {len(passages)} passages "
        f"({total_chars} characters); lower {keys[0]} or {keys[1]}, "
        "or use a larger corpus"
    )


def _build_span(
    records: list[dict[str, Any]], start: int, tokenizer, need: int, n_special: int
) -> tuple[int, list[int], str] | None:
    """Join passages from ``start`` until the text has ``need`` tokens (specials included).

    Tokenizing grows the text geometrically (estimate of chars per token from the last
    encoding), so a span costs a few encodings, not one per passage. Returns (end passage
    position, ids, text) or None when the document runs out first.
    """
    end = start
    chars = 0
    target_chars = need  # a token covers at least ~1 character in practice; refined below
    while True:
        while end < len(records) and chars < target_chars:
            chars += len(records[end]["text"]) + 2
            end += 1
        text = "\n\n".join(r["text"] for r in records[start:end])
        ids = _encode(tokenizer, text, add_special_tokens=True)
        if len(ids) >= need:
            return end, ids, text
        if end >= len(records):
            return None
        per_token = max(len(text) / max(len(ids) - n_special, 1), 0.5)
        target_chars = max(chars + 1, int(need * per_token * 1.1) + 1)


def sample_sentences(
    passages: Sequence[dict[str, Any]],
    n: int,
    seed: int,
    min_chars: int = 20,
    max_chars: int = 400,
) -> list[str]:
    """Draw ``n`` distinct sentences (``min_chars`` to ``max_chars`` long) reproducibly.

    For analyses that, like the paper's SiLU figure, run on individual sentences rather
    than long prompts. Sentences are drawn without replacement with
    ``numpy.random.default_rng(seed)`` from all passages in reading order.
    """
    if n <= 0:
        raise CorpusError(f"the number of sentences must be positive, got {n}")
    if not passages:
        raise CorpusError("the corpus is empty: no passages to draw sentences from")
    seen: set[str] = set()
    pool = []
    for record in passages:
        for sentence in split_sentences(record["text"]):
            if min_chars <= len(sentence) <= max_chars and sentence not in seen:
                seen.add(sentence)
                pool.append(sentence)
    if len(pool) < n:
        raise CorpusError(
            f"not enough sentences: asked for {n}, the corpus has {len(pool)} distinct "
            f"sentences of {min_chars}-{max_chars} characters"
        )
    picks = np.random.default_rng(seed).choice(len(pool), size=n, replace=False)
    return [pool[int(i)] for i in picks]


def sample_prompt_set(
    name: str,
    passages: Sequence[dict[str, Any]],
    tokenizer,
    kind: str,
    n: int,
    seed: int,
    seq_len: int | None = None,
    max_positions: int | None = None,
    keys: Sequence[str] = ("n_prompts", "seq_len"),
) -> PromptSet:
    """One named prompt set: `n` prompts of `seq_len` tokens (kind "prompts") or `n` single
    sentences tokenised with the tokenizer's own special tokens (kind "sentences"). `keys` name
    the config keys of n and seq_len in error messages."""
    params = {"kind": kind, "n": n, "seed": seed, "seq_len": seq_len}
    if kind == "prompts":
        ids, meta = sample_prompts(
            passages,
            tokenizer,
            n_prompts=n,
            seq_len=int(seq_len),
            seed=seed,
            max_positions=max_positions,
            keys=tuple(keys),
        )
        return PromptSet(name, list(ids), {"params": params, "bos_added": bool(meta[0]["bos_added"]), "prompts": meta})
    if kind == "sentences":
        sentences = sample_sentences(passages, n, seed=seed)
        before, _ = special_token_layout(tokenizer)
        ids = [np.asarray(_encode(tokenizer, text, add_special_tokens=True), dtype=np.int64) for text in sentences]
        return PromptSet(name, ids, {"params": params, "bos_added": before > 0, "texts": sentences})
    raise ValueError(f"prompt set kind must be 'prompts' or 'sentences', got {kind!r}")


def prompt_set_spec(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Sampling parameters of one prompt set from a validated config: the extraction's and the
    held-out set from their sections, the others (sentences, long texts) from the section of the
    analysis that owns them (its entry's `prompt_sets`). `keys` name the config keys in errors."""
    if name in ("extraction", "heldout"):
        section = config[name]
        return {
            "kind": "prompts",
            "n": section["n_prompts"],
            "seq_len": section["seq_len"],
            "seed": section["seed"],
            "keys": [f"{name}.n_prompts", f"{name}.seq_len"],
        }
    from spikesink.analyses import registry

    for entry in registry().values():
        for owned in entry.prompt_sets:
            if owned.name != name:
                continue
            section, key = config["analyses"][entry.name], f"analyses.{entry.name}"
            spec = {"kind": owned.kind, "n": section[owned.n], "seed": section[owned.seed]}
            if owned.seq_len:
                return spec | {
                    "seq_len": section[owned.seq_len],
                    "keys": [f"{key}.{owned.n}", f"{key}.{owned.seq_len}"],
                }
            return spec | {"keys": [f"{key}.{owned.n}", "-"]}
    raise ValueError(f"no prompt set named {name!r}: extraction, heldout or one an analysis owns")
