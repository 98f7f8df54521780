"""The life-cycle detector must recover a planted spike exactly: blocks, channels, sign."""

import numpy as np
import pytest
from conftest import tiny_model

from spikesink.analyses.lifecycle import LifecycleSettings, detect_lifecycle
from spikesink.analyses.lifecycle_report import lifecycle_claims, table1, table1_row
from spikesink.extraction.block_stats import extract_block_stats


def planted_prompts(info, n=8, seq_len=32, seed=0):
    """Prompts that start with a trigger token and continue with ordinary (non-delimiter) tokens."""
    rng = np.random.default_rng(seed)
    triggers = np.array(sorted(set(info["trigger_token_ids"]) - set(info["delimiter_token_ids"])))
    ordinary = np.array(sorted(set(range(256)) - set(info["delimiter_token_ids"])))
    ids = rng.choice(ordinary, size=(n, seq_len))
    ids[:, 0] = rng.choice(triggers, size=n)
    return ids


@pytest.fixture(scope="module")
def planted_case(planted):
    model, info = planted
    stats = extract_block_stats(model, planted_prompts(info), batch_size=4, progress=False)
    return info, stats, detect_lifecycle(stats)


def test_recovers_planted_blocks_and_channels(planted_case):
    info, stats, lc = planted_case
    assert lc.step_up == list(info["step_up_blocks"])
    assert lc.step_down == list(info["step_down_blocks"])
    assert sorted(lc.spike_channels) == sorted(info["spike_channels"])
    assert lc.plateau == (info["step_up_blocks"][0], info["step_down_blocks"][0] - 1)
    assert lc.contiguous
    assert lc.reference_tokens == "position 0"
    assert lc.contributions[info["step_up_blocks"][0] - 1] == pytest.approx(1.0, abs=0.05)
    assert lc.contributions[info["step_down_blocks"][0] - 1] == pytest.approx(-1.0, abs=0.05)


def test_spike_vector_has_planted_ratio(planted_case):
    info, _, lc = planted_case
    by_channel = dict(zip(lc.spike_channels, lc.spike_vector))
    ratio = np.array([by_channel[c] for c in info["spike_channels"]])
    np.testing.assert_allclose(ratio / ratio[0], np.array(info["channel_ratio"]) / info["channel_ratio"][0], rtol=0.05)
    assert abs(ratio[0]) == pytest.approx(info["spike_magnitude"], rel=0.1)


def test_only_position_zero_spikes(planted_case):
    info, stats, lc = planted_case
    assert lc.position0_spike_fraction == 1.0
    assert lc.spike_token_fraction == pytest.approx(1 / stats.input_ids.shape[1])


def test_claims_hold_on_planted_model(planted_case):
    _, _, lc = planted_case
    claims = {c.claim: c for c in lifecycle_claims("planted", lc, early_fraction=0.5, late_fraction=0.5)}
    assert all(c.holds for c in claims.values()), [c for c in claims.values() if not c.holds]


def test_stricter_step_fraction_drops_partial_blocks(planted_case):
    _, stats, _ = planted_case
    lc = detect_lifecycle(stats, LifecycleSettings(step_fraction=1.5))
    assert lc.step_up == [] and lc.step_down == []


def test_random_model_has_no_spike_and_claims_fail():
    model = tiny_model()
    stats = extract_block_stats(model, np.random.default_rng(0).integers(0, 128, (4, 12)), progress=False)
    lc = detect_lifecycle(stats)
    assert lc.massive_blocks == [] and lc.plateau is None and lc.step_up == []
    claims = lifecycle_claims("random", lc)
    assert not any(c.holds for c in claims)


def test_table1_puts_paper_rows_beside_ours(planted_case):
    _, _, lc = planted_case
    frame = table1([table1_row("mine", lc, "Llama-2-7B")])
    row = frame[frame["model"] == "mine"].iloc[0]
    assert row["paper step-up"] == [4] and row["paper blocks"] == 64
    assert len(frame) == 7  # our row plus the six other paper models
