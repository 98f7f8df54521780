"""Ablation data: document-level split, deterministic tokenizer, cached memory-mapped tokens."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spikesink.ablations.data import (
    heldout_batches,
    prepare_data,
    read_passages,
    sample_batch,
    split_by_document,
    step_rng,
    write_synthetic_corpus,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_synthetic_corpus(tmp_path_factory.mktemp("corpus") / "passages.jsonl", n_docs=6, passages_per_doc=12)


def test_split_by_document_has_no_shared_document(corpus):
    passages = read_passages(corpus)
    train, held = split_by_document(passages, 0.2, seed=0)
    train_docs, held_docs = {p["doc"] for p in train}, {p["doc"] for p in held}
    assert train_docs and held_docs and not train_docs & held_docs
    assert len(train) + len(held) == len(passages)
    share = sum(len(p["text"]) for p in held) / sum(len(p["text"]) for p in passages)
    assert 0.15 < share < 0.4  # whole documents: at least the requested share, not far above
    assert split_by_document(passages, 0.2, seed=0) == (train, held)  # deterministic


def test_split_never_holds_out_every_document():
    passages = [{"doc": d, "index": 0, "text": "x" * 10} for d in ("a", "b")]
    train, held = split_by_document(passages, 0.9, seed=0)
    assert len(train) == 1 and len(held) == 1


def test_single_document_is_split_by_contiguous_passages():
    passages = [{"doc": "only", "index": i, "text": f"passage {i}"} for i in range(20)]
    train, held = split_by_document(list(reversed(passages)), 0.25, seed=0)
    assert [p["index"] for p in held] == list(range(15, 20))
    assert [p["index"] for p in train] == list(range(15))


def test_prepare_data_is_deterministic_cached_and_split_by_document(corpus, tmp_path):
    a = prepare_data(tmp_path / "a", vocab_size=300, heldout_frac=0.2, seed=0, corpus_path=corpus)
    b = prepare_data(tmp_path / "b", vocab_size=300, heldout_frac=0.2, seed=0, corpus_path=corpus)
    assert a.train.dtype == np.uint16 and isinstance(a.train, np.memmap)
    assert np.array_equal(np.asarray(a.train), np.asarray(b.train))
    assert np.array_equal(np.asarray(a.heldout), np.asarray(b.heldout))
    assert a.tokenizer_path.read_text() == b.tokenizer_path.read_text()
    assert not set(a.meta["train_docs"]) & set(a.meta["heldout_docs"])
    assert a.meta["train_tokens"] == len(a.train) and a.meta["heldout_tokens"] == len(a.heldout)
    assert int(np.asarray(a.train).max()) < a.vocab_size <= 300
    # one EOS after every passage
    n_train_passages = a.meta["train_passages"]
    assert int((np.asarray(a.train) == a.eos_id).sum()) == n_train_passages
    # the held-out tokens decode to held-out text only
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(a.tokenizer_path))
    held_text = tok.decode([int(t) for t in a.heldout[:200] if t != a.eos_id])
    passages = read_passages(corpus)
    held_texts = [p["text"] for p in passages if p["doc"] in a.meta["heldout_docs"]]
    train_texts = [p["text"] for p in passages if p["doc"] in a.meta["train_docs"]]
    assert any(held_text[:60] in text for text in held_texts)
    assert not any(held_text[:60] in text for text in train_texts)
    # reused from the cache (same files), rebuilt when a setting changes
    mtime = (tmp_path / "a" / "train.bin").stat().st_mtime_ns
    prepare_data(tmp_path / "a", vocab_size=300, heldout_frac=0.2, seed=0, corpus_path=corpus)
    assert (tmp_path / "a" / "train.bin").stat().st_mtime_ns == mtime
    c = prepare_data(tmp_path / "a", vocab_size=280, heldout_frac=0.2, seed=0, corpus_path=corpus)
    assert json.loads((tmp_path / "a" / "meta.json").read_text())["requested_vocab_size"] == 280
    assert c.vocab_size <= 280


def test_batches_are_next_token_pairs_and_reproducible():
    tokens = np.arange(1000, dtype=np.uint16)
    x, y = sample_batch(tokens, 4, 16, step_rng(0, 7))
    assert x.shape == y.shape == (4, 16)
    assert np.array_equal(y[:, :-1].numpy(), x[:, 1:].numpy()) and np.array_equal((y - x).numpy(), np.ones((4, 16)))
    x2, _ = sample_batch(tokens, 4, 16, step_rng(0, 7))
    x3, _ = sample_batch(tokens, 4, 16, step_rng(0, 8))
    assert np.array_equal(x.numpy(), x2.numpy()) and not np.array_equal(x.numpy(), x3.numpy())
    xb, yb = sample_batch(tokens, 2, 16, step_rng(0, 7), bos_id=999)
    assert (xb[:, 0] == 999).all() and (yb[:, 0] == xb[:, 1]).all()


def test_heldout_batches_are_fixed_and_cover_the_split():
    tokens = np.arange(5000, dtype=np.uint16)
    batches = heldout_batches(tokens, n_windows=10, seq_len=32, batch_size=4)
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    starts = np.concatenate([b[0][:, 0].numpy() for b in batches])
    assert starts[0] == 0 and starts[-1] == 5000 - 33
    assert np.array_equal(starts, np.concatenate([b[0][:, 0].numpy() for b in heldout_batches(tokens, 10, 32, 4)]))
