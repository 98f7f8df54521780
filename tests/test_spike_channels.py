"""Properties (iii) and (iv), the `spike_channels` analysis, against answers known by construction:
the planted Llama writes its spike on channels 7 and 23 in the ratio 1 : -0.5 on every spike token
(first tokens and delimiters), so the channels spike together (co-occurrence 1) with the ratio -0.5
and no spread; a one-channel model and a model without a spike read n/a."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from analysis_helpers import figure_files, make_job
from conftest import tiny_model

from spikesink.acquisition.planted import build_planted_llama
from spikesink.analyses import get, runner
from spikesink.analyses.lifecycle.measure import detect_lifecycle
from spikesink.analyses.spike_channels.claims import cooccurrence, ratio_spread
from spikesink.analyses.spike_channels.result import SpikeChannels, channel_column
from spikesink.extraction.block_stats import extract_block_stats
from spikesink.results import PromptSet

torch.set_num_threads(1)
TOGETHER = "property (iii): the spike channels spike together, on the same tokens"
FIXED = "property (iv): the ratios between the spike channels stay nearly fixed across tokens and prompts"


def planted_prompts(info, n=8, seq_len=24, seed=0):
    """A trigger token first, ordinary bytes after, with a delimiter ('.' or newline) at positions 8 and 16."""
    rng = np.random.default_rng(seed)
    delimiters = sorted(info["delimiter_token_ids"])
    triggers = np.array(sorted(set(info["trigger_token_ids"]) - set(delimiters)))
    ordinary = np.array(sorted(set(range(256)) - set(delimiters) - set(info["exception_token_ids"])))
    ids = rng.choice(ordinary, size=(n, seq_len))
    ids[:, 0] = rng.choice(triggers, size=n)
    ids[:, [8, 16]] = rng.choice(delimiters, size=(n, 2))
    return ids


def run(model, info_or_ids, lifecycle=None, settings=None):
    ids = info_or_ids if isinstance(info_or_ids, np.ndarray) else planted_prompts(info_or_ids)
    if lifecycle is None:
        lifecycle = detect_lifecycle(extract_block_stats(model, ids, batch_size=4, progress=False))
    prompts = PromptSet("extraction", list(ids), {"bos_added": False})
    inputs = {"lifecycle": lifecycle, "prompts.extraction": prompts}
    job = make_job(
        "spike_channels", inputs, model, {"n_prompts": len(ids), "seq_len": ids.shape[1], **(settings or {})}
    )
    return runner.measure(job), job


@pytest.fixture(scope="module")
def planted_run(planted):
    model, info = planted
    result, job = run(model, info)
    return info, result, job


def test_the_planted_channels_spike_together_in_the_planted_ratio(planted_run):
    info, result, job = planted_run
    assert result.not_applicable is None
    assert result.spike_channels == info["spike_channels"] == [7, 23] and result.reference_channel == 7
    assert result.blocks == [4, 5, 6, 7]  # the first four plateau blocks: the forward stops after block 7
    tokens = result.tokens
    # every first token and every delimiter, at each block read
    assert set(tokens["position"]) == {0, 8, 16} and len(tokens) == 4 * 3 * 8
    share, on = cooccurrence(result, 0.1)
    assert share.value == 1.0 and on.all() and share.n == 8
    spread, table = ratio_spread(result, 0.1)
    assert set(table["channel"]) == {23} and list(table["block"]) == [4, 5, 6, 7]
    np.testing.assert_allclose(table["mean_ratio"], -0.5, atol=1e-3)
    assert spread.value < 1e-3 and spread.high < 1e-3
    together, fixed = runner.claims(result, job)
    assert (together.claim, together.verdict, together.value) == (TOGETHER, "holds", 1.0)
    assert (fixed.claim, fixed.verdict) == (FIXED, "holds") and "c_23 / c_7 = -0.500" in fixed.ours


def test_the_result_round_trips_and_the_figure_draws_it(planted_run, tmp_path):
    info, result, job = planted_run
    result.save(tmp_path / "spike_channels")
    loaded = SpikeChannels.load(tmp_path / "spike_channels")
    pd.testing.assert_frame_equal(loaded.tokens, result.tokens)
    assert loaded.blocks == result.blocks and loaded.reference_channel == 7
    drawn = runner.figures(loaded, job, {"": tmp_path / "planted"})[""]
    figure_files(tmp_path / "planted")
    np.testing.assert_array_equal(drawn["points"]["reference"], loaded.tokens[channel_column(7)])
    np.testing.assert_array_equal(drawn["points"]["value"], loaded.tokens[channel_column(23)])
    pd.testing.assert_frame_equal(drawn["spread"], ratio_spread(loaded, 0.1)[1])


def test_one_spike_channel_reads_n_a_without_a_forward():
    model, info = build_planted_llama(spike_channels=(7,), channel_ratio=(1.0,), spike_magnitude=5e3, seed=2)
    ids = planted_prompts(info)
    lifecycle = detect_lifecycle(extract_block_stats(model, ids, batch_size=4, progress=False))
    assert lifecycle.spike_channels == [7]
    result, job = run(model, ids, lifecycle)
    assert result.not_applicable == "one spike channel: nothing spikes together"
    claims = runner.claims(result, job)
    assert [c.claim for c in claims] == [TOGETHER, FIXED]
    assert all(c.verdict == "n/a" and c.ours == "n/a: one spike channel: nothing spikes together" for c in claims)


def test_a_model_without_a_spike_reads_n_a(tmp_path):
    model = tiny_model()
    ids = np.random.default_rng(0).integers(0, 128, (4, 12))
    result, job = run(model, ids)
    assert result.not_applicable.startswith("the model has no spike")
    assert [c.verdict for c in runner.claims(result, job)] == ["n/a", "n/a"]
    assert runner.figures(result, job, {"": tmp_path / "none"}) == {"": {}}
    figure_files(tmp_path / "none")
    written = result.save(tmp_path / "na")
    assert [p.name for p in written] == SpikeChannels.files()


def synthetic(ratios_by_prompt, on=True) -> SpikeChannels:
    """One spike token per prompt at block 4: channel 1 at 1000, channel 2 at 1000 x its ratio
    (or, with on=False for odd prompts, 1 x: off)."""
    rows = []
    for prompt, ratio in enumerate(ratios_by_prompt):
        off = not on and prompt % 2
        rows.append({"block": 4, "prompt": prompt, "position": 0, "token_id": 5, "token_max": 1000.0,
                     "ch_1": 1000.0, "ch_2": 1.0 if off else 1000.0 * ratio})  # fmt: skip
    return SpikeChannels(
        tokens=pd.DataFrame(rows), spike_channels=[1, 2], reference_channel=1, blocks=[4], n_prompts=len(rows)
    )


def test_an_interval_straddling_the_threshold_is_inconclusive():
    job = make_job("spike_channels")
    # ratios spread with a coefficient of variation of about the 0.1 bar: the interval over prompts straddles it
    rng = np.random.default_rng(3)
    ratios = 0.5 * (1 + 0.1 * rng.standard_normal(30))
    _, fixed = runner.claims(synthetic(ratios), job)
    assert fixed.low < 0.1 < fixed.high and fixed.verdict == "inconclusive"
    _, fixed = runner.claims(synthetic(np.full(30, 0.5)), job)
    assert fixed.verdict == "holds" and fixed.value == 0.0
    # half the prompts' spike tokens carry only the reference channel: they do not spike together
    together, _ = runner.claims(synthetic(np.full(30, 0.5), on=False), job)
    assert together.value == 0.5 and together.verdict == "fails"
    strict = make_job("spike_channels", settings={"claims": {"min_cooccurrence": 0.4}})
    assert runner.claims(synthetic(np.full(30, 0.5), on=False), strict)[0].verdict != "fails"


def test_the_entry_reads_what_measure_reads():
    entry = get("spike_channels")
    assert entry.reads == ("model", "lifecycle", "prompts.extraction") and entry.needs_model
    assert [f.name for f in entry.figures] == [""] and entry.caption_path(entry.figures[0]).is_file()
