"""Geometry of sink keys and queries for one sink head and one non-sink head (paper Fig 6).

The paper's claims: sink keys (keys at position 0, across prompts) live in a 1-2 dimensional
subspace; in a sink head, the queries of ordinary tokens sit closer to the sink key than to
the keys of ordinary tokens. We test both on two heads chosen automatically from the sink
statistics: in the middle third of the layers, the head with the most and the one with the
least mean attention on key 0.

Queries and keys are taken where the softmax sees them: inside the routed attention function
(spikesink.instrumentation.attention.AttentionObserver), i.e. after the q/k projections, any q/k norm
and RoPE. Only the
two chosen layers are observed and only one head of each is copied, for a bounded number of
prompts, so memory is prompts x T x head_dim x 2 per head.

Everything returned is a small pandas DataFrame.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from spikesink.analyses.sink_geometry.result import SinkGeometry
from spikesink.analyses.unit import Job
from spikesink.instrumentation.attention import AttentionObserver
from spikesink.instrumentation.taps import run_decoder


def measure(job: Job) -> SinkGeometry:
    """Fig 6 on the first extraction prompts (at most n_prompts x seq_len)."""
    s, prompts = job.settings, job["prompts.extraction"]
    n, length = min(s.n_prompts, len(prompts.ids)), min(s.seq_len, min(len(r) for r in prompts.ids))
    ids = prompts.matrix(n, length)
    tables = sink_geometry(
        job.model.model,
        np.array_split(ids, max(1, len(ids) // s.batch_size)),
        job["sinks"].key0_mass_layer_head,
        max_prompts=n,
        tsne_points=s.tsne_points,
        tsne_iterations=s.tsne_iterations,
        seed=s.seed,
    )
    return SinkGeometry(**tables, bos_added=prompts.bos_added)


ROLES = ("sink", "non_sink")
KINDS = ("q(n)", "k(n)", "k(s)")  # non-sink queries, non-sink keys, sink keys (paper Fig 6 legend)


@dataclass(frozen=True)
class HeadChoice:
    role: str
    layer: int  # 0-based decoder layer
    head: int  # query head
    key0_mass: float


def middle_third(n_layers: int) -> range:
    """Layers [L/3, 2L/3): where the paper places massive activations and sinks (never empty)."""
    start = n_layers // 3
    stop = max(start + 1, math.ceil(2 * n_layers / 3))
    return range(start, min(stop, n_layers))


def choose_heads(key0_mass_layer_head: np.ndarray) -> dict[str, HeadChoice]:
    """The most and the least sinking head of the middle third of layers, by mean key-0 mass."""
    mass = np.asarray(key0_mass_layer_head, dtype=np.float64)
    if mass.ndim != 2:
        raise ValueError(f"expected a (layers, heads) array, got shape {mass.shape}")
    # layers with an attention map (a hybrid's linear-attention layers are NaN rows): the middle third's,
    # or every one of them where the middle third has none
    softmax = np.isfinite(mass).all(axis=1)
    if not softmax.any():
        raise ValueError("no layer has attention statistics (every row is NaN)")
    layers = [layer for layer in middle_third(mass.shape[0]) if softmax[layer]] or list(np.flatnonzero(softmax))
    window = mass[layers]
    sink = np.unravel_index(np.argmax(window), window.shape)
    non_sink = np.unravel_index(np.argmin(window), window.shape)
    return {
        role: HeadChoice(role, int(layers[idx[0]]), int(idx[1]), float(window[idx]))
        for role, idx in (("sink", sink), ("non_sink", non_sink))
    }


class QKCapture(AttentionObserver):
    """Copies query and key vectors of chosen heads (float32, CPU) for up to `max_prompts` prompts."""

    def __init__(
        self, model: nn.Module, heads: dict[str, HeadChoice], max_prompts: int = 256, stop_after_last: bool = False
    ):
        super().__init__(
            model, layers=sorted({choice.layer for choice in heads.values()}), stop_after_last=stop_after_last
        )
        self.heads = dict(heads)
        self.max_prompts = int(max_prompts)
        self._queries: dict[str, list[torch.Tensor]] = {role: [] for role in self.heads}
        self._keys: dict[str, list[torch.Tensor]] = {role: [] for role in self.heads}
        self.n_prompts = 0

    def _compute(self, layer, module, query, key, attention_mask, kwargs):
        if attention_mask is not None and attention_mask.dtype == torch.bool:
            if not bool(torch.diagonal(attention_mask[:, 0], dim1=-2, dim2=-1).all()):
                raise ValueError("padded batches are not supported: pad tokens would enter the q/k samples")
        out = {}
        groups = query.shape[1] // key.shape[1]
        for role, choice in self.heads.items():
            if choice.layer == layer:
                out[role] = (
                    query[:, choice.head].detach().to(torch.float32).cpu(),
                    key[:, choice.head // groups].detach().to(torch.float32).cpu(),  # GQA: shared kv head
                )
        return out

    def _commit(self, per_layer) -> None:
        room = self.max_prompts - self.n_prompts
        if room <= 0:
            return
        batch = 0
        for captured in per_layer.values():
            for role, (query, key) in captured.items():
                self._queries[role].append(query[:room])
                self._keys[role].append(key[:room])
                batch = query.shape[0]
        self.n_prompts += min(room, batch)

    @property
    def full(self) -> bool:
        return self.n_prompts >= self.max_prompts

    def result(self) -> dict[str, dict[str, np.ndarray]]:
        """role -> {"query": (P, T, D), "key": (P, T, D)} float32."""
        if not self.n_prompts:
            raise RuntimeError("no prompt was captured; run the model inside the `with` block")
        return {
            role: {
                "query": torch.cat(self._queries[role]).numpy(),
                "key": torch.cat(self._keys[role]).numpy(),
            }
            for role in self.heads
        }


def collect_qk(model: nn.Module, batches: Iterable, heads: dict[str, HeadChoice], max_prompts: int = 256):
    """Run `batches` (iterable of (B, T) ids) until `max_prompts` prompts are captured."""
    with torch.no_grad(), QKCapture(model, heads, max_prompts, stop_after_last=True) as capture:
        for input_ids in batches:
            run_decoder(model, input_ids=torch.as_tensor(input_ids), use_cache=False)
            if capture.full:
                break
    return capture.result()


# --------------------------------------------------------------------------------------------
# Pure statistics on captured vectors
# --------------------------------------------------------------------------------------------


def spectrum(vectors: np.ndarray, center: bool = False) -> dict[str, float]:
    """How many directions a set of vectors (n, d) occupies.

    Uncentred, the singular values describe the *subspace* the vectors span (the paper's
    "sink keys live in a 1-2 dimensional subspace": a nearly constant vector gives one large
    singular value); centred, they describe the spread around the mean. Reported: energy
    share of the top 1 and top 2 directions, and the entropy effective rank of Roy & Vetterli
    (2007), exp(H(s / sum s)), which is 1 for rank one and d for a flat spectrum.
    """
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need at least two vectors as an (n, d) array, got shape {x.shape}")
    if center:
        x = x - x.mean(axis=0, keepdims=True)
    s = np.linalg.svd(x, compute_uv=False)
    energy = s**2 / max(float(np.sum(s**2)), np.finfo(np.float64).tiny)
    p = s / max(float(np.sum(s)), np.finfo(np.float64).tiny)
    p = p[p > 0]
    return {
        "top1_share": float(energy[0]),
        "top2_share": float(energy[:2].sum()),
        "effective_rank": float(np.exp(-np.sum(p * np.log(p)))),
        "n_vectors": int(x.shape[0]),
        "dim": int(x.shape[1]),
    }


def _non_sink_sample(array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random position >= 1 per prompt: as many non-sink vectors as sink vectors."""
    n_prompts, seq = array.shape[:2]
    positions = rng.integers(1, seq, size=n_prompts)
    return array[np.arange(n_prompts), positions]


def subspace_table(captured: dict, heads: dict[str, HeadChoice], seed: int = 0, intervals: bool = True) -> pd.DataFrame:
    """Spectra of sink keys (position 0) vs an equal number of non-sink keys, per head.

    With `intervals`, the sink head's uncentred spectra also get 95 % bootstrap intervals over prompts
    (one key of each kind per prompt; columns `<statistic>_low` / `_high`, NaN elsewhere).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for role, choice in heads.items():
        keys = captured[role]["key"]
        for kind, vectors in (("k(s)", keys[:, 0]), ("k(n)", _non_sink_sample(keys, rng))):
            for center in (False, True):
                row = {"role": role, "layer": choice.layer, "head": choice.head, "keys": kind, "centered": center}
                row |= spectrum(vectors, center=center)
                if intervals and role == "sink" and not center:
                    row |= spectrum_intervals(vectors, seed=seed)
                rows.append(row)
    return pd.DataFrame(rows)


INTERVAL_STATISTICS = ("effective_rank", "top2_share")


def spectrum_intervals(vectors: np.ndarray, seed: int = 0) -> dict[str, float]:
    """95 % bootstrap intervals over the vectors (one per prompt) of the uncentred effective rank and
    top-2 energy share: `<statistic>_low`, `<statistic>_high` (one SVD per resample serves both).

    Duplicated vectors in a resample lower the rank it can show: the interval is biased low when the
    rank nears the number of prompts, little for sink keys (rank 1-2 of tens of prompts)."""
    from spikesink.reporting.verdicts import LEVEL, N_BOOTSTRAP

    x = np.asarray(vectors, dtype=np.float64)
    rng = np.random.default_rng(seed)
    draws = [spectrum(x[rng.integers(0, len(x), len(x))]) for _ in range(N_BOOTSTRAP)]
    tail = (1 - LEVEL) / 2
    out = {}
    for name in INTERVAL_STATISTICS:
        low, high = np.quantile([d[name] for d in draws], [tail, 1 - tail])
        out[f"{name}_low"], out[f"{name}_high"] = float(low), float(high)
    return out


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity between rows of a (n, d) and b (m, d)."""
    an = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    return an @ bn.T


def query_key_gap_by_prompt(query: np.ndarray, key: np.ndarray) -> pd.DataFrame:
    """Do non-sink queries sit closer to the sink key than to the non-sink keys they can see? Per prompt.

    query, key: (P, T, D) for one head. For every prompt and query position i >= 1 we compare
    the query with the sink key k_0 and with the non-sink keys k_1..k_i (causal: only keys the
    query attends to), by cosine similarity and by Euclidean distance. One row per prompt: means
    over its queries; `share_closer_to_sink` is the fraction of queries whose cosine to k_0 exceeds
    their largest cosine to any visible non-sink key.
    """
    q = np.asarray(query, dtype=np.float64)
    k = np.asarray(key, dtype=np.float64)
    n_prompts, seq, _ = q.shape
    if seq < 3:
        raise ValueError("need at least 3 positions (a sink key and two non-sink tokens)")
    visible = np.tril(np.ones((seq - 1, seq - 1), dtype=bool))  # query i (>=1) sees keys 1..i
    n_visible = visible.sum(-1)
    rows = []
    for p in range(n_prompts):
        queries, sink_key, non_keys = q[p, 1:], k[p, :1], k[p, 1:]
        c_sink = _cosine(queries, sink_key)[:, 0]
        c_non = (_cosine(queries, non_keys) * visible).sum(-1) / n_visible
        d_sink = np.linalg.norm(queries - sink_key, axis=-1)
        d_non = np.sqrt(np.maximum(
            (queries**2).sum(-1)[:, None] + (non_keys**2).sum(-1)[None, :] - 2 * queries @ non_keys.T, 0.0
        ))  # fmt: skip
        d_non = (d_non * visible).sum(-1) / n_visible
        closer = c_sink > np.where(visible, _cosine(queries, non_keys), -np.inf).max(-1)
        rows.append(
            {
                "prompt": p,
                "cos_to_sink": c_sink.mean(),
                "cos_to_non_sink": c_non.mean(),
                "cos_gap": (c_sink - c_non).mean(),
                "dist_to_sink": d_sink.mean(),
                "dist_to_non_sink": d_non.mean(),
                "dist_gap": (d_non - d_sink).mean(),  # positive: closer to the sink key
                "share_closer_to_sink": closer.mean(),
                "n_queries": int(c_sink.size),
            }
        )
    return pd.DataFrame(rows)


def query_key_gap(query: np.ndarray, key: np.ndarray) -> dict[str, float]:
    """query_key_gap_by_prompt's statistics as means over every query (all prompts have T - 1)."""
    per_prompt = query_key_gap_by_prompt(query, key)
    out = {name: float(per_prompt[name].mean()) for name in per_prompt.columns if name not in ("prompt", "n_queries")}
    return out | {"n_queries": int(per_prompt["n_queries"].sum())}


def gap_table(captured: dict, heads: dict[str, HeadChoice]) -> pd.DataFrame:
    rows = []
    for role, choice in heads.items():
        stats = query_key_gap(captured[role]["query"], captured[role]["key"])
        rows.append({"role": role, "layer": choice.layer, "head": choice.head, "key0_mass": choice.key0_mass} | stats)
    return pd.DataFrame(rows)


def gaps_by_prompt(captured: dict, heads: dict[str, HeadChoice]) -> pd.DataFrame:
    """(role, prompt, cos_gap, dist_gap, share_closer_to_sink, ...) for both heads: what the claims'
    intervals resample (the same prompts for both heads)."""
    frames = [
        query_key_gap_by_prompt(captured[role]["query"], captured[role]["key"]).assign(role=role) for role in heads
    ]
    frame = pd.concat(frames, ignore_index=True)
    return frame[["role", *[c for c in frame.columns if c != "role"]]]


def tsne_table(
    captured: dict,
    heads: dict[str, HeadChoice],
    n_points: int = 300,
    random_state: int = 0,
    perplexity: float = 30.0,
    iterations: int = 1000,
) -> pd.DataFrame:
    """2-D t-SNE of q(n), k(n) and k(s) of each head, embedded jointly per head (paper Fig 6).

    Up to `n_points` of each kind: sink keys are one per prompt; q(n) and k(n) are drawn at
    random positions >= 1 with a fixed seed. t-SNE uses PCA initialisation and a fixed
    random_state so the figure is reproducible.
    """
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(random_state)
    frames = []
    for role, choice in heads.items():
        query, key = captured[role]["query"], captured[role]["key"]
        n_prompts, seq = key.shape[:2]
        n_sink = min(n_points, n_prompts)
        sink_keys = key[rng.permutation(n_prompts)[:n_sink], 0]
        prompts = rng.integers(0, n_prompts, size=n_points)
        positions = rng.integers(1, seq, size=n_points)
        q_n = query[prompts, positions]
        positions = rng.integers(1, seq, size=n_points)
        k_n = key[rng.integers(0, n_prompts, size=n_points), positions]
        points = np.concatenate([q_n, k_n, sink_keys]).astype(np.float64)
        labels = np.array(["q(n)"] * len(q_n) + ["k(n)"] * len(k_n) + ["k(s)"] * len(sink_keys))
        effective_perplexity = float(min(perplexity, (len(points) - 1) / 3))
        embedding = TSNE(
            n_components=2,
            perplexity=effective_perplexity,
            init="pca",
            random_state=random_state,
            max_iter=iterations,
        ).fit_transform(points)
        frames.append(
            pd.DataFrame(
                {
                    "role": role,
                    "layer": choice.layer,
                    "head": choice.head,
                    "kind": labels,
                    "x": embedding[:, 0].astype(np.float32),
                    "y": embedding[:, 1].astype(np.float32),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def sink_geometry(
    model: nn.Module,
    batches: Iterable,
    key0_mass_layer_head: np.ndarray,
    max_prompts: int = 256,
    tsne_points: int = 300,
    tsne_iterations: int = 1000,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """Choose the two heads, capture their q/k on `batches`: the heads, the subspace, gap (overall and per
    prompt) and t-SNE tables."""
    heads = choose_heads(key0_mass_layer_head)
    captured = collect_qk(model, batches, heads, max_prompts)
    return {
        "heads": pd.DataFrame([vars(choice) for choice in heads.values()]),
        "subspace": subspace_table(captured, heads, seed),
        "gaps": gap_table(captured, heads),
        "per_prompt": gaps_by_prompt(captured, heads),
        "tsne": tsne_table(captured, heads, tsne_points, random_state=seed, iterations=tsne_iterations),
    }
