"""The Bigram-Backcopy language: the copy rule, the bigram statistics, the cache and the config path."""

from __future__ import annotations

import numpy as np
import pytest

from spikesink.ablations.data import prepare_from_config, write_synthetic_corpus
from spikesink.ablations.synthetic import SEPARATOR_ID, BigramBackcopy, bayes_loss, generate, token_stream

SPEC = BigramBackcopy(
    n_tokens=16, n_triggers=2, doc_len=64, concentration=0.3, train_tokens=20_000, heldout_tokens=5_000, seed=3
)


def test_every_token_after_a_trigger_copies_the_token_before_it():
    docs = generate(SPEC, 200, stream=1)
    assert docs.min() >= 1 and docs.max() <= SPEC.n_tokens
    after_trigger = np.isin(docs[:, 1:-1], SPEC.triggers())
    assert after_trigger.mean() > 0.02  # the rule is exercised
    assert np.array_equal(docs[:, 2:][after_trigger], docs[:, :-2][after_trigger])
    # documents start on a non-trigger and triggers never follow each other
    assert not np.isin(docs[:, 0], SPEC.triggers()).any()
    assert not (np.isin(docs[:, :-1], SPEC.triggers()) & np.isin(docs[:, 1:], SPEC.triggers())).any()


def test_non_copy_transitions_follow_the_bigram_matrix():
    docs = generate(SPEC, 2000, stream=1)
    probs = SPEC.transitions()
    current, nxt = docs[:, :-1].ravel(), docs[:, 1:].ravel()
    source = 10  # a non-trigger token
    observed = np.bincount(nxt[current == source], minlength=SPEC.vocab_size) / (current == source).sum()
    assert np.abs(observed - probs[source]).max() < 0.03
    assert probs[:, SEPARATOR_ID].sum() == 0  # the separator is never generated inside a document


def test_streams_are_deterministic_and_independent():
    a, b = token_stream(SPEC, 3000, stream=1), token_stream(SPEC, 3000, stream=1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, token_stream(SPEC, 3000, stream=2))
    assert a[0] == SEPARATOR_ID and (a == SEPARATOR_ID).sum() == len(a) // (SPEC.doc_len + 1)


def test_bayes_loss_is_below_a_bigram_only_predictor():
    tokens = token_stream(SPEC, 50_000, stream=2)
    floor = bayes_loss(SPEC, tokens)
    probs = SPEC.transitions()
    current, nxt = tokens[:-1], tokens[1:]
    keep = (current != SEPARATOR_ID) & (nxt != SEPARATOR_ID)
    bigram_only = -np.log(np.maximum(probs[current[keep], nxt[keep]], 1e-12)).mean()
    assert 0 < floor < bigram_only < np.log(SPEC.n_tokens)


def test_unknown_keys_and_bad_values_are_refused():
    with pytest.raises(ValueError, match="unknown bigram_backcopy config keys: n_token"):
        BigramBackcopy.from_dict({"n_token": 10})
    with pytest.raises(ValueError, match="n_triggers"):
        BigramBackcopy(n_tokens=4, n_triggers=3)


def test_prepare_from_config_builds_and_reuses_the_synthetic_cache(tmp_path):
    cfg = {"data": {"source": "bigram_backcopy", "bigram_backcopy": SPEC.to_dict()}}
    data = prepare_from_config(tmp_path / "cache", cfg)
    assert data.vocab_size == SPEC.vocab_size and data.eos_id == SEPARATOR_ID and data.tokenizer_path is None
    assert data.meta["train_tokens"] == len(data.train) >= SPEC.train_tokens
    assert np.array_equal(np.asarray(data.heldout), token_stream(SPEC, SPEC.heldout_tokens, stream=2))
    assert 0 < data.meta["heldout_bayes_loss"] < np.log(SPEC.n_tokens)
    mtime = (tmp_path / "cache" / "train.bin").stat().st_mtime_ns
    prepare_from_config(tmp_path / "cache", cfg)  # same spec: reused
    assert (tmp_path / "cache" / "train.bin").stat().st_mtime_ns == mtime
    changed = {"data": {"source": "bigram_backcopy", "bigram_backcopy": {**SPEC.to_dict(), "seed": 4}}}
    assert not np.array_equal(
        np.asarray(prepare_from_config(tmp_path / "cache", changed).train), np.asarray(data.train)
    )


def test_prepare_from_config_dispatches_and_names_bad_sources(tmp_path):
    corpus = write_synthetic_corpus(tmp_path / "passages.jsonl", n_docs=4, passages_per_doc=6)
    data = prepare_from_config(
        tmp_path / "text", {"corpus": str(corpus), "data": {"vocab_size": 300, "heldout_frac": 0.25}}
    )
    assert data.tokenizer_path is not None and data.meta["source"].startswith("sha256:")
    with pytest.raises(ValueError, match="ablations.data.source"):
        prepare_from_config(tmp_path / "x", {"data": {"source": "wiki"}})
    with pytest.raises(ValueError, match="needs a corpus"):
        prepare_from_config(tmp_path / "y", {"data": {}})
