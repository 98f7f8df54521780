"""The cross-architecture table and its claims: compared only where both groups exist and the
pre-norm models do spike and sink; n/a otherwise, never a vacuous pass."""

import pandas as pd

from spikesink.analyses.architectures import architecture_claims, architecture_row, architecture_table


def row(model, placement, ratio, sink, step_up=(4,)):
    meta = {
        "architecture": {"family": "F", "model_type": "t", "norm_placement": placement, "ffn_kind": "SwiGLU"},
        "d_model": 8,
    }
    lifecycle = {
        "n_blocks": 8,
        "spike_channels": [1],
        "step_up": list(step_up),
        "step_down": [],
        "peak_magnitude": ratio,
        "peak_median_ratio": ratio,
        "position0_spike_fraction": 1.0,
    }
    return architecture_row(model, meta, lifecycle, {"sink_ratio": sink, "key0_mass_mean": 0.3})


def test_sandwich_spike_smaller_and_sinks_stay():
    spike, sink = architecture_claims(architecture_table([row("a", "pre", 1e4, 50), row("b", "sandwich", 20, 40)]))
    assert spike.holds and sink.holds and "Confounded" in spike.ours


def test_the_claims_fail_when_the_numbers_do():
    spike, sink = architecture_claims(architecture_table([row("a", "pre", 1e4, 50), row("b", "post", 5e3, 5)]))
    assert spike.holds is False and sink.holds is False


def test_not_applicable_without_both_groups_or_without_a_spike():
    only_pre = architecture_claims(architecture_table([row("a", "pre", 1e4, 50), row("c", "parallel", 1e3, 30)]))
    assert all(c.holds is None and "needs at least one" in c.ours for c in only_pre)
    no_spike = architecture_claims(architecture_table([row("a", "pre", 3, 0, step_up=()), row("b", "sandwich", 2, 0)]))
    assert [c.holds for c in no_spike] == [None, None]
    assert (
        "no pre-norm model has a detected spike" in no_spike[0].ours and "no pre-norm model sinks" in no_spike[1].ours
    )


def test_table_has_one_row_per_model():
    frame = architecture_table([row("a", "pre", 1e4, 50), row("b.1", "sandwich", 20, 40)])
    assert list(frame["model"]) == ["a", "b.1"] and isinstance(frame, pd.DataFrame)
