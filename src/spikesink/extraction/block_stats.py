"""One batched forward pass, hooks on every block, streaming float32 statistics per block.

For each of the 2L blocks (paper numbering and states: spikesink.instrumentation.blocks) and
each of two *kinds* of hidden state,

    kind 0 "residual": the block's post-residual state (input + output),
    kind 1 "output":   what the block adds to the residual stream (after any output norm),

we keep, per prompt: the top-k magnitudes over (position, channel) with their signed value,
position and channel; the median magnitude; the max magnitude of every token. The residual's
median is exact (it decides every spike threshold); the output's is only drawn (the life-cycle
figure's dotted line), so it is taken over every `OUTPUT_MEDIAN_STRIDE`-th entry, which saves
half the cost of the medians (tests/test_extract.py bounds its error). Across prompts:
the max magnitude of every channel (residual only), the mean vector at position 0, and the
mean vector over *spike tokens*: tokens that have been spike tokens
(spikesink.instrumentation.spikes) of the residual at this block or any earlier one during the
same forward. The spike-token
mean of a block's output is what the step-up/step-down detector reads (lifecycle.py).

Nothing of size T x d is kept beyond the hook that sees it. Statistics are float32 even when
the model runs in bf16. The forward runs the decoder stack only: no logits are computed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from spikesink.instrumentation.layout import model_layout
from spikesink.instrumentation.spikes import SpikeRule, _median_of_magnitudes, spike_tokens
from spikesink.instrumentation.taps import Taps, run_decoder
from spikesink.results import OUTPUT, RESIDUAL, BlockStats
from spikesink.settings import ExtractionSettings

log = logging.getLogger(__name__)
STATES = {RESIDUAL: "post_residual", OUTPUT: "output"}
# the block output's median is drawn, never a threshold: every 7th entry (7 is prime to the usual
# widths, so the sample cycles through all channels) is within a few percent of the exact one
OUTPUT_MEDIAN_STRIDE = 7


class NonFiniteHiddenState(FloatingPointError):
    """A hidden state holds NaN or inf: every statistic after it would be NaN and look finished."""


class _Accumulator:
    """Receives hidden states from the hooks, one batch at a time."""

    def __init__(self, n_blocks: int, n_prompts: int, seq_len: int, d_model: int, settings: ExtractionSettings, device):
        self.settings = settings
        self.rule = SpikeRule(settings.floor, settings.median_ratio, settings.median_stride)
        output_stride = max(settings.median_stride, OUTPUT_MEDIAN_STRIDE)
        self.output_rule = SpikeRule(settings.floor, settings.median_ratio, output_stride)
        k = settings.top_k
        shape = (2, n_blocks, n_prompts)
        self.topk_abs = np.zeros(shape + (k,), np.float32)
        self.topk_value = np.zeros(shape + (k,), np.float32)
        self.topk_position = np.zeros(shape + (k,), np.int32)
        self.topk_channel = np.zeros(shape + (k,), np.int32)
        self.median = np.zeros(shape, np.float32)
        self.token_max = np.zeros(shape + (seq_len,), np.float32)
        # running sums stay on the model's device; copied out once at the end
        self.channel_max = torch.zeros(n_blocks, d_model, dtype=torch.float32, device=device)
        self.pos0_sum = torch.zeros(2, n_blocks, d_model, dtype=torch.float32, device=device)
        self.spike_sum = torch.zeros(2, n_blocks, d_model, dtype=torch.float32, device=device)
        self.spike_count = torch.zeros(n_blocks, dtype=torch.int64, device=device)
        self.n_seen = 0
        self._rows = slice(0, 0)
        self._spike_mask: torch.Tensor | None = None
        self._pending_output: dict[int, torch.Tensor] = {}

    def start_batch(self, start: int, batch_size: int, seq_len: int, device) -> None:
        self._rows = slice(start, start + batch_size)
        self._spike_mask = torch.zeros(batch_size, seq_len, dtype=torch.bool, device=device)
        self._pending_output.clear()
        # per state of this batch, in arrival order: what end_batch turns into the stored arrays
        self._deferred: list[tuple[int, int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def running_spike_mask(self, _layer: int | None = None) -> torch.Tensor:
        """Spike tokens flagged so far in this forward, always including position 0 (key 0)."""
        mask = self._spike_mask.clone()
        mask[:, 0] = True
        return mask

    def end_batch(self) -> None:
        if self._pending_output:
            missing = sorted(self._pending_output)
            raise RuntimeError(f"block outputs without a residual state for blocks {missing}: hooks misfired")
        self._store_deferred()
        self.n_seen = self._rows.stop

    def _per_prompt(self, kind: int, block: int, hidden: torch.Tensor):
        """What needs the (B, T, d) state itself: |h|, the per-token maxima, the median, the rows
        of the k tokens with the largest maxima (the global top-k entries lie in them) and the
        position-0 sum. The rest (top-k over those rows, copies to the stored arrays, the finite
        check) runs once per batch over all states (`_store_deferred`): a few batched ops instead
        of a dozen small ones per state, whose dispatch cost was a third of the statistics' cost."""
        seq_len, d_model = hidden.shape[1:]
        if kind == RESIDUAL:
            spikes = spike_tokens(hidden, self.rule, channel_max=True)
            token_max, median = spikes.token_max, spikes.median
        else:  # the output's spike mask is never read: its maxima and (drawn-only) median suffice
            spikes = None
            mags = hidden.detach().abs() if hidden.dtype == torch.float32 else hidden.detach().abs().float()
            token_max = mags.amax(dim=-1)
            sampled = mags.reshape(len(mags), -1)[:, :: self.output_rule.median_stride].contiguous()
            median = _median_of_magnitudes(sampled, token_max.isnan().any(-1))
        top_tokens = token_max.topk(min(self.settings.top_k, seq_len), dim=1).indices  # (B, k)
        rows = hidden.gather(1, top_tokens[..., None].expand(-1, -1, d_model)).float()  # (B, k, d)
        self._deferred.append((kind, block, token_max, median, top_tokens, rows))
        self.pos0_sum[kind, block - 1] += hidden[:, 0].float().sum(0)
        return spikes

    def _store_deferred(self) -> None:
        """Top-k entries, medians and token maxima of every state of the batch, in batched ops."""
        if not self._deferred:
            return
        kinds = [entry[0] for entry in self._deferred]
        blocks = [entry[1] - 1 for entry in self._deferred]
        token_max = torch.stack([entry[2] for entry in self._deferred])  # (S, B, T)
        median = torch.stack([entry[3] for entry in self._deferred])  # (S, B)
        top_tokens = torch.stack([entry[4] for entry in self._deferred])  # (S, B, k)
        rows = torch.stack([entry[5] for entry in self._deferred])  # (S, B, k, d)
        self._deferred = []
        n_states, batch, k_tokens, d_model = rows.shape
        k = self.settings.top_k
        top_abs, top_flat = rows.abs().reshape(n_states, batch, -1).topk(k, dim=-1)
        top_value = rows.reshape(n_states, batch, -1).gather(-1, top_flat)
        top_position = top_tokens.gather(-1, top_flat // d_model)
        index = (np.asarray(kinds), np.asarray(blocks), self._rows)
        # one index per state: numpy fancy indexing over (kind, block) with the batch's row slice
        for name, values in (
            ("topk_abs", top_abs),
            ("topk_value", top_value),
            ("topk_position", top_position),
            ("topk_channel", top_flat % d_model),
            ("median", median),
            ("token_max", token_max),
        ):
            getattr(self, name)[index] = values.cpu().numpy()
        # max |h| propagates NaN and inf, so the token maxima show any non-finite entry of a state
        finite = np.isfinite(self.token_max[index].reshape(n_states, -1)).all(axis=1)
        if not finite.all():
            first = int(np.argmin(finite))  # states are in forward order: the first bad one
            self._non_finite(kinds[first], blocks[first] + 1)

    def _non_finite(self, kind: int, block: int) -> None:
        prompt, position = np.argwhere(~np.isfinite(self.token_max[kind, block - 1, self._rows]))[0]
        raise NonFiniteHiddenState(
            f"non-finite hidden state (NaN or inf) at block {block} ({STATES[kind]}), first seen at prompt "
            f"{self._rows.start + prompt}, position {position}: a weight is NaN or the state overflowed its "
            "dtype (float16 ends at 65504, below many spikes); load the model in bfloat16 or float32 and "
            "check its weights"
        )

    def block_output(self, block: int, output: torch.Tensor) -> None:
        self._per_prompt(OUTPUT, block, output)
        # the output's spike-token sum needs this block's residual, which arrives next
        self._pending_output[block] = output

    def block_residual(self, block: int, residual: torch.Tensor) -> None:
        spikes = self._per_prompt(RESIDUAL, block, residual)
        b = block - 1
        self.channel_max[b] = torch.maximum(self.channel_max[b], spikes.channel_max)
        self._spike_mask |= spikes.mask
        output = self._pending_output.pop(block)
        if self._spike_mask.any():
            self.spike_sum[RESIDUAL, b] += residual[self._spike_mask].float().sum(0)
            self.spike_sum[OUTPUT, b] += output[self._spike_mask].float().sum(0)
            self.spike_count[b] += self._spike_mask.sum()

    def finish(self, input_ids: np.ndarray, meta: dict) -> BlockStats:
        n = max(self.n_seen, 1)
        count = self.spike_count.clamp(min=1).to(torch.float32)
        return BlockStats(
            topk_abs=self.topk_abs,
            topk_value=self.topk_value,
            topk_position=self.topk_position,
            topk_channel=self.topk_channel,
            median=self.median,
            token_max=self.token_max,
            channel_max=self.channel_max.cpu().numpy(),
            pos0_mean=(self.pos0_sum / n).cpu().numpy(),
            spike_mean=(self.spike_sum / count[None, :, None]).cpu().numpy(),
            spike_count=self.spike_count.cpu().numpy(),
            input_ids=input_ids,
            meta=meta,
        )


def _block_taps(model: torch.nn.Module, acc: _Accumulator) -> Taps:
    """Output and post-residual of every block; the output arrives first (see taps.py)."""
    n = model_layout(model).n_blocks
    requests = [(b, state) for b in range(1, n + 1) for state in ("output", "post_residual")]

    def on_state(block: int, state: str, tensor: torch.Tensor) -> None:
        if state == "output":
            acc.block_output(block, tensor)
        else:
            acc.block_residual(block, tensor)

    return Taps(model, requests, on_state)


def batches(input_ids: np.ndarray, batch_size: int) -> Iterable[tuple[int, np.ndarray]]:
    for start in range(0, len(input_ids), batch_size):
        yield start, input_ids[start : start + batch_size]


@torch.inference_mode()
def extract_block_stats(
    model: torch.nn.Module,
    input_ids: np.ndarray,
    batch_size: int = 8,
    settings: ExtractionSettings | None = None,
    meta: dict | None = None,
    progress: bool = True,
    collect_sinks: bool = False,
    sink_eps: float | None = None,
) -> BlockStats:
    """Run `input_ids` (N, T) through `model` once, in batches, and return the block statistics.

    With `collect_sinks`, the attention each head gives to key 0 and to the spike tokens found
    so far in the same forward (sinks.SinkStatistics) is gathered in the same pass.
    """
    settings = settings or ExtractionSettings()
    input_ids = np.asarray(input_ids, dtype=np.int64)
    if input_ids.ndim != 2 or input_ids.shape[1] < 2:
        raise ValueError(f"input_ids must be (n_prompts, seq_len >= 2), got shape {input_ids.shape}")
    n_prompts, seq_len = input_ids.shape
    device = next(model.parameters()).device
    layout = model_layout(model)
    acc = _Accumulator(layout.n_blocks, n_prompts, seq_len, layout.d_model, settings, device)
    sinks = None
    with contextlib.ExitStack() as stack:
        stack.enter_context(_block_taps(model, acc))
        if collect_sinks:
            from spikesink.extraction.sink_stats import SinkStatistics

            # spike tokens flagged by the residual taps of earlier blocks of this forward
            sinks = stack.enter_context(SinkStatistics(model, acc.running_spike_mask, eps=sink_eps))
        for start, chunk in tqdm(
            list(batches(input_ids, batch_size)), desc="extract", unit="batch", disable=not progress
        ):
            ids = torch.from_numpy(chunk).to(device)
            acc.start_batch(start, len(chunk), seq_len, device)
            run_decoder(model, input_ids=ids, use_cache=False)
            acc.end_batch()
    meta = dict(meta or {})
    meta.update(
        n_prompts=n_prompts,
        seq_len=seq_len,
        n_blocks=layout.n_blocks,
        d_model=layout.d_model,
        architecture=layout.describe(),
        model_dtype=str(next(model.parameters()).dtype).replace("torch.", ""),
        top_k=settings.top_k,
        median_stride=settings.median_stride,
        output_median_stride=max(settings.median_stride, OUTPUT_MEDIAN_STRIDE),
        floor=settings.floor,
        median_ratio=settings.median_ratio,
    )
    stats = acc.finish(input_ids, meta)
    stats.sinks = sinks.result() if sinks is not None else None
    return stats


def run_extraction(model, prompts, config, name: str, batch_size: int | None = None, progress: bool = True):
    """The extraction stage on an instrumented model: (BlockStats, SinkStats) of the prompt set,
    with the validated config's extraction settings and sink eps (the workflow's extraction rule
    and the public API both call this). `batch_size` overrides extraction.batch_size."""
    from spikesink.config import extraction_settings
    from spikesink.results import SinkStats

    stats = extract_block_stats(
        model.model,
        prompts.matrix(),
        batch_size=batch_size or config["extraction"]["batch_size"],
        settings=extraction_settings(config),
        meta={"model": name, "bos_added": prompts.bos_added, "manifest": model.manifest},
        collect_sinks=True,
        sink_eps=config["sinks"]["eps"],
        progress=progress,
    )
    return stats, SinkStats.from_arrays(stats.sinks)
