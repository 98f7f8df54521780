"""Verdicts you can trust for the functional analyses (intervention, attention path, implicit
parameters, INT8, KV cache): per-prompt measurements from the same forwards, 95 % bootstrap
intervals resampling the prompts jointly across conditions, and verdicts against the thresholds of
the `claims:` sections. Answers known by construction: per-prompt tables written by hand, a planted
model, a kv-cache run without the window that drops the first tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from analysis_helpers import make_job
from conftest import family_model

from spikesink.analyses import get, runner
from spikesink.analyses.attention_path.claims import attention_path_claims
from spikesink.analyses.implicit_params.claims import implicit_claims
from spikesink.analyses.intervention.claims import intervention_claims
from spikesink.analyses.kv_cache.claims import kv_cache_claims
from spikesink.analyses.quantization.claims import quantization_claims
from spikesink.config import analysis_settings
from spikesink.reporting.verdicts import FAILS, HOLDS, INCONCLUSIVE, NA
from spikesink.results import PromptSet

N = 16
CHANNELS = [3, 11]
IDS = torch.randint(1, 128, (4, 16), generator=torch.Generator().manual_seed(3))


def zero_width(claim, value) -> bool:
    """The claim's interval has no width (up to rounding) and sits at `value`."""
    return claim.low == pytest.approx(claim.high, rel=1e-12) and claim.value == pytest.approx(value, rel=1e-12)


def spread_around(mean: float, half_width: float, n: int = N) -> np.ndarray:
    """n values evenly spread over mean +- half_width (their mean is `mean`)."""
    return mean + np.linspace(-half_width, half_width, n)


# ------------------------------------------------------------------------------------------
# the attention path: a drop against min_drop (0.5) and a quiet control
# ------------------------------------------------------------------------------------------


def path_tables(spike_per_prompt, control_per_prompt, base=80.0):
    """The attention-path table and its per-prompt table: the sink ratio of the edited layers per
    prompt, unedited (`base`, one value or one per prompt) and with either edit."""
    spike, control = np.asarray(spike_per_prompt, float), np.asarray(control_per_prompt, float)
    values = {"none": np.broadcast_to(base, spike.shape).astype(float), "spike channels": spike}
    values["control channels"] = control
    per_prompt = pd.concat(
        [
            pd.DataFrame(
                {
                    "condition": condition,
                    "prompt": np.arange(len(v)),
                    "n_tokens": 127,
                    "nll_sum": 127 * 3.0,
                    "sink_ratio": v,
                    "key0_mass": v / 100,
                    "sink_ratio_edited_layers": v,
                    "key0_mass_edited_layers": v / 100,
                }
            )
            for condition, v in values.items()
        ],
        ignore_index=True,
    )
    table = pd.DataFrame(
        [
            {
                "condition": condition,
                "blocks": "5-9",
                "perplexity": 20.0,
                "sink_ratio_edited_layers": v.mean(),
                "key0_mass_edited_layers": v.mean() / 100,
            }
            for condition, v in values.items()
        ]
    )
    return table, per_prompt


def path_claim(spike, control):
    table, per_prompt = path_tables(spike, control)
    (claim,) = attention_path_claims("m", table, None, 0.5, 0.2, per_prompt)
    return claim


def test_a_drop_whose_interval_straddles_the_threshold_is_inconclusive():
    # per-prompt drops 0.2 ... 0.8 (edited sink ratio 64 ... 16 of 80): the mean drop is 0.5 and its
    # interval over 16 prompts reaches well either side of the 0.5 bar
    claim = path_claim(spread_around(40.0, 24.0), np.full(N, 80.0))
    assert claim.verdict == INCONCLUSIVE
    assert claim.value == pytest.approx(0.5) and claim.low < 0.5 < claim.high
    assert f"drop 0.50 [{claim.low:.2f}, {claim.high:.2f}]" in claim.ours and "over 16 held-out prompts" in claim.ours
    # the same spread around a 0.7 drop, or around a 0.2 drop, decides
    assert path_claim(spread_around(24.0, 8.0), np.full(N, 80.0)).verdict == HOLDS
    assert path_claim(spread_around(64.0, 8.0), np.full(N, 80.0)).verdict == FAILS
    # the control edit straddling its 20% bar makes the whole claim inconclusive, however clear the drop
    claim = path_claim(np.full(N, 20.0), spread_around(64.0, 14.0))
    assert claim.verdict == INCONCLUSIVE and claim.value == pytest.approx(0.75) and claim.low == claim.high
    # a control moving them clearly fails it: the edit is not specific
    assert path_claim(np.full(N, 20.0), np.full(N, 40.0)).verdict == FAILS


def test_identical_per_prompt_values_give_a_zero_width_interval():
    claim = path_claim(np.full(N, 30.0), np.full(N, 80.0))
    assert claim.verdict == HOLDS
    assert zero_width(claim, 1 - 30 / 80)
    assert "drop 0.62 [0.62, 0.62]" in claim.ours


def test_the_interval_resamples_the_prompts_jointly_across_conditions():
    """Prompts whose unedited sink ratios differ widely but whose edit halves each one exactly: the
    drop is 0.5 in every resample only when numerator and denominator are resampled together."""
    base = np.linspace(20.0, 100.0, N)
    table, per_prompt = path_tables(base / 2, base, base=base)
    (claim,) = attention_path_claims("m", table, None, 0.5, 0.2, per_prompt)
    assert zero_width(claim, 0.5)
    assert claim.verdict == HOLDS


# ------------------------------------------------------------------------------------------
# the intervention, implicit parameters, INT8 and the KV cache, each with a straddling interval
# ------------------------------------------------------------------------------------------


def nll_rows(per_prompt_ppl, **columns):
    """Per-prompt rows whose perplexities are `per_prompt_ppl` (127 tokens each)."""
    ppl = np.asarray(per_prompt_ppl, float)
    return pd.DataFrame({"prompt": np.arange(len(ppl)), "n_tokens": 127, "nll_sum": 127 * np.log(ppl)} | columns)


def test_intervention_verdicts_from_per_prompt_drops():
    table = pd.DataFrame(
        [
            {"condition": "none", "block": 4, "sink_ratio": 60.0, "key0_mass": 0.5, "perplexity": 20.0},
            {"condition": "zero", "block": 4, "sink_ratio": 30.0, "key0_mass": 0.3, "perplexity": 40.0},
        ]
    )

    def per_prompt(edited_sinks, edited_ppl):
        return pd.concat(
            [
                nll_rows(np.full(N, 20.0), sink_ratio=60.0, key0_mass=0.5, spike_first_token=1e4).assign(
                    block=4, condition="none"
                ),
                nll_rows(edited_ppl, sink_ratio=edited_sinks, key0_mass=0.3, spike_first_token=0.0).assign(
                    block=4, condition="zero"
                ),
            ],
            ignore_index=True,
        )

    (claim,) = intervention_claims("m", table, None, 0.5, 0.0, per_prompt(spread_around(30.0, 20.0), np.full(N, 40.0)))
    assert claim.verdict == INCONCLUSIVE and claim.low < 0.5 < claim.high  # sink ratio 60 -> 10 ... 50
    (claim,) = intervention_claims("m", table, None, 0.5, 0.0, per_prompt(np.full(N, 12.0), np.full(N, 40.0)))
    assert claim.verdict == HOLDS and zero_width(claim, 0.8)
    # perplexity that does not clearly rise (per prompt 0.5x ... 3x of 20) cannot hold the claim
    (claim,) = intervention_claims(
        "m", table, None, 0.5, 0.0, per_prompt(np.full(N, 12.0), np.geomspace(10.0, 60.0, N))
    )
    assert claim.verdict == INCONCLUSIVE


def test_implicit_parameter_verdicts_from_per_prompt_perplexity():
    table = pd.DataFrame(
        {
            "block": [0, 4, 4],
            "roles": ["", "step-up", "step-up"],
            "mode": ["none", "own_mean", "zero"],
            "perplexity": [20.0, 21.0, 30.0],
            "ratio": [1.0, 1.05, 1.5],
            "edited_tokens": [0, 16, 16],
            "spread": [np.nan, 0.05, 0.05],
        }
    )
    rng = np.random.default_rng(0)
    base = rng.uniform(10, 30, N)

    def per_prompt(own, zero):
        return pd.concat(
            [
                nll_rows(base).assign(block=0, mode="none"),
                nll_rows(base * own).assign(block=4, mode="own_mean"),
                nll_rows(base * zero).assign(block=4, mode="zero"),
            ],
            ignore_index=True,
        )

    # own mean: per-prompt ratios 0.95 ... 1.15 around the 1.05 edge of the 5% band
    own = np.exp(spread_around(np.log(1.05), 0.1))
    site = {"block": 4, "spread": 0.05, "distance_by_prompt": [0.05] * N, "spike_tokens_by_prompt": [1] * N}
    claims = {c.claim: c for c in implicit_claims("m", table, None, 0.05, 2.0, 0.1, per_prompt(own, 1.5), [site])}
    own_row = claims["setting the massive activations to their own mean keeps perplexity"]
    assert own_row.verdict == INCONCLUSIVE and own_row.low < 1.05 < own_row.high
    zero_row = claims["setting the massive activations to zero destroys the model"]
    assert zero_row.verdict == FAILS and zero_width(zero_row, 1.5)
    spread_row = claims["massive activations are nearly constant across prompts"]
    assert spread_row.verdict == HOLDS and zero_width(spread_row, 0.05)
    assert "95% interval over 16 calibration prompts" in spread_row.ours
    claims = implicit_claims("m", table, None, 0.05, 2.0, 0.1, per_prompt(np.full(N, 1.01), 3.0), [site])
    assert [c.verdict for c in claims] == [HOLDS, HOLDS, HOLDS]
    # a spread whose interval straddles its bar
    wide = dict(site, distance_by_prompt=list(spread_around(0.1, 0.08)))
    assert implicit_claims("m", table, None, 0.05, 2.0, 0.1, per_prompt(own, 3.0), [wide])[2].verdict == INCONCLUSIVE
    # an edit left out of the config's modes still has its row, n/a with the reason
    only_own = table[table["mode"] != "zero"]
    rows = implicit_claims("m", only_own, None, 0.05, 2.0, 0.1, per_prompt(own, 3.0), [site])
    assert len(rows) == 3 and rows[1].verdict == NA and "zero was not run" in rows[1].ours


def int8_tables(per_tensor, keep, kept_tokens, fp=20.0):
    table = pd.DataFrame(
        {
            "condition": ["fp", "per_tensor", "per_tensor_keep", "per_token"],
            "perplexity": [fp, float(np.mean(per_tensor)), float(np.mean(keep)), fp],
            "kept_fp_share": [0.0, 0.0, float(np.mean(kept_tokens)) / 1000, 0.0],
        }
    )
    per_prompt = pd.concat(
        [
            nll_rows(np.full(N, fp), kept_tokens=0, seen_tokens=1000).assign(condition="fp"),
            nll_rows(per_tensor, kept_tokens=0, seen_tokens=1000).assign(condition="per_tensor"),
            nll_rows(keep, kept_tokens=kept_tokens, seen_tokens=1000).assign(condition="per_tensor_keep"),
            nll_rows(np.full(N, fp), kept_tokens=0, seen_tokens=1000).assign(condition="per_token"),
        ],
        ignore_index=True,
    )
    return table, per_prompt


def test_int8_recovery_verdicts_from_per_prompt_perplexity():
    scales = pd.DataFrame({"module": ["a"], "role": ["down"], "block": [4], "max_scale": [5.0]})
    # per-tensor doubles perplexity (20 -> 40); keeping the clipping tokens brings prompts to 24 ... 36
    table, per_prompt = int8_tables(np.full(N, 40.0), spread_around(30.0, 6.0), np.full(N, 2))
    claim = quantization_claims("m", table, scales, [4], 0.5, 0.01, 0.05, per_prompt)[0]
    assert claim.verdict == INCONCLUSIVE and claim.low < 0.5 < claim.high
    table, per_prompt = int8_tables(np.full(N, 40.0), np.full(N, 22.0), np.full(N, 2))
    claim, largest = quantization_claims("m", table, scales, [4], 0.5, 0.01, 0.05, per_prompt)
    assert claim.verdict == HOLDS and zero_width(claim, 0.9)
    assert "0.20% [0.20%, 0.20%] of tokens" in claim.ours and largest.verdict == HOLDS
    # most tokens kept: no outlier split, whatever it recovers
    table, per_prompt = int8_tables(np.full(N, 40.0), np.full(N, 22.0), np.full(N, 900))
    claim = quantization_claims("m", table, scales, [4], 0.5, 0.01, 0.05, per_prompt)[0]
    assert claim.verdict == FAILS and "not an outlier split: 90% of tokens would clip" in claim.ours
    # a negligible cost: n/a with the reason, never a share of noise
    table, per_prompt = int8_tables(np.full(N, 20.1), np.full(N, 20.0), np.full(N, 2))
    claim = quantization_claims("m", table, scales, [4], 0.5, 0.01, 0.05, per_prompt)[0]
    assert claim.verdict == NA and "costs less than 1%" in claim.ours


def kv_tables(window_ppl, kept_ppl, full=20.0, keep=(0, 1), n_blocks=N):
    """A kv-cache summary and per-block table (one text, blocks of 64 targets from position 256)."""
    per_condition = {"full": (None, 0, np.full(n_blocks, full))}
    for k in keep:
        per_condition[f"window 256 + {k} kept"] = (256, k, np.asarray(window_ppl if k == 0 else kept_ppl, float))
    blocks = pd.concat(
        [
            nll_rows(ppl, kept=k).rename(columns={"prompt": "block"}).assign(condition=name, text=0, n_tokens=64)
            for name, (_, k, ppl) in per_condition.items()
        ],
        ignore_index=True,
    )
    blocks["nll_sum"] = 64 * np.log(np.concatenate([p for _, _, p in per_condition.values()]))
    blocks["start"] = 256 + 64 * blocks["block"]
    summary = pd.DataFrame(
        [
            {"condition": name, "window": w, "kept": k, "perplexity_evicted": float(np.exp(np.log(p).mean()))}
            for name, (w, k, p) in per_condition.items()
        ]
    )
    return summary, blocks


def test_kv_cache_verdicts_resample_blocks_of_positions():
    summary, blocks = kv_tables(np.full(N, 40.0), np.exp(spread_around(np.log(30.0), 0.3)))
    cost, restore = kv_cache_claims("m", summary, 0.1, 0.5, blocks)
    assert cost.verdict == HOLDS and zero_width(cost, 1.0)
    assert "95% interval over 16 blocks of 64 positions of 1 text(s), resampled (not prompts)" in cost.ours
    assert restore.claim == "keeping 1 first token(s) in the window restores perplexity"
    assert restore.verdict == INCONCLUSIVE and restore.low < 0.5 < restore.high


def test_kv_cache_without_a_0_in_keep_reads_n_a_with_the_reason():
    summary, blocks = kv_tables(np.full(N, 40.0), np.full(N, 21.0), keep=(1, 4))
    claims = kv_cache_claims("m", summary, 0.1, 0.5, blocks)
    assert [c.claim for c in claims] == [
        "dropping the first tokens from a sliding-window cache raises perplexity",
        "keeping 1 first token(s) in the window restores perplexity",
        "keeping 4 first token(s) in the window restores perplexity",
    ]
    for claim in claims:
        assert claim.verdict == NA
        assert claim.ours == "n/a: kv_cache.keep has no 0: the window without the first tokens was not measured"
    # and through the job, as the workflow runs it: a model's window keeping 1 token only
    model = family_model("llama")
    texts = torch.randint(1, 128, (1, 40), generator=torch.Generator().manual_seed(1)).numpy()
    settings = {"window": 8, "keep": [1], "n_tokens": 40, "bin": 8}
    job = make_job("kv_cache", {"prompts.long": PromptSet("long", list(texts), {})}, model, settings)
    claims = runner.claims(runner.measure(job), job)
    assert [c.verdict for c in claims] == [NA, NA] and all("has no 0" in c.ours for c in claims)
    # keep [0] only: the restore claim still has its row
    summary, blocks = kv_tables(np.full(N, 40.0), None, keep=(0,))
    cost, restore = kv_cache_claims("m", summary, 0.1, 0.5, blocks)
    assert cost.verdict == HOLDS and restore.verdict == NA and "no count above 0" in restore.ours


# ------------------------------------------------------------------------------------------
# the same forwards: per-prompt values add up to the tables' values
# ------------------------------------------------------------------------------------------


def test_per_prompt_measurements_add_up_to_the_tables(tmp_path):
    from test_function import PLANTED_LIFECYCLE, constant_spike

    from spikesink.extraction.perplexity import perplexity

    model = family_model("llama")
    heldout = PromptSet("heldout", list(IDS.numpy()), {})
    inputs = {"lifecycle": PLANTED_LIFECYCLE, "prompts.heldout": heldout, "prompts.extraction": heldout}
    with constant_spike(model):
        results = {
            name: runner.measure(make_job(name, inputs, model, settings))
            for name, settings in (
                ("intervention", {"modes": ["zero"]}),
                ("attention_path", None),
                ("implicit_params", {"calibration_prompts": 4}),
            )
        }
        fp = perplexity(model, [IDS.numpy()])

    def ppl(rows):
        return float(np.exp(rows["nll_sum"].sum() / rows["n_tokens"].sum()))

    for name in ("intervention", "attention_path"):
        result = results[name]
        assert len(result.per_prompt) == len(result.table) * len(IDS)
        for row in result.table.to_dict("records"):
            rows = result.per_prompt[result.per_prompt["condition"] == row["condition"]]
            assert list(rows["prompt"]) == [0, 1, 2, 3]
            assert ppl(rows) == pytest.approx(row["perplexity"], rel=1e-9)
            columns = ["sink_ratio", "key0_mass"] + (["sink_ratio_edited_layers"] if name == "attention_path" else [])
            for column in columns:
                assert rows[column].mean() == pytest.approx(row[column], rel=1e-5)
        saved = result.save(tmp_path / name)
        assert "per_prompt.parquet" in [p.name for p in saved]
        pd.testing.assert_frame_equal(type(result).load(tmp_path / name).per_prompt, result.per_prompt)
    implicit = results["implicit_params"]
    for row in implicit.table.itertuples():
        prompts = implicit.per_prompt
        rows = prompts[(prompts["block"] == row.block) & (prompts["mode"] == row.mode)]
        assert len(rows) == len(IDS) and ppl(rows) == pytest.approx(row.perplexity, rel=1e-9)
    assert ppl(implicit.per_prompt[implicit.per_prompt["mode"] == "none"]) == pytest.approx(fp, rel=1e-9)
    (site,) = implicit.sites["sites"]
    assert sum(site["spike_tokens_by_prompt"]) == site["n_first"] + site["n_other"]
    assert sum(site["distance_by_prompt"]) / sum(site["spike_tokens_by_prompt"]) == pytest.approx(site["spread"])


def test_int8_and_kv_cache_per_unit_measurements_add_up(tmp_path):
    from spikesink.analyses.act_scales.measure import activation_scales
    from spikesink.analyses.kv_cache.measure import kv_cache_tables
    from spikesink.analyses.quantization.measure import quantization_tables

    model = family_model("llama")
    scales = activation_scales(model, IDS.numpy(), np.zeros(IDS.shape, bool))["scales"]
    table, per_prompt = quantization_tables(model, [IDS[:3].numpy(), IDS[3:].numpy()], scales)
    for row in table.itertuples():
        rows = per_prompt[per_prompt["condition"] == row.condition]
        assert list(rows["prompt"]) == [0, 1, 2, 3]
        assert np.exp(rows["nll_sum"].sum() / rows["n_tokens"].sum()) == pytest.approx(row.perplexity, rel=1e-9)
        share = rows["kept_tokens"].sum() / rows["seen_tokens"].sum() if rows["seen_tokens"].sum() else 0.0
        assert share == pytest.approx(row.kept_fp_share)
    keep = per_prompt[per_prompt["condition"] == "per_tensor_keep"]
    # every Linear input of every forward counted, per prompt: 7 inputs x 3 layers x 16 tokens
    assert (keep["seen_tokens"] == 7 * 3 * IDS.shape[1]).all()
    texts = torch.randint(1, 128, (2, 40), generator=torch.Generator().manual_seed(1)).numpy()
    summary, _, blocks = kv_cache_tables(model, texts, window=8, keep=(0, 1), bin_size=8)
    for row in summary.itertuples():
        rows = blocks[blocks["condition"] == row.condition]
        assert len(rows) == 2 * 4 and rows["n_tokens"].sum() == 2 * (39 - 8)  # 31 targets: blocks of 8, 8, 8, 7
        assert np.exp(rows["nll_sum"].sum() / rows["n_tokens"].sum()) == pytest.approx(row.perplexity_evicted)


# ------------------------------------------------------------------------------------------
# a planted model: the claims that hold by construction still hold, with their intervals
# ------------------------------------------------------------------------------------------


def test_the_implicit_parameter_claims_still_hold_on_a_planted_model(planted):
    import spikesink
    from spikesink.acquisition.planted import planted_tokenizer

    model, _ = planted
    texts = Path(__file__).resolve().parents[1] / ".test" / "texts"
    config = {
        "extraction": {"n_prompts": 16, "seq_len": 48},
        "heldout": {"n_prompts": 8, "seq_len": 48},
        "analyses": {"implicit_params": {"calibration_prompts": 8}},
    }
    study = spikesink.Study(spikesink.load_model(model, planted_tokenizer(), name="planted"), texts, config=config)
    claims = {c.claim: c for c in study.claims("implicit_params")}
    own = claims["setting the massive activations to their own mean keeps perplexity"]
    assert own.verdict == HOLDS and own.low < own.value < own.high  # a real interval over 8 prompts
    assert 1 - 0.05 < own.low and own.high < 1 + 0.05 and "95% interval over 8 held-out prompts" in own.tolerance
    spread = claims["massive activations are nearly constant across prompts"]
    assert spread.verdict == HOLDS and spread.high <= 0.1 and "over 8 calibration prompts" in spread.ours


def test_every_threshold_is_a_claims_key_with_a_reason():
    for name in ("intervention", "attention_path", "implicit_params", "quantization", "kv_cache"):
        claims = analysis_settings(name).claims
        schema = get(name).folder / "schema.yaml"
        properties = yaml.safe_load(schema.read_text())["properties"]["claims"]["properties"]
        assert properties, name
        for key, spec in properties.items():
            assert len(spec.get("description", "")) > 30, f"{name}.claims.{key} has no reason"
            assert getattr(claims, key) == spec["default"]
