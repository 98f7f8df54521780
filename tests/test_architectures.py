"""The cross-architecture table and its claims: compared only where both groups exist and the
pre-norm models do spike and sink; n/a otherwise, never a vacuous pass."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
from analysis_helpers import figure_files, make_job

from spikesink.analyses import get, runner
from spikesink.analyses.architectures.claims import architecture_claims
from spikesink.analyses.architectures.figure import PAPER_TABLE5, plot_architectures
from spikesink.analyses.architectures.measure import COLUMNS, architecture_row, architecture_table
from spikesink.analyses.architectures.result import Architectures
from spikesink.analyses.lifecycle.result import Lifecycle
from spikesink.config import analysis_settings
from spikesink.results import SinkStats


def meta(placement):
    return {
        "architecture": {"family": "F", "model_type": "t", "norm_placement": placement, "ffn_kind": "SwiGLU"},
        "d_model": 8,
    }


def lifecycle(ratio, step_up=(4,)):
    return Lifecycle(
        n_blocks=8,
        spike_channels=[1],
        step_up=list(step_up),
        step_down=[],
        peak_magnitude=ratio,
        peak_median_ratio=ratio,
        position0_spike_fraction=1.0,
    )


def row(model, placement, ratio, sink, step_up=(4,)):
    return architecture_row(
        model, meta(placement), vars(lifecycle(ratio, step_up)), {"sink_ratio": sink, "key0_mass_mean": 0.3}
    )


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
    assert list(frame.columns) == COLUMNS


def sink_stats(mass):
    from spikesink.extraction.sink_stats import summarise_sinks

    key0 = np.full((2, 2, 2), mass, np.float32)
    arrays = {"key0_mass": key0, "spike_mass": key0.copy(), "n_queries": np.full(2, 4.0), "eps": 0.3}
    return SinkStats.from_arrays({**arrays, "spike_mass_layer_head": key0.mean(0), **summarise_sinks(key0)})


def test_measure_across_models_claims_table_and_figure(tmp_path):
    """One job across every configured model: each input is {model: value}; the table, its claims
    (thresholds from analyses.architectures.claims) and the figure's bars all read the result."""
    assert not get("architectures").per_model
    models = {"a": ("pre", 1e4, 0.8), "b.1": ("sandwich", 20.0, 0.6)}
    inputs = {
        "block_stats": {m: SimpleNamespace(meta=meta(p)) for m, (p, _, _) in models.items()},
        "lifecycle": {m: lifecycle(r) for m, (_, r, _) in models.items()},
        "sinks": {m: sink_stats(s) for m, (_, _, s) in models.items()},
    }
    job = make_job("architectures", inputs, model_name="all")
    result = runner.measure(job)
    table = result.table
    assert list(table["model"]) == ["a", "b.1"] and list(table["norm placement"]) == ["pre", "sandwich"]
    assert list(table["peak / median"]) == [1e4, 20.0] and list(table["sink ratio (%)"]) == [100.0, 100.0]
    result.save(tmp_path / "architectures")
    loaded = Architectures.load(tmp_path / "architectures")
    pd.testing.assert_frame_equal(loaded.table, table)
    claims = runner.claims(loaded, job)
    c = analysis_settings("architectures").claims
    expected = architecture_claims(table, c.min_ratio_gap, c.sink_tolerance)
    assert [x.to_dict() for x in claims] == [x.to_dict() for x in expected] and all(x.holds for x in claims)
    strict = make_job("architectures", inputs, settings={"claims": {"min_ratio_gap": 1e3}})
    assert [x.holds for x in runner.claims(loaded, strict)] == [False, True]  # a gap of 500x, not 1000x
    ((name, (frame, _)),) = runner.tables(loaded, job).items()
    assert name == "architectures" and frame is loaded.table

    drawn = runner.figures(loaded, job, {"overview": tmp_path / "overview"})["overview"]
    figure_files(tmp_path / "overview")
    for column in ("peak / median", "sink ratio (%)"):
        pd.testing.assert_series_equal(drawn[column], table.set_index("model")[column])
    assert [tuple(r) for r in drawn["paper"].itertuples(index=False)] == PAPER_TABLE5


def test_figure_bars_are_the_table(tmp_path):
    table = architecture_table([row("a", "pre", 1e4, 50), row("b", "sandwich", 20, 40), row("c", "post", 3, 0)])
    drawn = plot_architectures(table, tmp_path / "arch")
    figure_files(tmp_path / "arch")
    assert list(drawn["peak / median"].index) == ["a", "b", "c"]
    assert list(drawn["peak / median"]) == [1e4, 20.0, 3.0] and list(drawn["sink ratio (%)"]) == [50.0, 40.0, 0.0]
