"""Section 4 tables: seeds are averaged (mean, sd, each seed), every table's claims follow the
measured numbers with a bootstrap interval over seeds (holds / fails / inconclusive, n/a with the
reason), rank claims need enough points, thresholds come from the config, each claim names the
data it was tested on."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from analysis_helpers import capture_figures, figure_files

from spikesink.ablations.claims import (
    CLAIMS,
    FORMS,
    Forms,
    PaperDecides,
    RankAgreement,
    Thresholds,
    claim_thresholds,
    permutation_p,
    seed_estimate,
    spearman_rows,
)
from spikesink.ablations.configs import ModelConfig
from spikesink.ablations.report import (
    ablation_table,
    aggregate_seeds,
    display_frame,
    plot_table,
    runs_from_table,
    table_claims,
    table_frame,
)
from spikesink.ablations.variants import REGISTRY, parametric
from spikesink.config import SCHEMA, ConfigError
from spikesink.reporting.verdicts import FAILS, HOLDS, INCONCLUSIVE, NA

THRESHOLDS = claim_thresholds()  # the schema's defaults


def run(variant, seed, sink, spike=30.0, key0=0.1, n_heads=4, d_head=16, source="bigram_backcopy"):
    """A metrics.json as run_variant writes it, with the paper's row of the registered variant."""
    info = REGISTRY.get(variant)
    return {
        "variant": variant,
        "table": info.table if info else "6",
        "paper": info.paper if info else None,
        "paper_setting": "",
        "model_config": {"n_heads": n_heads, "d_head": d_head},
        "train_config": {"seed": seed},
        "data": {"source": source},
        "ppl": 16.0 + seed,
        "sink_ratio": sink,
        "key0_mass_mean": key0,
        "spike": spike,
        "spike_to_median": 8.0,
        "first_token_spike_to_median": 20.0,
        "spike_position": 0,
        "spike_block": 2,
    }


def claims_of(runs, table, thresholds=THRESHOLDS):
    return {c.claim: c for c in table_claims(ablation_table(runs), table, "test", thresholds)}


def test_seeds_are_averaged_with_their_spread():
    runs = ablation_table([run("baseline", 0, 20.0), run("baseline", 1, 30.0), run("wd-0", 0, 5.0)])
    assert list(runs["seed"]) == [0, 1, 0]
    frame = aggregate_seeds(runs).set_index("variant")
    assert frame.loc["baseline", "sink_ratio"] == 25.0 and frame.loc["baseline", "n_seeds"] == 2
    assert frame.loc["baseline", "sink_ratio_sd"] == pytest.approx(math.sqrt(50.0))
    assert frame.loc["baseline", "sink_ratio_seeds"] == "20 / 30" and frame.loc["baseline", "seeds"] == "0,1"
    assert frame.loc["baseline", "ppl"] == 16.5
    assert frame.loc["wd-0", "n_seeds"] == 1 and math.isnan(frame.loc["wd-0", "sink_ratio_sd"])
    shown = display_frame(frame.reset_index()).set_index("variant")
    assert shown.loc["baseline", "sink %"] == "25.0 +- 7.1" and shown.loc["wd-0", "sink %"] == "5.0"
    assert shown.loc["baseline", "sink % paper"] == 46.0 and shown.loc["baseline", "heads x d_head"] == "4 x 16"


def test_claims_are_labelled_with_the_data_they_were_tested_on():
    runs = ablation_table([run("baseline", 0, 20.0), run("wd-0", 0, 5.0)])
    claims = table_claims(runs, "3", "cpu-synthetic", THRESHOLDS)
    assert claims and all(c.model == "ablations/cpu-synthetic (synthetic Bigram-Backcopy)" for c in claims)
    text = table_claims(ablation_table([run("baseline", 0, 0.0, source="passages")]), "5", "cpu", THRESHOLDS)
    assert all(c.model == "ablations/cpu (text corpus)" for c in text)


def test_gating_claims_follow_the_paper_row_and_the_seed_spread():
    runs = [
        run("baseline", 0, 40.0),
        run("baseline", 1, 44.0),
        run("gate-cond-channel", 0, 2.0),
        run("gate-cond-channel", 1, 4.0),  # removes the sink
        run("gate-cond-head", 0, 1.0),
        run("gate-cond-head", 1, 41.0),  # mean 21 < 0.5 x 42, but the spread is huge
        run("gate-uncond-head", 0, 39.0),
        run("gate-uncond-head", 1, 43.0),  # keeps it
        run("gate-embedding", 0, 3.0),
        run("gate-embedding", 1, 5.0),
    ]  # paper keeps it (31.1 vs 46); ours does not
    claims = claims_of(runs, "7")
    assert claims["Table 7: gate-cond-channel: conditional gating removes the sink"].holds
    # seeds 1 and 41 against 40 and 44: the ratio's interval (0.02 to 1.0) straddles 0.5
    assert claims["Table 7: gate-cond-head: conditional gating removes the sink"].verdict == INCONCLUSIVE
    assert claims["Table 7: gate-uncond-head: the gate keeps the sink"].holds
    assert claims["Table 7: gate-embedding: the gate keeps the sink"].verdict == FAILS
    channel = claims["Table 7: gate-cond-channel: conditional gating removes the sink"]
    assert "(2 / 4) vs baseline 42 (40 / 44)" in channel.ours and "95 % bootstrap over seeds" in channel.ours
    assert channel.low == pytest.approx(2 / 44) and channel.high == pytest.approx(4 / 40)
    assert claims["Table 7: a sink forms at the baseline (what the sink-side claims of this table need)"].holds
    # a registered row of the table that was not run reads n/a with that reason
    single = claims["Table 7: gate-cond-single: a conditional single gate keeps most of the sink"]
    assert single.verdict == NA and "gate-cond-single not run" in single.ours


def test_context_claims_collapse_for_late_loss_and_stay_for_short_context():
    runs = [run("baseline", 0, 40.0), run("lossfrom-half", 0, 2.0), run("seq-div4", 0, 10.0)]
    claims = claims_of(runs, "8")
    collapse = claims["Table 8: lossfrom-half: loss only on late positions collapses the sink"]
    assert collapse.holds and "1 seed: the point decides" in collapse.ours
    assert collapse.low is None and collapse.value == pytest.approx(2.0 / 40.0)
    assert claims["Table 8: seq-div4: the sink stays"].verdict == FAILS  # 10 < 0.5 x 40


def test_normalization_claims_split_spike_and_sink():
    runs = [
        run("baseline", 0, 40.0, spike=100.0),
        run("norm-sandwich", 0, 35.0, spike=20.0),
        run("norm-dyt", 0, 5.0, spike=150.0),
    ]
    claims = claims_of(runs, "5")
    assert claims["Table 5: norm-sandwich: changing normalization removes the spike"].holds
    assert claims["Table 5: norm-sandwich: changing normalization keeps the sinks"].holds
    assert not claims["Table 5: norm-dyt: changing normalization removes the spike"].holds
    assert not claims["Table 5: norm-dyt: changing normalization keeps the sinks"].holds
    # no sink at the baseline: the sink-side claims are not tested, one row says why
    flat = [
        run("baseline", 0, 0.0, spike=100.0),
        run("baseline", 1, 0.0, spike=90.0),
        run("norm-sandwich", 0, 0.0, spike=20.0),
        run("norm-sandwich", 1, 0.0, spike=30.0),
    ]
    flat_claims = claims_of(flat, "5")
    untested = flat_claims["Table 5: norm-sandwich: changing normalization keeps the sinks"]
    assert untested.verdict == NA and "no sink at the baseline (sink ratio 0 % < 20 %)" in untested.ours
    guard = flat_claims["Table 5: a sink forms at the baseline (what the sink-side claims of this table need)"]
    assert guard.verdict == FAILS and "0 %" in guard.ours
    assert flat_claims[
        "Table 5: norm-sandwich: changing normalization removes the spike"
    ].holds  # spike side still tested


def test_optimizer_and_ffn_claims():
    runs = [
        run("baseline", 0, 30.0, spike=50.0),
        run("wd-0", 0, 10.0, spike=80.0),
        run("wd-5x", 0, 45.0),
        run("lr-025x", 0, 2.0),
        run("lr-05x", 0, 12.0),
        run("lr-2x", 0, 35.0),
    ]
    claims = claims_of(runs, "3")
    assert claims["Table 3: wd-0: weight decay raises sinks (none: fewer)"].holds
    assert claims["Table 3: wd-5x: weight decay raises sinks (5x: more)"].holds
    assert claims["Table 3: wd-0: no weight decay gives a bigger spike"].holds
    assert claims["Table 3: lr-025x: too small a learning rate suppresses sinks"].holds
    rising = claims["Table 3: sink ratio rises with the learning rate up to 2x the baseline's"]
    # four points in order: p = 1/24 (exact), one seed each: the point decides
    assert rising.holds and "x0.25: 2" in rising.ours and "p = 0.0417 (exact)" in rising.ours
    falling = [run("baseline", 0, 30.0), run("lr-025x", 0, 50.0), run("lr-05x", 0, 40.0), run("lr-2x", 0, 20.0)]
    assert not claims_of(falling, "3")["Table 3: sink ratio rises with the learning rate up to 2x the baseline's"].holds
    ffn = claims_of(
        [
            run("baseline", 0, 0.0, spike=40.0),
            run("ffn-linear", 0, 0.0, spike=10.0),
            run("ffn-gelu", 0, 0.0, spike=45.0),
        ],
        "4",
    )
    assert ffn["Table 4: ffn-linear: the spike is smaller without the gated (SwiGLU) amplifier"].holds
    assert ffn["Table 4: ffn-gelu: the spike is smaller without the gated (SwiGLU) amplifier"].verdict == FAILS
    assert ffn["Table 4: ffn-attn-only: the spike is smaller without the gated (SwiGLU) amplifier"].verdict == NA


def test_head_count_claims_at_fixed_d_head_and_fixed_width():
    runs = [
        run("baseline", 0, 30.0, n_heads=4, d_head=16),
        run("nhead-1", 0, 5.0, n_heads=1, d_head=16),
        run("nhead-2", 0, 15.0, n_heads=2, d_head=16),
        run("nhead-8", 0, 35.0, n_heads=8, d_head=16),
        run("heads-1x64", 0, 45.0, n_heads=1, d_head=64),
        run("heads-2x32", 0, 40.0, n_heads=2, d_head=32),
        run("heads-8x8", 0, 10.0, n_heads=8, d_head=8),
    ]
    claims = claims_of(runs, "6")  # four points each (a rank claim needs four)
    assert claims["Table 6: sink ratio rises with N_head at fixed d_head"].holds
    fixed = claims["Table 6: at fixed width, sink ratio rises with N_head (smaller heads)"]
    assert fixed.verdict == FAILS and "2: 40" in fixed.ours  # ours falls with N_head at fixed width


def test_table_figure(tmp_path, monkeypatch):
    runs = [
        run("baseline", 0, 30.0),
        run("baseline", 1, 34.0),
        run("norm-sandwich", 0, 20.0),
        run("norm-sandwich", 1, 26.0),
        run("norm-dyt", 0, 0.0),
        run("norm-dyt", 1, 2.0),
    ]
    drawn = capture_figures(monkeypatch)
    frame = table_frame(runs, "5")
    written = plot_table(frame, "5", tmp_path / "table5.pdf", "synthetic Bigram-Backcopy")
    assert [p.suffix for p in written] == [".pdf", ".png"] and figure_files(tmp_path / "table5") == written
    (fig,) = drawn
    sink, key0, spike = fig.axes
    frame = pd.concat([frame[frame["variant"] == "baseline"], frame[frame["variant"] != "baseline"]])
    variants = [t.get_text() for t in sink.get_xticklabels()]
    assert variants == list(frame["variant"]) and variants[0] == "baseline"
    # sink ratio: the paper's bar, then ours (the seed mean), per variant
    heights = [bar.get_height() for bar in sink.patches]
    np.testing.assert_allclose(heights[: len(frame)], frame["sink_ratio_paper"].astype(float))
    assert dict(zip(variants, heights[len(frame) :])) == {"baseline": 32.0, "norm-sandwich": 23.0, "norm-dyt": 1.0}
    np.testing.assert_allclose([bar.get_height() for bar in key0.patches], frame["key0_mass_mean"])
    # the spike relative to the baseline's, ours and the paper's
    ours = [bar.get_height() for bar in spike.patches][len(frame) :]
    np.testing.assert_allclose(ours, frame["spike"] / frame["spike"].iloc[0])


def test_spike_claims_need_a_first_token_spike():
    """No first-token spike at the baseline (position 0 ~4x its block's median, as on the synthetic
    language): the spike claims are not tested, and one row says why."""
    flat = [
        {**run("baseline", 0, 40.0, spike=12.0), "first_token_spike_to_median": 4.0},
        {**run("norm-sandwich", 0, 38.0, spike=5.0), "first_token_spike_to_median": 4.0},
    ]
    claims = claims_of(flat, "5")
    spike_side = [c for name, c in claims.items() if "removes the spike" in name or "spike orders" in name]
    assert len(spike_side) == 5 and all(c.verdict == NA for c in spike_side)  # 4 norm rows + the rank claim
    assert (
        "no first-token spike at the baseline"
        in claims["Table 5: norm-sandwich: changing normalization removes the spike"].ours
    )
    guard = "Table 5: a first-token spike forms at the baseline (what the spike-side claims of this table need)"
    assert claims[guard].verdict == FAILS and "4x its block's median" in claims[guard].ours
    assert claims["Table 5: norm-sandwich: changing normalization keeps the sinks"].holds
    spiky = [{**row, "first_token_spike_to_median": 25.0} for row in flat]
    claims = claims_of(spiky, "5")
    assert claims["Table 5: norm-sandwich: changing normalization removes the spike"].holds
    assert claims[guard].holds


# ----------------------------------------------------------------------------------------------
# claims as definitions, verdicts from intervals over seeds


def test_thresholds_come_from_the_config_each_with_a_reason():
    import yaml

    spec = yaml.safe_load(SCHEMA.read_text())["properties"]["ablations"]["properties"]["claims"]["properties"]
    assert set(spec) == set(Thresholds.__dataclass_fields__)
    assert all(len(entry["description"]) > 40 for entry in spec.values())  # a reason, not a label
    assert THRESHOLDS == Thresholds(
        spike_min_to_median=10,
        sink_min_ratio=20,
        change_factor=0.5,
        trend_min_rho=0.5,
        rank_min_rho=0,
        rank_min_points=4,
        rank_max_p=0.05,
    )
    runs = [run("baseline", 0, 40.0), run("norm-sandwich", 0, 35.0)]  # 0.875x the baseline's sink
    name = "Table 5: norm-sandwich: changing normalization keeps the sinks"
    assert claims_of(runs, "5")[name].holds
    strict = claim_thresholds({"change_factor": 0.9})
    assert strict.change_factor == 0.9 and strict.sink_min_ratio == 20  # the others keep their defaults
    assert claims_of(runs, "5", strict)[name].verdict == FAILS
    assert claims_of(runs, "5", claim_thresholds({"sink_min_ratio": 50}))[name].verdict == NA
    with pytest.raises(ConfigError, match="ablations.claims.change_factor"):
        claim_thresholds({"change_factor": 2})
    with pytest.raises(ConfigError, match="ablations.claims"):
        claim_thresholds({"no_such_threshold": 1})


def test_an_interval_straddling_the_threshold_is_inconclusive():
    runs = [
        run("baseline", 0, 40.0),
        run("baseline", 1, 44.0),
        run("lossfrom-half", 0, 10.0),
        run("lossfrom-half", 1, 30.0),  # mean 20 < 0.5 x 42, but a seed of 30 is above 21
    ]
    claim = claims_of(runs, "8")["Table 8: lossfrom-half: loss only on late positions collapses the sink"]
    assert claim.verdict == INCONCLUSIVE and claim.value == pytest.approx(20 / 42)
    assert claim.low < 0.5 < claim.high and claim.low == pytest.approx(10 / 44) and claim.high == pytest.approx(30 / 40)
    assert claim.tolerance == "variant / baseline < 0.5 (whole 95 % interval over seeds)"


def test_identical_seeds_give_a_zero_width_interval():
    runs = [run("baseline", s, 40.0) for s in range(3)] + [run("lossfrom-half", s, 10.0) for s in range(3)]
    claim = claims_of(runs, "8")["Table 8: lossfrom-half: loss only on late positions collapses the sink"]
    assert claim.value == claim.low == claim.high == 0.25 and claim.verdict == HOLDS
    assert "0.25 [0.25, 0.25]x the baseline's (95 % bootstrap over seeds)" in claim.ours
    estimate = seed_estimate([np.array([3.0, 3.0]), np.array([1.0, 1.0])], lambda m: m[:, 0] - m[:, 1])
    assert (estimate.value, estimate.low, estimate.high, estimate.n) == (2.0, 2.0, 2.0, 2)
    one = seed_estimate([np.array([3.0]), np.array([1.0, 2.0])], lambda m: m[:, 0] - m[:, 1])
    assert one.n == 1 and not one.has_interval  # a variant with one seed: the point decides


def test_spearman_and_permutation_p_known_answers():
    assert list(spearman_rows([1, 2, 3, 4], [[1, 2, 3, 4], [4, 3, 2, 1], [5, 5, 5, 5]])) == [1.0, -1.0, 0.0]
    assert permutation_p([1, 2, 3], [1, 2, 3]) == pytest.approx(1 / 6)  # 3 points: never below 0.05
    assert permutation_p([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1 / 24)
    assert permutation_p([1, 2, 3, 4], [1, 2, 4, 4]) == pytest.approx(2 / 24)  # a tie: two orders as good
    assert permutation_p([1, 2, 3, 4], [4, 3, 2, 1]) == 1.0
    assert permutation_p(range(10), range(10)) == pytest.approx(1 / 20001)  # random orders beyond 8 points


def dhead_runs(sinks_by_seed, spike=30.0):
    """Table 6's d_head sweep at one head: {d_head: [sink per seed]}, d_head 64 being the baseline (the
    paper's rows matched by ratio: our 8 <-> its 16)."""
    rows = []
    for d, sinks in sinks_by_seed.items():
        name = "baseline" if d == 64 else f"dhead-{d}"
        paper = REGISTRY["baseline"].paper if d == 64 else parametric(name, ModelConfig(n_heads=1, d_head=64)).paper
        rows += [
            {**run(name, seed, sink, spike=spike + d, n_heads=1, d_head=d), "paper": paper}
            for seed, sink in enumerate(sinks)
        ]
    return rows


def test_a_rank_claim_needs_four_points():
    three = claims_of(dhead_runs({16: [10.0], 32: [20.0], 64: [30.0]}), "6")
    trend = three["Table 6: sink ratio rises with d_head at fixed N_head"]
    assert (
        trend.verdict == NA and "3 variants (means 16: 10, 32: 20, 64: 30); a rank claim needs at least 4" in trend.ours
    )
    agreement = three["Table 6: our sink ratio orders the variants as the paper's"]
    assert agreement.verdict == NA and "3 rows" in agreement.ours
    # with three allowed (config), a perfect order of three is still 1 in 6 by chance: inconclusive
    loose = claims_of(dhead_runs({16: [10.0], 32: [20.0], 64: [30.0]}), "6", claim_thresholds({"rank_min_points": 3}))
    assert loose["Table 6: sink ratio rises with d_head at fixed N_head"].verdict == INCONCLUSIVE
    four = claims_of(dhead_runs({8: [5.0], 16: [10.0], 32: [20.0], 64: [30.0]}), "6")
    trend = four["Table 6: sink ratio rises with d_head at fixed N_head"]
    assert trend.verdict == HOLDS and trend.value == 1.0 and "1 seed: the point decides" in trend.ours
    assert four["Table 6: our sink ratio orders the variants as the paper's"].holds  # 4.1 / 9.8 / 27.9 / 37.7 ...
    assert four["Table 6: spike rises with d_head at fixed N_head"].holds  # spike 30 + d_head


def test_a_trend_over_seeds_that_cross_is_inconclusive():
    crossing = claims_of(dhead_runs({8: [5.0, 40.0], 16: [30.0, 10.0], 32: [20.0, 35.0], 64: [30.0, 40.0]}), "6")
    trend = crossing["Table 6: sink ratio rises with d_head at fixed N_head"]
    assert trend.value == pytest.approx(0.8)  # means 22.5, 20, 27.5, 35
    assert trend.low < 0.5 < trend.high and trend.verdict == INCONCLUSIVE
    assert "Spearman(d_head, sink_ratio) = +0.80 [" in trend.ours and "95 % bootstrap over seeds" in trend.ours
    steady = claims_of(dhead_runs({8: [5.0, 6.0], 16: [10.0, 12.0], 32: [20.0, 22.0], 64: [30.0, 31.0]}), "6")
    trend = steady["Table 6: sink ratio rises with d_head at fixed N_head"]
    assert trend.verdict == HOLDS and trend.low == trend.high == 1.0  # every resample keeps the order


def test_every_definition_yields_a_row():
    def texts(definition):
        if isinstance(definition, Forms):
            return [FORMS[definition.side][2]]
        if isinstance(definition, RankAgreement):
            return ["orders the variants as the paper's"]
        if isinstance(definition, PaperDecides):
            return [text for case in definition.cases for text in case[1:]]
        return [definition.text]

    for table, definitions in CLAIMS.items():
        for runs in ([run("baseline", 0, 40.0)], [run("dhead-8", 0, 40.0)]):  # only a baseline; no baseline
            claims = table_claims(ablation_table(runs), table, "test", THRESHOLDS)
            for definition in definitions:
                assert any(text in c.claim for c in claims for text in texts(definition)), (table, definition)
            for claim in claims:
                if claim.verdict == NA:
                    assert claim.ours.startswith("n/a: ") and len(claim.ours) > 12
    no_base = claims_of([run("gate-cond-channel", 0, 2.0)], "7")
    assert no_base["Table 7: gate-cond-channel: conditional gating removes the sink"].ours == (
        "n/a: no baseline run in this preset: nothing to compare with"
    )
    assert no_base["Table 7: a sink forms at the baseline (what the sink-side claims of this table need)"].verdict == NA


def test_claims_rescore_a_written_table():
    runs = [run("baseline", 0, 40.0), run("baseline", 1, 44.0), run("wd-0", 0, 5.0), run("wd-0", 1, 7.5)]
    frame = table_frame(runs, "3")
    back = runs_from_table(frame)
    assert list(back["variant"]) == ["baseline", "baseline", "wd-0", "wd-0"] and list(back["seed"]) == [0, 1, 0, 1]
    assert list(back["sink_ratio"]) == [40.0, 44.0, 5.0, 7.5] and list(back["table"]) == ["", "", "3", "3"]
    name = "Table 3: wd-0: weight decay raises sinks (none: fewer)"
    again = {c.claim: c for c in table_claims(back, "3", "test", THRESHOLDS)}
    assert again[name].ours == claims_of(runs, "3")[name].ours and again[name].holds
