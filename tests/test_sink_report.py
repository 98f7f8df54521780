"""Sink claims must not hold vacuously: no sinking head, or identical BOS keys, means no claim."""

import numpy as np
import pandas as pd

from spikesink.analyses.sink_report import sink_claims


def tables(sink_mass):
    subspace = pd.DataFrame([
        {"role": "sink", "layer": 1, "head": 0, "keys": "k(s)", "centered": False, "top1_share": 0.99, "top2_share": 1.0, "effective_rank": 1.1},
        {"role": "sink", "layer": 1, "head": 0, "keys": "k(n)", "centered": False, "top1_share": 0.3, "top2_share": 0.5, "effective_rank": 9.0},
    ])
    gaps = pd.DataFrame([
        {"role": "sink", "layer": 1, "head": 0, "key0_mass": sink_mass, "cos_gap": 0.5, "share_closer_to_sink": 0.9},
        {"role": "non_sink", "layer": 1, "head": 1, "key0_mass": 0.01, "cos_gap": -0.1, "share_closer_to_sink": 0.0},
    ])
    return subspace, gaps


def sinks(mass):
    key0 = np.full((4, 2, 2), mass, np.float32)
    return {"sink_ratio": 100.0 * float((key0 > 0.3).mean()), "key0_mass_mean": float(mass), "key0_mass": key0, "spike_mass": key0}


LIFECYCLE = {"massive_blocks": [3, 4], "position0_spike_fraction": 1.0}


def holds(claims):
    return {c.claim: c.holds for c in claims}


def test_geometry_claims_hold_for_a_sinking_head_with_varied_first_tokens():
    result = holds(sink_claims("m", sinks(0.8), LIFECYCLE, *tables(0.8), None))
    assert all(result.values()), result


def test_no_claim_holds_without_a_sink():
    result = holds(sink_claims("m", sinks(0.05), LIFECYCLE, *tables(0.05), None))
    assert not any(result.values()), result


def test_rank_one_bos_keys_prove_nothing():
    result = holds(sink_claims("m", sinks(0.8), LIFECYCLE, *tables(0.8), None, bos_added=True))
    assert not result["sink keys live in a 1-2 dimensional subspace"]


def test_intervention_claim_needs_a_drop_and_a_cost():
    table = pd.DataFrame([
        {"condition": "none", "block": 4, "sink_ratio": 60.0, "key0_mass": 0.5, "perplexity": 20.0},
        {"condition": "zero", "block": 4, "sink_ratio": 10.0, "key0_mass": 0.1, "perplexity": 40.0},
        {"condition": "mean", "block": 4, "sink_ratio": 55.0, "key0_mass": 0.45, "perplexity": 21.0},
    ])
    result = holds(sink_claims("m", sinks(0.8), LIFECYCLE, *tables(0.8), table))
    assert result["removing the spike (zero at block 4) removes the sink"]
    assert not result["removing the spike (mean at block 4) removes the sink"]
