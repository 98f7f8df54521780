"""Typed readers and writers of every stage output the workflow caches (torch-free).

Each stage writes its results through one writer here and every later stage (and the figure and
table scripts, which must not import torch) reads them through the matching reader, so a file's
layout is defined once:

    results/<model>/block_stats.npz + .json   BlockStats        (extraction)
    results/<model>/sinks.npz                 SinkStats         (extraction, same forward)
    results/<model>/prompts/<set>.npz + .json PromptSet         (prompt sampling)
    results/<model>/<analysis>/               the analysis's Result (spikesink.analyses.store)
    results/<model>/claims/<analysis>.json    scorecard.Claim   (every analysis's report)
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields

import numpy as np

from spikesink.io import load_npz, outputs_together, read_json, with_extension, write_json, write_npz

PathLike = str | os.PathLike

# ------------------------------------------------------------------------------ block statistics

KINDS = ("residual", "output")
RESIDUAL, OUTPUT = 0, 1


@dataclass
class BlockStats:
    """Arrays indexed [kind, block - 1, ...]; `block` is 1-based as in the paper."""

    topk_abs: np.ndarray  # (2, B, N, k) float32, descending
    topk_value: np.ndarray  # (2, B, N, k) float32, signed
    topk_position: np.ndarray  # (2, B, N, k) int32
    topk_channel: np.ndarray  # (2, B, N, k) int32
    median: np.ndarray  # (2, B, N) float32
    token_max: np.ndarray  # (2, B, N, T) float32
    channel_max: np.ndarray  # (B, d) float32, residual kind only
    pos0_mean: np.ndarray  # (2, B, d) float32
    spike_mean: np.ndarray  # (2, B, d) float32 (zeros where no spike token yet)
    spike_count: np.ndarray  # (B,) int64: spike tokens that entered spike_mean at each block
    input_ids: np.ndarray  # (N, T) int64
    meta: dict = field(default_factory=dict)
    sinks: dict | None = None  # sinks.SinkStatistics.result() from the same forward, if asked for

    @property
    def n_blocks(self) -> int:
        return self.median.shape[1]

    @property
    def d_model(self) -> int:
        return self.channel_max.shape[1]

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in ARRAY_FIELDS}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict) -> BlockStats:
        return cls(**{name: arrays[name] for name in ARRAY_FIELDS}, meta=meta)


ARRAY_FIELDS = (
    "topk_abs",
    "topk_value",
    "topk_position",
    "topk_channel",
    "median",
    "token_max",
    "channel_max",
    "pos0_mean",
    "spike_mean",
    "spike_count",
    "input_ids",
)


def save_block_stats(stats: BlockStats, npz_path: PathLike, json_path: PathLike) -> None:
    with outputs_together():
        write_npz(npz_path, **stats.to_arrays())
        write_json(json_path, stats.meta)


def load_block_stats(npz_path: PathLike, json_path: PathLike) -> BlockStats:
    return BlockStats.from_arrays(load_npz(npz_path), read_json(json_path))


# ------------------------------------------------------------------------------ sink statistics


@dataclass
class SinkStats:
    """Per-sample, layer and head attention on key 0 and on spike tokens, with their summaries."""

    key0_mass: np.ndarray  # (N, L, H)
    spike_mass: np.ndarray  # (N, L, H), NaN where a sample had no spike token yet
    n_queries: np.ndarray  # (N,)
    key0_mass_layer_head: np.ndarray  # (L, H)
    key0_mass_layer: np.ndarray  # (L,)
    sink_ratio_layer_head: np.ndarray  # (L, H) percent of samples
    sink_ratio_layer: np.ndarray  # (L,) percent
    sink_ratio: float  # percent of (sample, layer, head) with key-0 mass > eps
    key0_mass_mean: float
    spike_mass_layer_head: np.ndarray  # (L, H)
    eps: float
    # a learned sink logit per head (GPT-OSS): the share of each query's softmax it takes, mean over
    # queries; NaN in layers without one, None in statistics written before it was measured
    learned_sink_share: np.ndarray | None = None  # (N, L, H)
    learned_sink_share_layer_head: np.ndarray | None = None  # (L, H)
    learned_sink_share_layer: np.ndarray | None = None  # (L,)
    # an output gate sigmoid(g) on the attention output (Qwen3-Next): its mean at position 0 and at the
    # other positions; NaN in layers without one, None in statistics written before it was measured
    output_gate_pos0: np.ndarray | None = None  # (N, L, H)
    output_gate_rest: np.ndarray | None = None  # (N, L, H)
    output_gate_pos0_layer_head: np.ndarray | None = None  # (L, H)
    output_gate_rest_layer_head: np.ndarray | None = None  # (L, H)
    output_gate_pos0_layer: np.ndarray | None = None  # (L,)
    output_gate_rest_layer: np.ndarray | None = None  # (L,)

    @classmethod
    def from_arrays(cls, arrays: dict) -> SinkStats:
        missing = [f.name for f in fields(cls) if f.name not in arrays and f.default is MISSING]
        if missing:
            raise ValueError(f"sink statistics lack {missing}")
        values = {f.name: arrays[f.name] for f in fields(cls) if f.name in arrays}
        for scalar in ("sink_ratio", "key0_mass_mean", "eps"):
            values[scalar] = float(np.asarray(values[scalar]))
        return cls(**values)

    @property
    def has_learned_sinks(self) -> bool:
        share = self.learned_sink_share_layer_head
        return share is not None and bool(np.isfinite(share).any())

    @property
    def has_output_gate(self) -> bool:
        gate = self.output_gate_pos0_layer_head
        return gate is not None and bool(np.isfinite(gate).any())

    @property
    def softmax_layers(self) -> np.ndarray:
        """0-based layers with softmax attention: all but a hybrid's linear-attention layers (NaN rows)."""
        return np.flatnonzero(np.isfinite(np.asarray(self.key0_mass_layer, dtype=np.float64)))

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            f.name: np.asarray(getattr(self, f.name), dtype=np.float32)
            for f in fields(self)
            if getattr(self, f.name) is not None
        }


def write_sink_stats(path: PathLike, stats: SinkStats) -> None:
    write_npz(path, **stats.to_arrays())


def read_sink_stats(path: PathLike) -> SinkStats:
    return SinkStats.from_arrays(load_npz(path))


# ------------------------------------------------------------------------------ prompts


@dataclass
class PromptSet:
    """Token ids of one prompt set (equal-length prompts, or ragged sentences) and their meta."""

    name: str  # extraction | heldout | sentences | long
    ids: list[np.ndarray]  # one int64 array per prompt
    meta: dict = field(default_factory=dict)  # sampling parameters, bos_added, per-prompt records

    @property
    def bos_added(self) -> bool:
        return bool(self.meta.get("bos_added", False))

    def matrix(self, n: int | None = None, length: int | None = None) -> np.ndarray:
        """The first n prompts cut to `length` tokens as an (n, length) int64 array."""
        rows = self.ids[:n]
        length = length or min(len(r) for r in rows)
        if any(len(r) < length for r in rows):
            raise ValueError(f"prompt set {self.name!r} has prompts shorter than {length} tokens")
        return np.stack([r[:length] for r in rows]).astype(np.int64)

    def lists(self, n: int | None = None) -> list[list[int]]:
        return [r.tolist() for r in self.ids[:n]]


def _prompt_stem(path: PathLike) -> str:
    """results/<model>/prompts/<set> from the stem or from its .npz / .json file."""
    text = os.fspath(path)
    for suffix in (".npz", ".json"):
        text = text.removesuffix(suffix)
    return text


def write_prompts(path: PathLike, prompts: PromptSet) -> None:
    """<stem>.npz (ids, lengths) and <stem>.json (meta); `path` is the stem or either file."""
    stem = _prompt_stem(path)
    lengths = np.asarray([len(r) for r in prompts.ids], dtype=np.int64)
    flat = np.concatenate(prompts.ids).astype(np.int64) if prompts.ids else np.zeros(0, np.int64)
    with outputs_together():
        write_npz(with_extension(stem, ".npz"), ids=flat, lengths=lengths)
        write_json(with_extension(stem, ".json"), {"name": prompts.name, **prompts.meta})


def read_prompts(path: PathLike) -> PromptSet:
    stem = _prompt_stem(path)
    arrays = load_npz(with_extension(stem, ".npz"))
    meta = read_json(with_extension(stem, ".json"))
    ends = np.cumsum(arrays["lengths"])
    ids = [arrays["ids"][end - n : end] for end, n in zip(ends, arrays["lengths"])]
    return PromptSet(meta.pop("name"), ids, meta)
