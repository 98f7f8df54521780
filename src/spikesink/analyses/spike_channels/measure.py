"""Properties (iii) and (iv): do the spike channels spike together, with fixed ratios?

One forward over the first extraction prompts (a BOS dropped, so that first tokens differ), with
taps on the post-residual state of the plateau blocks read (`blocks`: the first `n_blocks` of the
plateau, where the forward stops, or the whole plateau). In each state the spike tokens are flagged
by the spike rule (spikesink.instrumentation.spikes, against the prompt's median) and only their
values on the spike channels, and their largest |h|, are kept: no hidden state outlives its hook.
The claims (claims.py) read co-occurrence and the channel ratios from those values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from spikesink.analyses.lifecycle.result import Lifecycle
from spikesink.analyses.spike_channels.result import SpikeChannels, channel_column
from spikesink.analyses.unit import Job
from spikesink.instrumentation.spikes import SpikeRule, spike_tokens
from spikesink.instrumentation.taps import Taps, run_decoder


def not_applicable(job: Job) -> str | None:
    lifecycle = job["lifecycle"]
    if lifecycle.plateau is None:
        return "the model has no spike (no massive block): no spike channel"
    if len(lifecycle.spike_channels) < 2:
        return "one spike channel: nothing spikes together"
    return None


def measure(job: Job) -> SpikeChannels:
    s, prompts, lifecycle = job.settings, job["prompts.extraction"], job["lifecycle"]
    n, length = min(s.n_prompts, len(prompts.ids)), min(s.seq_len, min(len(r) for r in prompts.ids))
    ids = prompts.matrix(n, length)
    ids = ids[:, 1:] if prompts.bos_added else ids
    blocks = blocks_read(lifecycle, s.blocks, s.n_blocks)
    tokens = spike_channel_values(job.model.model, ids, blocks, lifecycle.spike_channels, job.rule, s.batch_size)
    return SpikeChannels(
        tokens=tokens,
        spike_channels=[int(c) for c in lifecycle.spike_channels],
        reference_channel=reference_channel(lifecycle),
        blocks=blocks,
        n_prompts=int(ids.shape[0]),
        n_tokens=int(ids.size),
        bos_dropped=bool(prompts.bos_added),
    )


def blocks_read(lifecycle: Lifecycle, which: str = "plateau_start", n_blocks: int = 4) -> list[int]:
    """The plateau blocks whose post-residual is read (the forward stops after the last)."""
    first, last = (int(b) for b in lifecycle.plateau)
    if which == "plateau":
        return list(range(first, last + 1))
    if which != "plateau_start":
        raise ValueError(f"blocks must be 'plateau_start' or 'plateau', not {which!r}")
    return list(range(first, min(first + int(n_blocks), last + 1)))


def reference_channel(lifecycle: Lifecycle) -> int:
    """The spike channel the ratios divide by: the largest |P| of the life cycle's spike vector."""
    channels, vector = lifecycle.spike_channels, lifecycle.spike_vector
    if len(vector) != len(channels) or not len(channels):
        return int(channels[0]) if len(channels) else -1
    return int(channels[int(np.argmax(np.abs(vector)))])


def spike_channel_values(
    model, input_ids: np.ndarray, blocks: Sequence[int], channels: Sequence[int], rule: SpikeRule, batch_size: int = 8
) -> pd.DataFrame:
    """One row per (block, prompt, position) spike token of the post-residual states of `blocks`:
    block, prompt, position, token_id, token_max and the signed value on each channel (ch_<c>)."""
    device = next(model.parameters()).device
    channels = [int(c) for c in channels]
    index = torch.as_tensor(channels, device=device)
    ids = np.asarray(input_ids, dtype=np.int64)
    parts: list[pd.DataFrame] = []
    current = {}  # the batch in flight and the index of its first prompt

    def record(block: int, _state: str, hidden: torch.Tensor) -> None:
        batch = current["batch"]
        spikes = spike_tokens(hidden, rule)
        prompt, position = spikes.mask.nonzero(as_tuple=True)
        values = hidden[prompt, position][:, index].float().cpu().numpy()
        frame = pd.DataFrame(
            {
                "block": np.full(len(prompt), int(block), dtype=np.int64),
                "prompt": prompt.cpu().numpy().astype(np.int64) + current["offset"],
                "position": position.cpu().numpy().astype(np.int64),
                "token_id": batch[prompt.cpu().numpy(), position.cpu().numpy()],
                "token_max": spikes.token_max[prompt, position].cpu().numpy().astype(np.float32),
            }
        )
        for j, channel in enumerate(channels):
            frame[channel_column(channel)] = values[:, j]
        parts.append(frame)

    was_training = model.training
    model.eval()
    try:
        with Taps(model, [(b, "post_residual") for b in blocks], record, stop_after_last=True):
            for start in range(0, len(ids), batch_size):
                current.update(batch=ids[start : start + batch_size], offset=start)
                run_decoder(model, input_ids=torch.as_tensor(current["batch"], device=device))
    finally:
        model.train(was_training)
    columns = ["block", "prompt", "position", "token_id", "token_max", *map(channel_column, channels)]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    return frame[columns].sort_values(["block", "prompt", "position"], kind="stable").reset_index(drop=True)
