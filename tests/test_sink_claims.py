"""Sink claims must not hold vacuously: no sinking head, or identical BOS keys, means no claim."""

import numpy as np
import pandas as pd

from spikesink.analyses.sink_report import intervention_claims, sink_claims
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
            "spike_mass": key0,
            "n_queries": np.full(4, 8.0),
            "eps": 0.3,
            "spike_mass_layer_head": key0.mean(0),
            **summarise_sinks(key0),
        }
    )


LIFECYCLE = {"massive_blocks": [3, 4], "position0_spike_fraction": 1.0}


def holds(claims):
    return {c.claim: c.holds for c in claims}


def test_geometry_claims_hold_for_a_sinking_head_with_varied_first_tokens():
    result = holds(sink_claims("m", sinks(0.8), LIFECYCLE, *tables(0.8)))
    assert all(result.values()), result


def test_no_claim_holds_without_a_sink():
    result = holds(sink_claims("m", sinks(0.05), LIFECYCLE, *tables(0.05)))
    assert not any(result.values()), result


def test_rank_one_bos_keys_prove_nothing():
    result = holds(sink_claims("m", sinks(0.8), LIFECYCLE, *tables(0.8), bos_added=True))
    assert not result["sink keys live in a 1-2 dimensional subspace"]


def test_intervention_claim_needs_a_drop_and_a_cost():
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
