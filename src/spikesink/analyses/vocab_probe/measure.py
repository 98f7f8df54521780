"""Vocabulary probe (paper Table 2): which vocabulary items spike when they are the first token.

Every id is fed alone at position 0 (no BOS); a token is a *spike token* when the post-residual
state of some probed intermediate block makes it one (`spikesink.instrumentation.spikes`: absolute
floor and ratio to the median magnitude of the same block's state on ordinary text). The control feeds the same ids after a fixed
neutral prefix, whose keys and values are computed once and reused for every batch, so the
control costs about as much as the position-0 scan.

The forward stops after the last probed block (the taps' `stop_after_last`) and never reaches the
LM head, which is why the probe can be cheaper than plain single-token forwards. Statistics are
float32 whatever the model dtype (bf16 on CUDA is fine).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Mapping, Sequence
from copy import deepcopy

import numpy as np
import pandas as pd
import torch

from spikesink.analyses.lifecycle.result import Lifecycle
from spikesink.analyses.unit import Job
from spikesink.analyses.vocab_probe.result import VocabProbe
from spikesink.instrumentation.layout import model_layout
from spikesink.instrumentation.spikes import SpikeRule, spike_tokens, state_median
from spikesink.instrumentation.taps import block_taps, run_decoder

log = logging.getLogger(__name__)


def measure(job: Job) -> VocabProbe:
    s = job.settings
    frame, summary = run_vocab_probe(
        job.model.model,
        job.model.tokenizer,
        job.rule,
        lifecycle=job["lifecycle"],
        blocks=s.blocks,
        prefix=s.prefix,
        batch_size=s.batch_size,
        limit=s.limit,
    )
    # wall-clock seconds go to the log, not into a result that must be identical across runs
    log.info("probe seconds: %s", summary.pop("seconds", None))
    return VocabProbe(frame=frame, summary=summary)


def default_probe_blocks(total_blocks: int) -> list[int]:
    """Intermediate blocks: all but the first layer's and the last layer's blocks.

    The paper counts a token when it is massive "in intermediate layers"; the pipeline may pass
    a narrower set (e.g. the plateau between the step-up and step-down blocks), which also makes
    the forward stop earlier.
    """
    if total_blocks < 6:
        return list(range(1, total_blocks + 1))
    return list(range(3, total_blocks - 1))


class _PeakRecorder:
    """Per-token running maximum over blocks of the last position's peak, plus spike flags.

    Two medians (spikesink.instrumentation.spikes): the token's own state (`massive_own`, all
    that a one-token state offers) and, when given, a per-block reference median of ordinary
    text (`massive_ref`: the same block's whole-sequence median, which ordinary tokens
    dominate). The reference matters when the spike lifts a token's whole state (SmolLM2:
    median ~45 at a 2.2e4 spike, ratio ~500).
    """

    def __init__(
        self, batch: int, rule: SpikeRule, device, reference_median: Mapping[int, float] | None = None
    ) -> None:
        self.rule = rule
        self.reference = reference_median
        self.peak = torch.zeros(batch, device=device)
        self.block = torch.zeros(batch, dtype=torch.long, device=device)
        self.channel = torch.zeros(batch, dtype=torch.long, device=device)
        self.ratio_own = torch.zeros(batch, device=device)
        self.massive_own = torch.zeros(batch, dtype=torch.bool, device=device)
        self.massive_ref = torch.zeros(batch, dtype=torch.bool, device=device)
        self.first_block = torch.zeros(batch, dtype=torch.long, device=device)

    @property
    def massive(self) -> torch.Tensor:
        return self.massive_ref if self.reference is not None else self.massive_own

    def __call__(self, block: int, state: torch.Tensor) -> None:
        token = state[:, -1:]  # (B, 1, d): the probed token
        own = spike_tokens(token, self.rule)
        peak = own.token_max[:, 0]
        channel = token[:, 0].abs().argmax(dim=-1)
        better = peak > self.peak
        self.peak = torch.where(better, peak, self.peak)
        self.channel = torch.where(better, channel, self.channel)
        self.block = torch.where(better, torch.full_like(self.block, block), self.block)
        self.ratio_own = torch.maximum(self.ratio_own, peak / own.median.clamp_min(1e-30))
        self.massive_own |= own.mask[:, 0]
        if self.reference is not None:
            self.massive_ref |= spike_tokens(token, self.rule, reference_median=float(self.reference[block])).mask[:, 0]
        newly = self.massive & (self.first_block == 0)
        self.first_block = torch.where(newly, torch.full_like(self.block, block), self.first_block)


def reference_medians(model, ids: Sequence[int], blocks: Sequence[int], skip_first: bool = True) -> dict[int, float]:
    """Per-block median |h| over the post-residual states of one ordinary text (float32).

    Position 0 is skipped by default: it is the spike token we are trying to detect.
    """
    device = next(model.parameters()).device
    medians: dict[int, float] = {}

    def record(block: int, state: torch.Tensor) -> None:
        medians[block] = float(state_median(state[:1, 1:] if skip_first else state[:1])[0])

    if len(ids) < 2 + int(skip_first):
        raise ValueError("the reference text needs at least two tokens after position 0")
    with block_taps(model, blocks, record):
        run_decoder(model, input_ids=torch.as_tensor([list(ids)], device=device))
    return medians


def _cache_kwarg(model) -> str:
    """Name of the KV-cache argument of the decoder forward (`cache` in transformers >= 5.2x)."""
    params = inspect.signature(model_layout(model).decoder.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def prefix_kv(model, prefix_ids: Sequence[int]):
    """The model's cache after the prefix (batch 1), computed once: keys and values of every layer,
    or a hybrid's linear-attention states (Qwen3-Next's convolution and recurrent states)."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model_layout(model).decoder(input_ids=torch.as_tensor([list(prefix_ids)], device=device), use_cache=True)
    return getattr(out, "cache", None) or getattr(out, "past_key_values", None)


def _expanded_cache(model, cache, batch: int):
    """A copy of the prefix's cache repeated `batch` times along the batch (its layers' own
    reorder_cache: keys and values, or linear-attention states alike); the prefix's stays intact."""
    copy = deepcopy(cache)
    copy.reorder_cache(torch.zeros(batch, dtype=torch.long, device=next(model.parameters()).device))
    return copy


def probe_peaks(
    model,
    token_ids: Sequence[int],
    blocks: Sequence[int],
    rule: SpikeRule,
    prefix_ids: Sequence[int] | None = None,
    batch_size: int = 512,
    reference_median: Mapping[int, float] | None = None,
    progress: bool = True,
    desc: str = "vocab probe",
) -> dict[str, np.ndarray]:
    """Each id alone (prefix_ids None: position 0) or after the prefix; peak stats per id.

    Returns numpy arrays: peak (max |h| over probed blocks and channels), block (where), channel,
    massive (is_massive at some probed block against reference_median[block] if given, else
    against the token's own median), massive_own (always against the own median), ratio_own
    (max over blocks of peak / own median), first_block (first massive block, 0 if none).
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    ids = np.asarray(token_ids, dtype=np.int64)
    kv = prefix_kv(model, prefix_ids) if prefix_ids else None
    cache_name = _cache_kwarg(model)
    keys = ("peak", "block", "channel", "massive", "massive_own", "ratio_own", "first_block")
    out = {key: [] for key in keys}
    starts = range(0, len(ids), batch_size)
    for start in tqdm(starts, desc=desc, disable=not progress, unit="batch"):
        chunk = torch.as_tensor(ids[start : start + batch_size], device=device)[:, None]
        recorder = _PeakRecorder(len(chunk), rule, device, reference_median)
        inputs = {"input_ids": chunk, "use_cache": kv is not None}
        if kv is not None:
            inputs[cache_name] = _expanded_cache(model, kv, len(chunk))
        with block_taps(model, blocks, recorder):
            run_decoder(model, **inputs)
        for key in keys:
            out[key].append(getattr(recorder, key).cpu().numpy())
    return {key: np.concatenate(value) if value else np.zeros(0) for key, value in out.items()}


def _synced_elapsed(start: float, model) -> float:
    if next(model.parameters()).is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def embedding_geometry(model) -> tuple[np.ndarray, np.ndarray]:
    """(norm, distance to the mean embedding) of every input-embedding row, float32."""
    weight = model.get_input_embeddings().weight.detach().float()
    mean = weight.mean(dim=0, keepdim=True)
    return weight.norm(dim=1).cpu().numpy(), (weight - mean).norm(dim=1).cpu().numpy()


def token_strings(tokenizer, token_ids: Sequence[int]) -> tuple[list[str], list[str]]:
    """(raw vocabulary string, decoded text) per id; empty strings without a tokenizer."""
    if tokenizer is None:
        return [""] * len(token_ids), [""] * len(token_ids)
    ids = [int(i) for i in token_ids]
    raw = [str(t) for t in tokenizer.convert_ids_to_tokens(ids)]
    text = tokenizer.batch_decode([[i] for i in ids])
    return raw, text


def exception_correlation(is_exception: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """Spearman rank correlation and AUROC of 'is exception' against one embedding statistic.

    AUROC is the probability that an exception has a *smaller* value than a spike token (1 when
    all exceptions sit closer to the mean / have smaller norms, as the paper's 'near
    initialisation' explanation predicts); NaN when one class is empty.
    """
    from scipy.stats import mannwhitneyu, spearmanr

    exc = np.asarray(is_exception, dtype=bool)
    values = np.asarray(values, dtype=np.float64)
    if exc.all() or not exc.any():
        return {"spearman": float("nan"), "auroc_smaller": float("nan")}
    rho = spearmanr(exc.astype(float), values).statistic
    u = mannwhitneyu(values[~exc], values[exc]).statistic  # pairs where spike value > exception value
    return {"spearman": float(rho), "auroc_smaller": float(u / (exc.sum() * (~exc).sum()))}


def vocab_probe(
    model,
    tokenizer,
    rule: SpikeRule,
    blocks: Sequence[int] | None = None,
    prefix: str | None = None,
    prefix_ids: Sequence[int] | None = None,
    token_ids: Sequence[int] | None = None,
    batch_size: int = 512,
    median_source: str = "reference",
    reference_median: Mapping[int, float] | None = None,
    later: bool = True,
    max_listed: int = 500,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict]:
    """Table 2: the probe at position 0 and, as control, after a fixed prefix.

    blocks: paper block numbers whose post-residual state is checked (default: intermediate
    blocks). prefix / prefix_ids: the neutral prefix of the control (prefix_ids wins; the text is
    tokenised without special tokens). token_ids: subset of the vocabulary (default: all ids of
    the embedding matrix).

    median_source: "reference" compares each peak with the median magnitude of ordinary text at
    the same block (`reference_median`, e.g. the corpus medians of extract.py; by default the
    prefix's states after position 0), like the whole-sequence median of Sun et al.; "token"
    compares with the token's own state. Both counts are always in the summary.
    Returns (one row per id, summary dict).
    """
    if median_source not in ("reference", "token"):
        raise ValueError(f"median_source must be 'reference' or 'token', not {median_source!r}")
    vocab = model.get_input_embeddings().weight.shape[0]
    ids = np.arange(vocab) if token_ids is None else np.asarray(token_ids, dtype=np.int64)
    blocks = list(blocks) if blocks is not None else default_probe_blocks(model_layout(model).n_blocks)
    if prefix_ids is None and tokenizer is not None and prefix:
        prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    if later and not prefix_ids:
        raise ValueError("the later-position control needs prefix_ids or a prefix and a tokenizer")
    was_training = model.training
    model.eval()
    try:
        if median_source == "reference" and reference_median is None:
            if not prefix_ids:
                raise ValueError("median_source='reference' needs reference_median or a prefix")
            reference_median = reference_medians(model, prefix_ids, blocks)
        reference = reference_median if median_source == "reference" else None
        common = dict(rule=rule, batch_size=batch_size, reference_median=reference, progress=progress)
        seconds = {}
        start = time.perf_counter()
        pos0 = probe_peaks(model, ids, blocks, desc="probe pos 0", **common)
        seconds["pos0"] = _synced_elapsed(start, model)
        if later:
            start = time.perf_counter()
            later_stats = probe_peaks(model, ids, blocks, prefix_ids=prefix_ids, desc="probe later", **common)
            seconds["later"] = _synced_elapsed(start, model)
    finally:
        model.train(was_training)

    frame = probe_frame(model, tokenizer, ids, pos0, later_stats if later else None)
    frame["is_exception"] = ~frame["is_spike_pos0"]
    summary = summarize_probe(frame, vocab, blocks, prefix_ids if later else None, rule, max_listed)
    summary["median_source"] = median_source
    summary["seconds"] = seconds
    summary["reference_median"] = {int(b): float(v) for b, v in reference.items()} if reference is not None else None
    return frame, summary


def probe_frame(model, tokenizer, ids: np.ndarray, pos0: Mapping, later: Mapping | None) -> pd.DataFrame:
    """One row per probed id: its strings, peaks, spike flags and embedding geometry."""
    norms, distances = embedding_geometry(model)
    raw, text = token_strings(tokenizer, ids)
    frame = pd.DataFrame(
        {
            "token_id": ids,
            "token": raw,
            "text": text,
            "peak_pos0": pos0["peak"].astype(np.float32),
            "peak_block_pos0": pos0["block"],
            "peak_channel_pos0": pos0["channel"],
            "first_spike_block_pos0": pos0["first_block"],
            "peak_to_own_median_pos0": pos0["ratio_own"].astype(np.float32),
            "is_spike_pos0": pos0["massive"].astype(bool),
            "is_spike_pos0_own_median": pos0["massive_own"].astype(bool),
            "embedding_norm": norms[ids],
            "embedding_distance": distances[ids],
        }
    )
    if later is not None:
        frame["peak_later"] = later["peak"].astype(np.float32)
        frame["peak_block_later"] = later["block"]
        frame["is_spike_later"] = later["massive"].astype(bool)
        frame["is_spike_later_own_median"] = later["massive_own"].astype(bool)
    return frame


def summarize_probe(
    frame: pd.DataFrame,
    vocab_size: int,
    blocks: Sequence[int],
    prefix_ids,
    rule: SpikeRule,
    max_listed: int = 500,
) -> dict:
    """Counts and ratios as in Table 2, plus who the exceptions are and how their embeddings sit."""
    n = len(frame)
    spikes = int(frame["is_spike_pos0"].sum())
    exceptions = frame[frame["is_exception"]].sort_values("embedding_distance")
    summary = {
        "vocab_size": int(vocab_size),
        "n_probed": n,
        "n_spike_pos0": spikes,
        "ratio_pos0": spikes / n if n else float("nan"),
        "n_spike_pos0_own_median": int(frame["is_spike_pos0_own_median"].sum()),
        "n_exceptions": int(len(exceptions)),
        "blocks": [int(b) for b in blocks],
        "floor": float(rule.floor),
        "median_ratio": float(rule.median_ratio),
        "median_peak_pos0": float(frame["peak_pos0"].median()) if n else float("nan"),
        "exception_vs_distance": exception_correlation(frame["is_exception"], frame["embedding_distance"]),
        "exception_vs_norm": exception_correlation(frame["is_exception"], frame["embedding_norm"]),
        "exceptions": exceptions.head(max_listed)[
            ["token_id", "token", "text", "embedding_distance", "embedding_norm", "peak_pos0"]
        ].to_dict(orient="records"),
        "exceptions_listed": int(min(max_listed, len(exceptions))),
    }
    if "is_spike_later" in frame:
        later = int(frame["is_spike_later"].sum())
        summary.update(
            {
                "prefix_ids": [int(i) for i in prefix_ids] if prefix_ids is not None else None,
                "n_spike_later": later,
                "ratio_later": later / n if n else float("nan"),
                "n_spike_later_own_median": int(frame["is_spike_later_own_median"].sum()),
                "median_peak_later": float(frame["peak_later"].median()) if n else float("nan"),
                "later_spike_tokens": frame[frame["is_spike_later"]]
                .head(max_listed)[["token_id", "token", "text"]]
                .to_dict(orient="records"),
            }
        )
    return summary


# ------------------------------------------------------------------------------------------
# The pipeline's choices: blocks and reference medians from the life cycle
# ------------------------------------------------------------------------------------------


PLATEAU_START_BLOCKS = 4


def probe_blocks_from_lifecycle(lifecycle: Lifecycle | None, total_blocks: int, which: str = "plateau") -> list[int]:
    """Blocks to probe: the detected plateau (first to last massive block) or all intermediate ones.

    The plateau is where a position-0 spike lives in the corpus, so probing it decides every
    id; it also lets the forward stop at the plateau's end. Falls back to the intermediate
    blocks when no plateau was detected.
    """
    plateau = lifecycle.plateau if lifecycle else None
    if which == "plateau" and plateau:
        return list(range(int(plateau[0]), int(plateau[1]) + 1))
    if which == "plateau_start" and plateau:
        # the first blocks after the step-up: a spike token is massive there already, and the
        # forward can stop at about half depth (a spike that forms later in the plateau is missed)
        return list(range(int(plateau[0]), min(int(plateau[0]) + PLATEAU_START_BLOCKS, int(plateau[1]) + 1)))
    if which not in ("plateau", "plateau_start", "intermediate"):
        raise ValueError(f"blocks must be 'plateau', 'plateau_start' or 'intermediate', not {which!r}")
    return default_probe_blocks(total_blocks)


def lifecycle_reference_median(lifecycle: Lifecycle | None) -> dict[int, float] | None:
    """Per-block corpus median |h| (whole-prompt median, mean over prompts) from the life cycle."""
    medians = lifecycle.median_by_block if lifecycle else None
    return {b: float(v) for b, v in enumerate(medians, start=1)} if medians else None


def run_vocab_probe(
    model,
    tokenizer,
    rule: SpikeRule,
    lifecycle: Lifecycle | None = None,
    blocks: str | Sequence[int] = "plateau",
    prefix: str | None = None,
    median_source: str = "reference",
    batch_size: int = 512,
    limit: int | None = None,
    later: bool = True,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict]:
    """vocab_probe with the pipeline's choices: plateau blocks and the corpus medians as reference.

    limit probes only the first `limit` ids (smoke runs); the summary records it.
    """
    total = model_layout(model).n_blocks
    chosen = list(blocks) if not isinstance(blocks, str) else probe_blocks_from_lifecycle(lifecycle, total, blocks)
    reference = lifecycle_reference_median(lifecycle) if median_source == "reference" else None
    vocab = model.get_input_embeddings().weight.shape[0]
    ids = None if limit is None else np.arange(min(int(limit), vocab))
    frame, summary = vocab_probe(
        model,
        tokenizer,
        rule,
        blocks=chosen,
        prefix=prefix,
        token_ids=ids,
        batch_size=batch_size,
        median_source=median_source,
        reference_median=reference,
        later=later,
        progress=progress,
    )
    summary["limit"] = limit
    summary["reference_from"] = (
        "lifecycle corpus medians"
        if reference is not None
        else ("prefix" if median_source == "reference" else "token's own state")
    )
    return frame, summary
