"""Causal test of 'spikes make sinks': edit the spike channels of the first token at a step-up
block and measure what happens to the sinks, the spike and perplexity.

The paper argues that the massive activation written by the step-up block(s) into a few
channels of the first token is what lets later attention heads single out that token as a
sink (through the pre-norm, which turns the spike into a near-constant sparse vector). If so,
removing the spike at the block that creates it should reduce the attention on key 0.

Interventions (one edited block state, paper numbering; spikesink.instrumentation.taps):

* mode "zero": the chosen channels of the first token are set to 0;
* mode "mean": set to their mean over the batch's non-spike tokens (a softer edit: the token
  keeps a typical value in those channels instead of an impossible exact zero).
* site "block_output" (default): edit what the block adds (its `output` state), i.e. cancel the
  block's write into those channels; site "residual": edit the post-residual state after an FFN
  block (the layer output), i.e. remove the spike from the stream itself. An *attention*
  block's post-residual is not the output of any module, so "residual" is refused for odd
  blocks (we do not patch model code).
* positions "first" (default) or "spike": also edit every other spike token of this block's
  state (spikesink.instrumentation.spikes).

Measured per condition on held-out token batches: sink ratio and mean key-0 mass (through
sinks.SinkStatistics, in the same forward), perplexity, and the spike itself (largest residual
magnitude over layers, at token 0 and over all tokens). The same forwards also give them per
prompt (`per_prompt`: summed next-token loss and its token count, sink ratio, key-0 mass, spike),
what the claims' bootstrap over prompts resamples.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from spikesink.analyses.intervention.result import Intervention
from spikesink.analyses.unit import Job
from spikesink.extraction.perplexity import batched, token_nll
from spikesink.extraction.sink_stats import SinkStatistics
from spikesink.instrumentation.layout import model_layout
from spikesink.instrumentation.spikes import SpikeRule, spike_tokens
from spikesink.instrumentation.taps import Taps, edit_state
from spikesink.metrics import sinking

MODES = ("zero", "mean")
SITES = {"block_output": "output", "residual": "post_residual"}  # site -> edited block state


def not_applicable(job: Job) -> str | None:
    lc = job["lifecycle"]
    return None if lc.step_up and lc.spike_channels else "no step-up block or spike channel was detected"


def measure(job: Job) -> Intervention:
    """Each chosen step-up block edited in turn, measured on the held-out prompts."""
    s, lc = job.settings, job["lifecycle"]
    blocks = {"first": lc.step_up[:1], "last": lc.step_up[-1:], "all": lc.step_up}[s.which_step_up]
    batches = batched(job["prompts.heldout"].matrix(), job.shared.heldout_batch_size)
    tables = [
        intervention_tables(
            job.model.model,
            batches,
            block,
            lc.spike_channels,
            job.rule,
            modes=tuple(s.modes),
            site=s.site,
            positions=s.positions,
            eps=job.shared.sink_eps,
        )
        for block in blocks
    ]
    return Intervention(
        table=pd.concat([t for t, _ in tables], ignore_index=True),
        per_prompt=pd.concat([p for _, p in tables], ignore_index=True),
    )


def spike_token_mask(hidden: torch.Tensor, rule: SpikeRule) -> torch.Tensor:
    """(B, T) bool: the spike tokens of a (B, T, d) state (the median is the sample's whole state)."""
    return spike_tokens(hidden.detach(), rule).mask


def replacement_values(hidden: torch.Tensor, channels: torch.Tensor, mode: str, spikes: torch.Tensor) -> torch.Tensor:
    """(len(channels),) values to write: zeros, or the channel means over non-spike tokens.

    The first token is never part of the mean (it is the token being edited).
    """
    if mode == "zero":
        return torch.zeros(len(channels), dtype=hidden.dtype, device=hidden.device)
    if mode != "mean":
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    keep = ~spikes.clone()
    keep[:, 0] = False
    if not bool(keep.any()):
        raise ValueError("no non-spike token in the batch to take a mean from")
    values = hidden[..., channels].to(torch.float32)[keep]  # (n_tokens, C)
    return values.mean(dim=0).to(hidden.dtype)


@dataclass
class InterventionLog:
    """What the hook did, to check that the edit happened (max |value| before/after at edited tokens)."""

    calls: int = 0
    edited_tokens: int = 0
    max_before: float = 0.0
    max_after: float = 0.0
    values: list = field(default_factory=list)


@contextlib.contextmanager
def spike_intervention(
    model: nn.Module,
    block: int,
    channels: Sequence[int],
    rule: SpikeRule,
    mode: str = "zero",
    site: str = "block_output",
    positions: str = "first",
) -> Iterator[InterventionLog]:
    """Forward hook on `block` that rewrites `channels` of the first (or every spike) token."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if positions not in ("first", "spike"):
        raise ValueError("positions must be 'first' or 'spike'")
    if site not in SITES:
        raise ValueError(f"site must be one of {tuple(SITES)}, got {site!r}")
    layout = model_layout(model)
    if not 1 <= block <= layout.n_blocks:
        raise ValueError(f"block {block} out of range 1..{layout.n_blocks}")
    d_model = layout.d_model
    chans = torch.as_tensor(list(channels), dtype=torch.long)
    if chans.numel() == 0 or int(chans.min()) < 0 or int(chans.max()) >= d_model:
        raise ValueError(f"channels must be a non-empty list within 0..{d_model - 1}, got {list(channels)}")
    log = InterventionLog()

    def edit(hidden):
        index = chans.to(hidden.device)
        spikes = spike_token_mask(hidden, rule)
        targets = torch.zeros_like(spikes)
        targets[:, 0] = True
        if positions == "spike":
            targets |= spikes
        edited = hidden.clone()
        values = replacement_values(hidden, index, mode, spikes)
        rows = edited[targets]  # (n, d)
        log.max_before = max(log.max_before, float(rows[:, index].abs().max()))
        rows[:, index] = values
        edited[targets] = rows
        log.max_after = max(log.max_after, float(rows[:, index].abs().max()))
        log.calls += 1
        log.edited_tokens += int(targets.sum())
        log.values.append(values.detach().to(torch.float32).cpu().numpy())
        return edited

    with edit_state(model, block, SITES[site], edit):
        yield log


@contextlib.contextmanager
def _residual_spike_monitor(model: nn.Module) -> Iterator[dict]:
    """Largest residual magnitude over layers per sample: at token 0 and over all tokens."""
    layout = model_layout(model)
    record = {"first": [], "any": [], "_cur_first": None, "_cur_any": None}
    last = layout.n_blocks

    def on_state(block, _state, hidden):
        magnitude = hidden.abs().to(torch.float32)
        first = magnitude[:, 0].amax(dim=-1)
        anywhere = magnitude.amax(dim=(1, 2))
        if block == 2:
            record["_cur_first"], record["_cur_any"] = first, anywhere
        else:
            record["_cur_first"] = torch.maximum(record["_cur_first"], first)
            record["_cur_any"] = torch.maximum(record["_cur_any"], anywhere)
        if block == last:
            record["first"].append(record["_cur_first"].cpu())
            record["any"].append(record["_cur_any"].cpu())

    with Taps(model, [(lv.ffn_block, "post_residual") for lv in layout.layers], on_state):
        yield record


def measure_condition(model: nn.Module, batches: Sequence[torch.Tensor], eps: float) -> dict[str, float]:
    """Sink ratio, key-0 mass, perplexity and spike size of the model as it is (hooks included)."""
    return measure_prompts(model, batches, eps)[0]


def measure_prompts(model: nn.Module, batches: Sequence[torch.Tensor], eps: float) -> tuple[dict, pd.DataFrame]:
    """measure_condition's summary, and the same forwards per prompt: one row per held-out prompt
    (its summed next-token loss `nll_sum` over `n_tokens`, its sink ratio in percent of (layer,
    head) pairs, its mean key-0 mass, the spike at its token 0)."""
    nll, n_tokens, per_nll, per_count = 0.0, 0, [], []
    with SinkStatistics(model, eps=eps) as sinks, _residual_spike_monitor(model) as spikes:
        for input_ids in batches:
            values = token_nll(model, input_ids).double()
            nll += float(values.sum())
            n_tokens += values.numel()
            per_nll.append(values.sum(dim=1).cpu().numpy())
            per_count.append(np.full(values.shape[0], values.shape[1]))
    result = sinks.result()
    first = torch.cat(spikes["first"])
    summary = {
        "sink_ratio": float(result["sink_ratio"]),
        "key0_mass": float(result["key0_mass_mean"]),
        "perplexity": math.exp(nll / n_tokens),
        "spike_first_token": float(first.mean()),
        "spike_any_token": float(torch.cat(spikes["any"]).mean()),
        "n_tokens": n_tokens,
    }
    key0 = result["key0_mass"].astype(np.float64)  # (N, L, H)
    per_prompt = pd.DataFrame(
        {
            "prompt": np.arange(len(key0)),
            "n_tokens": np.concatenate(per_count),
            "nll_sum": np.concatenate(per_nll),
            # nan-means: a hybrid's linear-attention layers are NaN (no attention map)
            "sink_ratio": 100.0 * np.nanmean(sinking(key0, eps), axis=(1, 2)),
            "key0_mass": np.nanmean(key0, axis=(1, 2)),
            "spike_first_token": first.double().numpy(),
        }
    )
    return summary, per_prompt


def intervention_table(
    model: nn.Module,
    batches: Iterable,
    block: int,
    channels: Sequence[int],
    rule: SpikeRule,
    eps: float,
    modes: Sequence[str] = ("zero", "mean"),
    site: str = "block_output",
    positions: str = "first",
) -> pd.DataFrame:
    """One row per condition ("none" first, then each mode) with absolute values and deltas.

    batches: held-out (B, T) token id batches (all conditions see the same ones). Deltas are
    relative to the unedited model measured in the same call.
    """
    return intervention_tables(model, batches, block, channels, rule, eps, modes, site, positions)[0]


def intervention_tables(
    model: nn.Module,
    batches: Iterable,
    block: int,
    channels: Sequence[int],
    rule: SpikeRule,
    eps: float,
    modes: Sequence[str] = ("zero", "mean"),
    site: str = "block_output",
    positions: str = "first",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(intervention_table, per_prompt): the table and, from the same forwards, one row per
    (condition, held-out prompt) with the block (measure_prompts' columns)."""
    batches = [torch.as_tensor(b) for b in batches]
    if not batches:
        raise ValueError("no batches to measure on")
    summary, prompts = measure_prompts(model, batches, eps)
    rows = [{"condition": "none", "edited_tokens": 0, "max_before": np.nan, "max_after": np.nan} | summary]
    per_prompt = [prompts.assign(condition="none")]
    for mode in modes:
        with spike_intervention(model, block, channels, rule, mode, site, positions) as log:
            measured, prompts = measure_prompts(model, batches, eps)
        rows.append(
            {
                "condition": mode,
                "edited_tokens": log.edited_tokens,
                "max_before": log.max_before,
                "max_after": log.max_after,
            }
            | measured
        )
        per_prompt.append(prompts.assign(condition=mode))
    table = pd.DataFrame(rows)
    for column in ("sink_ratio", "key0_mass", "perplexity", "spike_first_token", "spike_any_token"):
        table[f"delta_{column}"] = table[column] - table.loc[0, column]
    table.insert(1, "block", block)
    table.insert(2, "channels", ",".join(str(c) for c in channels))
    table.insert(3, "site", site)
    table.insert(4, "positions", positions)
    per_prompt = pd.concat(per_prompt, ignore_index=True)
    per_prompt.insert(0, "block", block)
    per_prompt.insert(1, "condition", per_prompt.pop("condition"))
    return table, per_prompt
