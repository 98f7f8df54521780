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


def sinks(mass):
    from spikesink.extraction.sink_stats import summarise_sinks

    key0 = np.full((4, 2, 2), mass, np.float32)
    return SinkStats.from_arrays(
        {
            "key0_mass": key0,
            "spike_mass": key0.copy(),
            "n_queries": np.full(4, 8.0),
            "eps": 0.3,
            "spike_mass_layer_head": key0.mean(0),
            **summarise_sinks(key0),
        }
    )


LIFECYCLE = Lifecycle(massive_blocks=[3, 4], position0_spike_fraction=1.0)
GEOMETRY = analysis_settings("sink_geometry").claims  # max_rank 2.5, min_top2_share 0.9
EPS = 0.3  # the schema's sinks.eps


def holds(claims):
    return {c.claim: c.holds for c in claims}


def sink_claims(model, stats, lifecycle, subspace, gaps, bos_added=False):
    """The three Section 3.2 claims of one model: `sinks` measured from its statistics, then the geometry."""
    job = make_job("sinks", {"sinks": stats, "lifecycle": lifecycle}, model_name=model)
    sinks = runner.claims(runner.measure(job), job)
    geometry = geometry_claims(
        model, subspace, gaps, EPS, bos_added, max_rank=GEOMETRY.max_rank, min_top2_share=GEOMETRY.min_top2_share
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
    """Sinks without a position-0 spike (a random model) do not make the spike claim hold."""
    for lifecycle in (Lifecycle(), Lifecycle(massive_blocks=[3], position0_spike_fraction=0.2)):
        result = holds(sink_claims("m", sinks(0.8), lifecycle, *tables(0.8)))
        assert not result["attention sinks form on the spike token (key 0)"]


def test_rank_one_bos_keys_prove_nothing():
    result = holds(sink_claims("m", sinks(0.8), LIFECYCLE, *tables(0.8), bos_added=True))
    assert not result["sink keys live in a 1-2 dimensional subspace"]


def test_sinks_measure_summarises_the_extraction_statistics():
    stats = sinks(0.8)
    stats.spike_mass[:, 1] = np.nan  # a layer before any spike token: no spike mass yet
    stats.key0_mass[0, 0, 0] = 0.1  # one (sample, layer, head) that does not sink
    result = runner.measure(make_job("sinks", {"sinks": stats}))
    assert result.sink_ratio == stats.sink_ratio and result.key0_mass_mean == stats.key0_mass_mean
    assert result.eps == EPS
    sinking = stats.key0_mass > EPS
    assert result.share_on_spikes == pytest.approx(float(np.nanmean(stats.spike_mass[sinking])))
    for name in ("key0_mass_layer_head", "sink_ratio_layer_head", "key0_mass_layer", "sink_ratio_layer"):
        np.testing.assert_array_equal(result.per_head[name], getattr(stats, name))
    assert runner.measure(make_job("sinks", {"sinks": sinks(0.1)})).share_on_spikes != result.share_on_spikes


def test_sinks_result_round_trips_and_its_figures_draw_it(tmp_path):
    stats = sinks(0.8)
    lifecycle = Lifecycle(
        massive_blocks=[2, 3], step_up=[2], step_down=[4], position0_spike_fraction=1.0, top1_by_block=[1, 500, 480, 3]
    )
    job = make_job("sinks", {"sinks": stats, "lifecycle": lifecycle}, model_name="m")
    runner.measure(job).save(tmp_path / "sinks")
    result = Sinks.load(tmp_path / "sinks")
    assert result.eps == EPS and set(result.per_head) >= {"key0_mass_layer_head", "sink_ratio_layer"}
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
