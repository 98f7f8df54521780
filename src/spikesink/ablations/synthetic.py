"""A synthetic language in which sinks are useful from the first steps: Bigram-Backcopy.

Guo et al. (2024, "Active-Dormant Attention Heads", arXiv 2410.13835) show that one- to
three-layer transformers trained on this task develop the extreme-token phenomena (attention sinks
on the first token, small value states there and a residual-state peak) within a few thousand
steps. It is our CPU-scale stand-in for the 100B natural tokens the paper trains on.

The language: tokens 1..V. Each document is a Markov chain with a fixed random transition matrix
(rows drawn from a Dirichlet, so each token has a few likely successors), except after one of a
few *trigger* tokens, where the next token copies the token *before* the trigger. Predicting a
bigram needs only the current token, so an attention head has nothing to read on most positions
(it is "dormant" there and parks its attention on a fixed token); on a trigger it must look one
token back. Id 0 is the document separator, used as BOS by the trainer (`train.bos: true`).

Two triggers never follow each other (documents start on a non-trigger and a copied token is the
one before a trigger, which is never a trigger), so the copy rule is always well defined.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .configs import strict_from_dict

SEPARATOR_ID = 0


@dataclass(frozen=True)
class BigramBackcopy:
    n_tokens: int = 64  # content tokens 1..n_tokens (vocabulary n_tokens + 1 with the separator)
    n_triggers: int = 3  # tokens 1..n_triggers trigger a copy
    doc_len: int = 256  # content tokens per document
    concentration: float = 0.2  # Dirichlet parameter of each transition row (small: peaky bigrams)
    train_tokens: int = 2_000_000
    heldout_tokens: int = 200_000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.n_triggers < self.n_tokens - 1:
            raise ValueError(
                f"n_triggers must be in [1, n_tokens - 1), got {self.n_triggers} triggers for {self.n_tokens} "
                "tokens: the triggers are tokens 1..n_triggers and documents need at least two other tokens"
            )
        if self.doc_len < 2 or self.concentration <= 0:
            raise ValueError("doc_len must be >= 2 and concentration > 0")

    @property
    def vocab_size(self) -> int:
        return self.n_tokens + 1

    @classmethod
    def from_dict(cls, values: dict) -> BigramBackcopy:
        return strict_from_dict(cls, values, "bigram_backcopy")

    def to_dict(self) -> dict:
        return asdict(self)

    def triggers(self) -> np.ndarray:
        return np.arange(1, self.n_triggers + 1)

    def trigger_mask(self) -> np.ndarray:
        """(vocab_size,) bool, True at the trigger ids: index it with token ids."""
        mask = np.zeros(self.vocab_size, dtype=bool)
        mask[self.triggers()] = True
        return mask

    def transitions(self) -> np.ndarray:
        """(n_tokens + 1, n_tokens + 1) row-stochastic matrix over ids; separator and trigger rows unused."""
        rng = np.random.default_rng([self.seed, 0])
        probs = np.zeros((self.vocab_size, self.vocab_size))
        probs[1:, 1:] = rng.dirichlet(np.full(self.n_tokens, self.concentration), size=self.n_tokens)
        return probs


def generate(spec: BigramBackcopy, n_docs: int, stream: int) -> np.ndarray:
    """(n_docs, doc_len) documents of the language; `stream` picks an independent sample (train 1, held-out 2).

    All documents advance one position at a time together (vectorised over documents).
    """
    rng = np.random.default_rng([spec.seed, stream])
    cumulative = np.cumsum(spec.transitions(), axis=1)
    is_trigger = spec.trigger_mask()
    docs = np.zeros((n_docs, spec.doc_len), dtype=np.int64)
    docs[:, 0] = rng.integers(spec.n_triggers + 1, spec.vocab_size, size=n_docs)  # never start on a trigger
    for t in range(1, spec.doc_len):
        current = docs[:, t - 1]
        u = rng.random(n_docs)[:, None]
        bigram = np.minimum((cumulative[current] < u).sum(axis=1), spec.vocab_size - 1)
        copy = docs[:, t - 2] if t >= 2 else bigram
        docs[:, t] = np.where(is_trigger[current], copy, bigram)
    return docs


def token_stream(spec: BigramBackcopy, n_tokens: int, stream: int) -> np.ndarray:
    """About n_tokens ids: documents each preceded by the separator, flattened."""
    n_docs = max(1, -(-n_tokens // (spec.doc_len + 1)))
    docs = generate(spec, n_docs, stream)
    with_separator = np.concatenate([np.full((n_docs, 1), SEPARATOR_ID, dtype=np.int64), docs], axis=1)
    return with_separator.reshape(-1)


def bayes_loss(spec: BigramBackcopy, tokens: np.ndarray) -> float:
    """Mean next-token loss (nats) of the true generator on a token stream: the floor a model can reach.

    Transitions into or out of a separator (document boundaries) are skipped; copies cost nothing,
    bigrams cost -log P(next | current).
    """
    probs = spec.transitions()
    is_trigger = spec.trigger_mask()
    current, nxt = tokens[:-1], tokens[1:]
    keep = (current != SEPARATOR_ID) & (nxt != SEPARATOR_ID)
    bigram = keep & ~is_trigger[current]
    losses = -np.log(np.maximum(probs[current[bigram], nxt[bigram]], 1e-12))
    n_copy = int((keep & is_trigger[current]).sum())
    return float(losses.sum() / max(1, losses.size + n_copy))
