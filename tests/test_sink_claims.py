"""Sink claims must not hold vacuously: no sinking head, or identical BOS keys, means no claim.

The claims of Section 3.2 live with the analysis that measures them: "attention sinks form on the
spike token" with `sinks` (from the extraction's sink statistics), the subspace and query-key
claims with `sink_geometry`, the spike removal with `intervention`.
"""

import numpy as np
import pandas as pd
import pytest
from analysis_helpers import figure_files, make_job

from spikesink.analyses import runner
from spikesink.analyses.intervention.claims import intervention_claims
from spikesink.analyses.lifecycle.result import Lifecycle
from spikesink.analyses.sink_geometry.claims import geometry_claims
from spikesink.analyses.sinks.result import Sinks
from spikesink.config import analysis_settings
from spikesink.results import SinkStats


def tables(sink_mass):
    subspace = pd.DataFrame(
        [
            {
                "role": "sink",
                "layer": 1,
                "head": 0,
                "keys": "k(s)",
                "centered": False,
                "top1_share": 0.99,
                "top2_share": 1.0,
                "effective_rank": 1.1,
            },
            {
                "role": "sink",
                "layer": 1,
                "head": 0,
                "keys": "k(n)",
                "centered": False,
                "top1_share": 0.3,
                "top2_share": 0.5,
                "effective_rank": 9.0,
            },
        ]
    )
    gaps = pd.DataFrame(
        [
            {
                "role": "sink",
                "layer": 1,
                "head": 0,
                "key0_mass": sink_mass,
                "cos_gap": 0.5,
                "share_closer_to_sink": 0.9,
            },
            {
                "role": "non_sink",
                "layer": 1,
                "head": 1,
                "key0_mass": 0.01,
                "cos_gap": -0.1,
                "share_closer_to_sink": 0.0,
            },
        ]
    )
    return subspace, gaps


def sinks(mass, n_prompts=4, n_layers=3, n_heads=2):
    """Sink statistics: every head of layers >= 1 gives `mass` to key 0 (layer 0: 0.05); the spike mass
    is the key-0 mass (key 0 the only flagged position, as the extraction flags it)."""
    from spikesink.extraction.sink_stats import summarise_sinks

    key0 = np.full((n_prompts, n_layers, n_heads), mass, np.float32)
    key0[:, 0] = 0.05
    return SinkStats.from_arrays(
        {
            "key0_mass": key0,
            "spike_mass": key0.copy(),
            "n_queries": np.full(n_prompts, 8.0),
            "eps": 0.3,
            "spike_mass_layer_head": key0.mean(0),
            **summarise_sinks(key0),
        }
    )


def block_stats(n_prompts=4, n_layers=3, spike_from=2, spike_to=None, T=8):
    """Block statistics in which position 0 is massive (5000 against a median of 1) in the
    post-residual of blocks spike_from..spike_to (1-based), ordinary (1) elsewhere."""
    from spikesink.results import BlockStats

    n_blocks, d, k = 2 * n_layers, 4, 3
    spike_to = n_blocks if spike_to is None else spike_to
    token_max = np.ones((2, n_blocks, n_prompts, T), np.float32)
    token_max[0, spike_from - 1 : spike_to, :, 0] = 5000.0
    zeros = np.zeros((2, n_blocks, n_prompts, k), np.float32)
    return BlockStats(
        zeros, zeros, zeros.astype(np.int32), zeros.astype(np.int32), np.ones((2, n_blocks, n_prompts), np.float32),
        token_max, np.ones((n_blocks, d), np.float32), np.zeros((2, n_blocks, d), np.float32),
        np.zeros((2, n_blocks, d), np.float32), np.zeros(n_blocks, np.int64), np.zeros((n_prompts, T), np.int64),
    )  # fmt: skip


LIFECYCLE = Lifecycle(massive_blocks=[3, 4], position0_spike_fraction=1.0)
GEOMETRY = analysis_settings("sink_geometry").claims  # max_rank 2.5, min_top2_share 0.9, gaps > 0
EPS = 0.3  # the schema's sinks.eps


def holds(claims):
    return {c.claim: c.holds for c in claims}


def sink_claims(model, stats, lifecycle, subspace, gaps, bos_added=False, blocks=None):
    """The three Section 3.2 claims of one model: `sinks` measured from its statistics, then the geometry."""
    blocks = blocks if blocks is not None else block_stats(stats.key0_mass.shape[0], stats.key0_mass.shape[1])
    job = make_job("sinks", {"sinks": stats, "block_stats": blocks, "lifecycle": lifecycle}, model_name=model)
    sinks = runner.claims(runner.measure(job), job)
    geometry = geometry_claims(
        model,
        subspace,
        gaps,
        EPS,
        bos_added,
        max_rank=GEOMETRY.max_rank,
        min_top2_share=GEOMETRY.min_top2_share,
        min_cos_gap=GEOMETRY.min_cos_gap,
        min_gap_over_non_sink=GEOMETRY.min_gap_over_non_sink,
    )
    return sinks + geometry


def test_geometry_claims_hold_for_a_sinking_head_with_varied_first_tokens():
    assert (GEOMETRY.max_rank, GEOMETRY.min_top2_share) == (2.5, 0.9)
    result = holds(sink_claims("m", sinks(0.8), LIFECYCLE, *tables(0.8)))
    assert len(result) == 3 and all(result.values()), result


def test_no_claim_holds_without_a_sink():
    result = holds(sink_claims("m", sinks(0.05), LIFECYCLE, *tables(0.05)))
    assert len(result) == 3 and not any(result.values()), result


def test_no_sink_claim_without_a_spike_on_the_first_token():
    """Sinks without a position-0 spike do not make the spike claim hold: n/a without any spike (a
    random model), fails when the model spikes but key 0 is no spike token where the heads sink."""
    claim = "attention sinks form on the spike token (key 0)"
    result = {c.claim: c for c in sink_claims("m", sinks(0.8), Lifecycle(), *tables(0.8))}
    assert result[claim].verdict == "n/a" and "has no spike" in result[claim].ours
    lifecycle = Lifecycle(massive_blocks=[3], position0_spike_fraction=0.2)
    result = {
        c.claim: c for c in sink_claims("m", sinks(0.8), lifecycle, *tables(0.8), blocks=block_stats(spike_from=99))
    }
    assert result[claim].verdict == "fails" and result[claim].value == 0.0
    # the spike lives in layer 1 only (blocks 2-3): layer 2's sinks sit on a key 0 that no longer spikes
    result = {c.claim: c for c in sink_claims("m", sinks(0.8), LIFECYCLE, *tables(0.8), blocks=block_stats(spike_to=3))}
    assert result[claim].verdict == "fails" and result[claim].value == pytest.approx(0.4)


def test_rank_one_bos_keys_prove_nothing():
    result = {c.claim: c for c in sink_claims("m", sinks(0.8), LIFECYCLE, *tables(0.8), bos_added=True)}
    row = result["sink keys live in a 1-2 dimensional subspace"]
    assert row.verdict == "n/a" and "BOS" in row.ours


def test_the_sink_claim_is_strict_and_reads_its_thresholds_from_the_config():
    stats, blocks = sinks(0.8), block_stats()
    job = make_job("sinks", {"sinks": stats, "block_stats": blocks, "lifecycle": LIFECYCLE})
    (row,) = runner.claims(runner.measure(job), job)
    assert row.verdict == "holds" and row.value == pytest.approx(0.8)  # two of three layers sink, on the spike
    assert "sink ratio 66.7 [66.7, 66.7]%" in row.ours and "key 0 is a spike token in 100%" in row.ours
    assert analysis_settings("sinks").claims.to_dict() == {"min_sink_ratio": 10.0, "min_share_on_spikes": 0.5}
    strict = make_job("sinks", job.inputs, settings={"claims": {"min_sink_ratio": 70.0}})
    (row,) = runner.claims(runner.measure(strict), strict)
    assert row.verdict == "fails" and "70%" in row.tolerance


def test_an_interval_straddling_the_share_threshold_is_inconclusive():
    """Half the prompts' sinking heads give 0.45 to the (spiking) key 0, half 0.55: the share's
    interval over prompts straddles 0.5."""
    stats = sinks(0.8, n_prompts=20)
    stats.key0_mass[:10, 1:] = 0.45
    stats.key0_mass[10:, 1:] = 0.55
    stats.spike_mass[:] = stats.key0_mass
    job = make_job("sinks", {"sinks": stats, "block_stats": block_stats(20), "lifecycle": LIFECYCLE})
    (row,) = runner.claims(runner.measure(job), job)
    assert row.low < 0.5 < row.high and row.verdict == "inconclusive"


def test_sinks_measure_summarises_the_extraction_statistics():
    stats = sinks(0.8)
    stats.spike_mass[:, 1] = np.nan  # a layer without spike positions: key 0 alone
    stats.spike_mass[:, 2] = 0.9  # a later spike token takes another 0.1
    stats.key0_mass[0, 1, 0] = 0.1  # one (sample, layer, head) that does not sink
    result = runner.measure(make_job("sinks", {"sinks": stats, "block_stats": block_stats()}))
    assert result.sink_ratio == stats.sink_ratio and result.key0_mass_mean == stats.key0_mass_mean
    assert result.eps == EPS
    sinking = stats.key0_mass > EPS
    on_spikes = np.where(np.isnan(stats.spike_mass), stats.key0_mass, stats.spike_mass)
    assert result.share_on_spikes == pytest.approx(float(on_spikes[sinking].mean()))
    np.testing.assert_array_equal(result.per_prompt["n_sinking"], sinking.sum(axis=(1, 2)))
    np.testing.assert_allclose(result.per_prompt["sink_ratio"], 100 * sinking.mean(axis=(1, 2)))
    assert result.per_prompt["key0_spikes"].tolist() == [[False, True, True]] * 4
    for name in ("key0_mass_layer_head", "sink_ratio_layer_head", "key0_mass_layer", "sink_ratio_layer"):
        np.testing.assert_array_equal(result.per_head[name], getattr(stats, name))
    # key 0 no spike token anywhere: only the later spike tokens' 0.1 counts
    none = runner.measure(make_job("sinks", {"sinks": stats, "block_stats": block_stats(spike_from=99)}))
    assert none.share_on_spikes == pytest.approx(0.1 * 8 / sinking.sum())


def test_sinks_result_round_trips_and_its_figures_draw_it(tmp_path):
    stats = sinks(0.8, n_layers=2)
    lifecycle = Lifecycle(
        massive_blocks=[2, 3], step_up=[2], step_down=[4], position0_spike_fraction=1.0, top1_by_block=[1, 500, 480, 3]
    )
    inputs = {"sinks": stats, "block_stats": block_stats(n_layers=2), "lifecycle": lifecycle}
    job = make_job("sinks", inputs, model_name="m")
    runner.measure(job).save(tmp_path / "sinks")
    result = Sinks.load(tmp_path / "sinks")
    assert result.eps == EPS and set(result.per_head) >= {"key0_mass_layer_head", "sink_ratio_layer"}
    assert result.per_prompt["key0_spikes"].dtype == bool and result.per_prompt["on_spikes"].shape == (4,)
    paths = {"key0_heatmap": tmp_path / "heat", "sinks_vs_spike": tmp_path / "depth"}
    drawn = runner.figures(result, job, paths)
    for path in paths.values():
        figure_files(path)
    np.testing.assert_array_equal(drawn["key0_heatmap"]["key0_mass"], stats.key0_mass_layer_head)
    depth = drawn["sinks_vs_spike"]
    # the spike over depth is the life cycle's per-block top-1; each layer's sinks sit at its attention block
    assert list(depth["top1_by_block"].index) == [1, 2, 3, 4]
    np.testing.assert_array_equal(depth["top1_by_block"], lifecycle.top1_by_block)
    assert list(depth["sink_ratio_by_layer"].index) == [1, 3]
    np.testing.assert_array_equal(depth["sink_ratio_by_layer"], stats.sink_ratio_layer)
    np.testing.assert_allclose(depth["key0_mass_by_layer"], stats.key0_mass_layer)
    assert runner.claims(result, job)[0].verdict == "holds"


def test_intervention_claim_needs_a_drop_and_a_cost():
    assert analysis_settings("intervention").claims.min_ratio_drop == 0.5
    table = pd.DataFrame(
        [
            {"condition": "none", "block": 4, "sink_ratio": 60.0, "key0_mass": 0.5, "perplexity": 20.0},
            {"condition": "zero", "block": 4, "sink_ratio": 10.0, "key0_mass": 0.1, "perplexity": 40.0},
            {"condition": "mean", "block": 4, "sink_ratio": 55.0, "key0_mass": 0.45, "perplexity": 21.0},
        ]
    )
    result = holds(intervention_claims("m", table))
    assert result["removing the spike (zero at block 4) removes the sink"]
    assert not result["removing the spike (mean at block 4) removes the sink"]
    # without a detected spike: one explicit n/a row, not a missing one
    (na,) = intervention_claims("m", None, "no step-up block or spike channel was detected")
    assert na.holds is None and na.ours.startswith("n/a: no step-up")
