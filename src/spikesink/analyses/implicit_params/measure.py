"""Massive activations as implicit parameters (the protocol of Sun et al. 2024).

If a massive activation is a fixed, bias-like parameter the model computes for itself, then
replacing it by *its own mean value over many sequences* leaves the model's perplexity unchanged,
while setting it to zero destroys the model. Here:

* sites: the FFN blocks whose post-residual state (the layer output) carries the spike: the
  first massive block when it is an FFN block, and every step-up block. The massive activations
  are the spike channels of the spike tokens of that state (spikesink.instrumentation.spikes);
* calibration: on the extraction prompts, the mean of those values over every spike token, kept
  separately for position 0 and for the other spike tokens (delimiters), plus how constant they
  are (relative spread ||v - mean|| / ||mean||, averaged over spike tokens);
* evaluation: on the held-out prompts (another seed), perplexity of the unedited model and with
  the massive activations set to their own mean ("own_mean"), to zero ("zero"), or to the mean of
  the ordinary tokens in those channels ("ordinary_mean", practically the same edit as zero).

The same forwards keep each held-out prompt's summed next-token loss (`per_prompt`), and the
calibration each prompt's summed distance to the own mean (the site's `distance_by_prompt`,
`spike_tokens_by_prompt`): what the claims' bootstrap over prompts resamples.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from spikesink.analyses.implicit_params.result import ImplicitParams
from spikesink.analyses.lifecycle.result import Lifecycle
from spikesink.analyses.unit import Job
from spikesink.extraction.perplexity import batched, token_nll
from spikesink.instrumentation.blocks import block_kind
from spikesink.instrumentation.spikes import SpikeRule, spike_tokens
from spikesink.instrumentation.taps import capture, edit_state

MODES = ("own_mean", "zero", "ordinary_mean")


def not_applicable(job: Job) -> str | None:
    lc = job["lifecycle"]
    sites, skipped = site_blocks(lc)
    if sites and lc.spike_channels:
        return None
    return "no FFN block carrying a spike was detected" + (f" ({'; '.join(skipped)})" if skipped else "")


def measure(job: Job) -> ImplicitParams:
    """Calibrate on the first extraction prompts, evaluate on the held-out ones."""
    lc, s = job["lifecycle"], job.settings
    sites, skipped = site_blocks(lc)
    calibration = job["prompts.extraction"].matrix(s.calibration_prompts)
    calibrated = calibrate(job.model.model, calibration, sites, lc.spike_channels, job.rule)
    heldout = batched(job["prompts.heldout"].matrix(), job.shared.heldout_batch_size)
    table, per_prompt = implicit_parameter_tables(job.model.model, heldout, calibrated, s.modes, job.rule)
    return ImplicitParams(
        table=table,
        sites={"skipped": skipped, "sites": [site.to_dict() for site in calibrated]},
        per_prompt=per_prompt,
    )


@dataclass
class SpikeSite:
    """The calibrated massive activations of one block's post-residual state."""

    block: int
    channels: list[int]
    first_mean: np.ndarray  # (C,) mean over position-0 spike tokens
    other_mean: np.ndarray  # (C,) mean over non-initial spike tokens (= first_mean when there are none)
    ordinary_mean: np.ndarray  # (C,) mean over non-spike tokens
    spread: float  # mean over spike tokens of ||v - own mean|| / ||own mean||
    n_first: int
    n_other: int
    roles: list[str] = field(default_factory=list)  # "first massive block", "step-up"
    # per calibration prompt: summed ||v - own mean|| / ||own mean|| over its spike tokens, and their count
    distance_by_prompt: list[float] = field(default_factory=list)
    spike_tokens_by_prompt: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "block": self.block,
            "channels": self.channels,
            "roles": self.roles,
            "spread": self.spread,
            "n_first": self.n_first,
            "n_other": self.n_other,
            "first_mean": self.first_mean.tolist(),
            "other_mean": self.other_mean.tolist(),
            "ordinary_mean": self.ordinary_mean.tolist(),
            "distance_by_prompt": list(self.distance_by_prompt),
            "spike_tokens_by_prompt": list(self.spike_tokens_by_prompt),
        }


def site_blocks(lifecycle: Lifecycle) -> tuple[dict[int, list[str]], list[str]]:
    """{block: roles} of the editable sites, and why any candidate was skipped."""
    sites: dict[int, list[str]] = {}
    skipped = []
    plateau = lifecycle.plateau
    candidates = ([(int(plateau[0]), "first massive block")] if plateau else []) + [
        (int(b), "step-up") for b in lifecycle.step_up
    ]
    for block, role in candidates:
        if block_kind(block) != "ffn":
            skipped.append(
                f"block {block} ({role}) is an attention block: its post-residual cannot be edited by a hook"
            )
            continue
        sites.setdefault(block, []).append(role)
    return sites, skipped


def calibrate(
    model: nn.Module,
    prompts: np.ndarray,
    sites: Mapping[int, list[str]],
    channels: Sequence[int],
    rule: SpikeRule,
    batch_size: int = 8,
) -> list[SpikeSite]:
    """Means and spreads of the spike channels at spike tokens, per site, on calibration prompts."""
    blocks = sorted(sites)
    chans = torch.as_tensor(list(channels), dtype=torch.long)
    values = {b: {"first": [], "other": [], "ordinary": [], "first_at": [], "other_at": []} for b in blocks}
    device = next(model.parameters()).device
    for start in range(0, len(prompts), batch_size):
        ids = torch.as_tensor(prompts[start : start + batch_size], device=device)
        got = capture(model, [(b, "post_residual") for b in blocks], input_ids=ids)
        for b in blocks:
            state = got[(b, "post_residual")].float()
            spikes = spike_tokens(state, rule).mask
            first = torch.zeros_like(spikes)
            first[:, 0] = True
            picked = state[..., chans.to(state.device)]
            values[b]["first"].append(picked[spikes & first].cpu())
            values[b]["other"].append(picked[spikes & ~first].cpu())
            # the prompt of each of those tokens (boolean indexing and nonzero share the row-major order)
            values[b]["first_at"].append(torch.nonzero(spikes & first)[:, 0].cpu() + start)
            values[b]["other_at"].append(torch.nonzero(spikes & ~first)[:, 0].cpu() + start)
            values[b]["ordinary"].append(picked[~spikes].cpu())
    out = []
    for b in blocks:
        first, other, ordinary = (torch.cat(values[b][k]) for k in ("first", "other", "ordinary"))
        if not len(first) and not len(other):
            raise ValueError(f"block {b}: no spike token in the calibration prompts")
        first_mean = (first if len(first) else other).mean(0)
        other_mean = other.mean(0) if len(other) else first_mean
        first_at, other_at = torch.cat(values[b]["first_at"]), torch.cat(values[b]["other_at"])
        distances = [
            ((v - m).norm(dim=-1) / m.norm().clamp_min(1e-30))
            for v, m in ((first, first_mean), (other, other_mean))
            if len(v)
        ]
        at = torch.cat([a for a, v in ((first_at, first), (other_at, other)) if len(v)])
        by_prompt = torch.zeros(len(prompts), dtype=torch.float64).index_add_(0, at, torch.cat(distances).double())
        tokens_by_prompt = torch.bincount(at, minlength=len(prompts))
        out.append(
            SpikeSite(
                b,
                [int(c) for c in channels],
                first_mean.numpy(),
                other_mean.numpy(),
                ordinary.mean(0).numpy(),
                float(torch.cat(distances).mean()),
                len(first),
                len(other),
                list(sites[b]),
                by_prompt.tolist(),
                [int(n) for n in tokens_by_prompt],
            )
        )
    return out


@dataclass
class EditLog:
    calls: int = 0
    edited_tokens: int = 0


@contextlib.contextmanager
def replace_massive(model: nn.Module, site: SpikeSite, mode: str, rule: SpikeRule) -> Iterator[EditLog]:
    """Set the spike channels of the spike tokens of `site.block`'s post-residual to their own mean,
    to zero or to the ordinary tokens' mean, in every forward inside the context."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    log = EditLog()

    def edit(state: torch.Tensor) -> torch.Tensor:
        spikes = spike_tokens(state, rule).mask
        if not bool(spikes.any()):
            return state
        chans = torch.as_tensor(site.channels, device=state.device)
        out = state.clone()
        first = torch.zeros_like(spikes)
        first[:, 0] = True
        for where, mean in ((spikes & first, site.first_mean), (spikes & ~first, site.other_mean)):
            if not bool(where.any()):
                continue
            value = {"own_mean": mean, "zero": np.zeros_like(mean), "ordinary_mean": site.ordinary_mean}[mode]
            rows = out[where]
            rows[:, chans] = torch.as_tensor(value, dtype=state.dtype, device=state.device)
            out[where] = rows
        log.calls += 1
        log.edited_tokens += int(spikes.sum())
        return out

    with edit_state(model, site.block, "post_residual", edit):
        yield log


def implicit_parameter_table(
    model: nn.Module,
    heldout: Sequence[np.ndarray],
    sites: Sequence[SpikeSite],
    modes: Sequence[str],
    rule: SpikeRule,
) -> pd.DataFrame:
    """One row per (site, mode) plus the unedited model: held-out perplexity and its ratio."""
    return implicit_parameter_tables(model, heldout, sites, modes, rule)[0]


def prompt_losses(model: nn.Module, batches: Sequence[np.ndarray]) -> tuple[float, np.ndarray, np.ndarray]:
    """Perplexity over every batch (as extraction.perplexity.perplexity), and from the same
    forwards each prompt's summed next-token loss and its token count."""
    total, count, sums, counts = 0.0, 0, [], []
    for batch in batches:
        nll = token_nll(model, batch).double()
        total += float(nll.sum())
        count += nll.numel()
        sums.append(nll.sum(dim=1).cpu().numpy())
        counts.append(np.full(nll.shape[0], nll.shape[1]))
    if not count:
        raise ValueError("no tokens to measure perplexity on")
    return math.exp(total / count), np.concatenate(sums), np.concatenate(counts)


def implicit_parameter_tables(
    model: nn.Module,
    heldout: Sequence[np.ndarray],
    sites: Sequence[SpikeSite],
    modes: Sequence[str],
    rule: SpikeRule,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(implicit_parameter_table, per_prompt): the table and, from the same forwards, one row per
    (site, mode, held-out prompt): its summed next-token loss `nll_sum` over `n_tokens` (the
    unedited model: block 0, mode "none")."""
    base, sums, counts = prompt_losses(model, heldout)
    rows = [
        {
            "block": 0,
            "roles": "",
            "mode": "none",
            "perplexity": base,
            "ratio": 1.0,
            "edited_tokens": 0,
            "spread": np.nan,
        }
    ]

    def prompts(block, mode):
        return pd.DataFrame(
            {"block": block, "mode": mode, "prompt": np.arange(len(sums)), "n_tokens": counts, "nll_sum": sums}
        )

    per_prompt = [prompts(0, "none")]
    for site in sites:
        for mode in modes:
            with replace_massive(model, site, mode, rule) as log:
                ppl, sums, counts = prompt_losses(model, heldout)
            rows.append(
                {
                    "block": site.block,
                    "roles": ", ".join(site.roles),
                    "mode": mode,
                    "perplexity": ppl,
                    "ratio": ppl / base,
                    "edited_tokens": log.edited_tokens,
                    "spread": site.spread,
                }
            )
            per_prompt.append(prompts(site.block, mode))
    return pd.DataFrame(rows), pd.concat(per_prompt, ignore_index=True)
