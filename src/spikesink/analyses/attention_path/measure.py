"""Does the sink come from the spike? An edit that reaches only the attention path.

The paper's mechanism: the spike of the first token, through the pre-norm, becomes a
near-constant sparse vector; its key is what every later query finds (spike -> RMSNorm ->
near-constant sparse key -> sink). Removing the spike from the residual stream at the step-up
block tests this badly: the step-down blocks still subtract a spike that is no longer there, and
every later FFN sees a state it never saw in training, so whatever happens to the sinks is
confounded.

The edit here changes only what the attention blocks of the plateau read: token 0's normalised
attention input (the vector its keys and values are computed from) is replaced by what the
norm would output if the spike channels of its residual held the ordinary tokens' mean instead
of the spike. The residual stream, the FFN inputs and every other token are untouched. A control
edit does the same to as many randomly chosen non-spike channels.

What it shows: whether the spike's presence in token 0's keys and values is needed for the
sinks in the plateau layers, and what the sink costs when removed (perplexity). What it cannot
show: that the spike is *sufficient* (other features of token 0 may also be needed), or that the
sinks of layers before the step-up come from it; and the edited key is a vector the model never
produced, so some change may come from the novelty itself, which the control bounds.

The same forwards give every measure per held-out prompt (`per_prompt`), what the claim's
bootstrap over prompts resamples.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from spikesink.analyses.attention_path.result import AttentionPath
from spikesink.analyses.lifecycle.result import Lifecycle
from spikesink.analyses.unit import Job
from spikesink.extraction.perplexity import batched, token_nll
from spikesink.extraction.sink_stats import SinkStatistics
from spikesink.instrumentation.blocks import block_kind, block_layer
from spikesink.instrumentation.layout import model_layout
from spikesink.instrumentation.spikes import SpikeRule, spike_tokens
from spikesink.instrumentation.taps import Taps, edit_state


def not_applicable(job: Job) -> str | None:
    lc = job["lifecycle"]
    if plateau_attention_blocks(lc) and lc.spike_channels:
        return None
    return "no attention block after a step-up block inside the plateau"


def measure(job: Job) -> AttentionPath:
    s = job.settings
    heldout = batched(job["prompts.heldout"].matrix(), job.shared.heldout_batch_size)
    table, per_prompt = attention_path_tables(
        job.model.model, heldout, job["lifecycle"], job.shared.sink_eps, job.rule, positions=s.positions, seed=s.seed
    )
    return AttentionPath(table=table, per_prompt=per_prompt)


def plateau_attention_blocks(lifecycle: Lifecycle) -> list[int]:
    """Attention blocks from the last step-up block to the end of the plateau (where the spike lives)."""
    plateau, step_up = lifecycle.plateau, lifecycle.step_up
    if not plateau or not step_up:
        return []
    return [b for b in range(int(max(step_up)) + 1, int(plateau[1]) + 1) if block_kind(b) == "attn"]


@contextlib.contextmanager
def strip_attention_input(
    model: nn.Module,
    blocks: Sequence[int],
    channels: Sequence[int],
    rule: SpikeRule,
    positions: str = "first",
) -> Iterator[dict]:
    """Token 0's (or every spike token's) normalised attention input in `blocks`, recomputed with
    `channels` of its residual set to the batch's ordinary-token mean."""
    if positions not in ("first", "spike"):
        raise ValueError("positions must be 'first' or 'spike'")
    layout = model_layout(model)
    inputs: dict[int, torch.Tensor] = {}
    log = {"calls": 0, "edited_tokens": 0}
    chans = torch.as_tensor(list(channels), dtype=torch.long)

    def edit_for(block: int):
        norm = layout.layers[block_layer(block)].attn_input_norm

        def edit(normed: torch.Tensor) -> torch.Tensor:
            h = inputs.pop(block).float()
            spikes = spike_tokens(h, rule).mask
            targets = torch.zeros_like(spikes)
            targets[:, 0] = True
            if positions == "spike":
                targets |= spikes
            ordinary = ~spikes & ~targets
            index = chans.to(h.device)
            fill = h[..., index][ordinary].mean(0) if bool(ordinary.any()) else torch.zeros(len(index), device=h.device)
            edited = h[targets]
            edited[:, index] = fill
            out = normed.clone()
            out[targets] = (layout.apply_norm(norm, edited) if norm is not None else edited).to(normed.dtype)
            log["calls"] += 1
            log["edited_tokens"] += int(targets.sum())
            return out

        return edit

    with contextlib.ExitStack() as stack:
        stack.enter_context(Taps(model, [(b, "input") for b in blocks], lambda b, _s, t: inputs.__setitem__(b, t)))
        for block in blocks:
            stack.enter_context(edit_state(model, block, "normed_input", edit_for(block)))
        yield log


def measure_condition(model: nn.Module, batches: Sequence[np.ndarray], layers: Sequence[int], eps: float) -> dict:
    """Perplexity, and sink ratio / key-0 mass over all layers and over `layers` (0-based)."""
    return measure_prompts(model, batches, layers, eps)[0]


def measure_prompts(
    model: nn.Module, batches: Sequence[np.ndarray], layers: Sequence[int], eps: float
) -> tuple[dict, pd.DataFrame]:
    """measure_condition's summary, and from the same forwards one row per held-out prompt: its
    summed next-token loss `nll_sum` over `n_tokens`, and its sink ratio (percent of (layer, head)
    pairs) and mean key-0 mass over all layers and over `layers`."""
    nll, count, per_nll, per_count = 0.0, 0, [], []
    with SinkStatistics(model, eps=eps) as sinks:
        for batch in batches:
            values = token_nll(model, batch).double()
            nll, count = nll + float(values.sum()), count + values.numel()
            per_nll.append(values.sum(dim=1).cpu().numpy())
            per_count.append(np.full(values.shape[0], values.shape[1]))
    key0 = sinks.result()["key0_mass"]  # (N, L, H), NaN in a hybrid's linear-attention layers
    softmax = np.isfinite(key0).all(axis=(0, 2))
    layers = [layer for layer in layers if softmax[layer]]
    edited = key0[:, list(layers)] if len(layers) else key0[:, :0]
    key0 = key0[:, softmax]  # sinks over the layers that have an attention map
    summary = {
        "perplexity": float(np.exp(nll / count)),
        "sink_ratio": float(100 * (key0 > eps).mean()),
        "key0_mass": float(key0.mean()),
        "sink_ratio_edited_layers": float(100 * (edited > eps).mean()) if edited.size else np.nan,
        "key0_mass_edited_layers": float(edited.mean()) if edited.size else np.nan,
    }
    key0, edited = key0.astype(np.float64), edited.astype(np.float64)
    per_prompt = pd.DataFrame(
        {
            "prompt": np.arange(len(key0)),
            "n_tokens": np.concatenate(per_count),
            "nll_sum": np.concatenate(per_nll),
            "sink_ratio": 100 * (key0 > eps).mean(axis=(1, 2)),
            "key0_mass": key0.mean(axis=(1, 2)),
            "sink_ratio_edited_layers": 100 * (edited > eps).mean(axis=(1, 2)) if edited.size else np.nan,
            "key0_mass_edited_layers": edited.mean(axis=(1, 2)) if edited.size else np.nan,
        }
    )
    return summary, per_prompt


def attention_path_table(
    model: nn.Module,
    batches: Sequence[np.ndarray],
    lifecycle: Lifecycle,
    eps: float,
    rule: SpikeRule,
    positions: str = "first",
    seed: int = 0,
) -> pd.DataFrame:
    """Conditions none / spike channels / control channels, each measured on the same batches."""
    return attention_path_tables(model, batches, lifecycle, eps, rule, positions, seed)[0]


def attention_path_tables(
    model: nn.Module,
    batches: Sequence[np.ndarray],
    lifecycle: Lifecycle,
    eps: float,
    rule: SpikeRule,
    positions: str = "first",
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(attention_path_table, per_prompt): the table and, from the same forwards, one row per
    (condition, held-out prompt) (measure_prompts' columns)."""
    blocks = plateau_attention_blocks(lifecycle)
    channels = [int(c) for c in lifecycle.spike_channels]
    layers = sorted({block_layer(b) for b in blocks})
    d_model = model_layout(model).d_model
    others = np.setdiff1d(np.arange(d_model), channels)
    control = sorted(
        np.random.default_rng(seed).choice(others, size=min(len(channels), others.size), replace=False).tolist()
    )
    summary, prompts = measure_prompts(model, batches, layers, eps)
    rows = [{"condition": "none", "channels": "", "edited_tokens": 0} | summary]
    per_prompt = [prompts.assign(condition="none")]
    for condition, chosen in (("spike channels", channels), ("control channels", control)):
        with strip_attention_input(model, blocks, chosen, rule, positions) as log:
            measured, prompts = measure_prompts(model, batches, layers, eps)
        rows.append(
            {"condition": condition, "channels": " ".join(map(str, chosen)), "edited_tokens": log["edited_tokens"]}
            | measured
        )
        per_prompt.append(prompts.assign(condition=condition))
    table = pd.DataFrame(rows)
    table.insert(1, "blocks", f"{blocks[0]}-{blocks[-1]}" if blocks else "")
    per_prompt = pd.concat(per_prompt, ignore_index=True)
    per_prompt.insert(0, "condition", per_prompt.pop("condition"))
    return table, per_prompt
