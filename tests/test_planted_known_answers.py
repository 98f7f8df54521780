"""Known-answer tests of the scorecard: models whose answer is planted by hand
(spikesink.acquisition.planted), run through the pipeline's own stages (the extraction forward,
the life-cycle detector, each analysis's measure and claims), must read the planted verdicts.

* a planted sink: heads at known layers put a known mass on key 0, the spike token;
* two stages at known blocks: an early small rise cancelled before the main step-up;
* three spike channels at 1 : 0.5 : 0.25 (the repository holds no magnitudes for Llama-3-8B's
  three channels, 788, 1384 and 4062: these proportions are ours);
* a spike-token share whose bootstrap interval straddles its threshold: inconclusive.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from analysis_helpers import make_job

from spikesink.acquisition.planted import build_planted_llama, expected_key0_mass, planted_tokenizer
from spikesink.analyses import runner
from spikesink.analyses.lifecycle.claims import lifecycle_claims
from spikesink.analyses.lifecycle.measure import detect_lifecycle
from spikesink.extraction.block_stats import extract_block_stats
from spikesink.results import PromptSet, SinkStats

torch.set_num_threads(1)
SINK_HEADS = [(2, 0), (2, 3), (3, 1), (4, 2)]  # 4 of 6 x 4 heads: a sink ratio of 16.7 %
SINK_LOGIT = 8.0
EPS = 0.3  # the config's sinks.eps
T = 32
TEXT = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be "
    "in want of a wife. However little known the feelings or views of such a man may be on his first "
    "entering a neighbourhood, this truth is so well fixed in the minds of the surrounding families, "
    "that he is considered the rightful property of some one or other of their daughters.\n"
)


def plain_prompts(info, n=8, seq_len=T, seed=0, n_delimiters=None):
    """Prompts that start with a trigger token and continue with ordinary tokens; with
    `n_delimiters` (one count per prompt), that many delimiter tokens at random later positions."""
    rng = np.random.default_rng(seed)
    delimiters = sorted(info["delimiter_token_ids"])
    triggers = np.array(sorted(set(info["trigger_token_ids"]) - set(delimiters)))
    ordinary = np.array(sorted(set(range(256)) - set(delimiters)))
    ids = rng.choice(ordinary, size=(n, seq_len))
    ids[:, 0] = rng.choice(triggers, size=n)
    # a token repeating the first one cancels its own part too, and spikes (planted docstring)
    ids[:, 1] = np.where(
        ids[:, 1] == ids[:, 0], ordinary[(np.searchsorted(ordinary, ids[:, 1]) + 1) % len(ordinary)], ids[:, 1]
    )
    for row, k in zip(ids, n_delimiters if n_delimiters is not None else [0] * n):
        row[1 + rng.choice(seq_len - 1, size=k, replace=False)] = rng.choice(delimiters, size=k)
    return ids


def text_prompts(info, n=12, seq_len=T, seed=0):
    """Windows of English text (delimiters included) starting with a trigger token."""
    ids = np.array(planted_tokenizer()(TEXT * 4)["input_ids"])
    rng = np.random.default_rng(seed)
    rows = np.stack([ids[s : s + seq_len] for s in rng.integers(0, len(ids) - seq_len, n)])
    triggers = sorted(set(info["trigger_token_ids"]) - set(info["delimiter_token_ids"]))
    rows[:, 0] = rng.choice(triggers, size=n)
    return rows


def pipeline_inputs(model, ids, heldout=None):
    """What the workflow's extraction and life-cycle stages hand the analyses."""
    stats = extract_block_stats(model, ids, batch_size=4, progress=False, collect_sinks=True, sink_eps=EPS)
    inputs = {
        "block_stats": stats,
        "lifecycle": detect_lifecycle(stats),
        "sinks": SinkStats.from_arrays(stats.sinks),
        "prompts.extraction": PromptSet("extraction", list(ids), {"bos_added": False}),
    }
    if heldout is not None:
        inputs["prompts.heldout"] = PromptSet("heldout", list(heldout), {"bos_added": False})
    return inputs


def run_claims(name, model, inputs, settings=None):
    job = make_job(name, inputs, model, settings, model_name="planted")
    job.model.tokenizer = planted_tokenizer()
    result = runner.measure(job)
    return result, {c.claim: c for c in runner.claims(result, job)}


# --- the planted sink ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sink_model():
    return build_planted_llama(sink_heads=SINK_HEADS, sink_logit=SINK_LOGIT)


def uniform_key0_mass(n_positions):
    """A head that attends uniformly to the keys it sees puts 1 / (t + 1) on key 0 at query t."""
    return float(np.mean(1.0 / np.arange(1, n_positions + 1)))


def test_the_sink_statistics_find_exactly_the_planted_heads_with_their_mass(sink_model):
    model, info = sink_model
    assert info["sink_heads"] == [list(p) for p in sorted(SINK_HEADS)] and info["sink_logit"] == SINK_LOGIT
    inputs = pipeline_inputs(model, plain_prompts(info))  # key 0 is the only spike token
    mass = inputs["sinks"].key0_mass  # (prompts, layers, heads)
    planted = np.zeros(mass.shape[1:], dtype=bool)
    planted[tuple(np.array(SINK_HEADS).T)] = True
    np.testing.assert_allclose(mass[:, planted], expected_key0_mass(SINK_LOGIT, T), atol=0.01)
    np.testing.assert_allclose(mass[:, ~planted], uniform_key0_mass(T), atol=0.01)  # no other head sinks
    result, claims = run_claims("sinks", model, inputs)
    np.testing.assert_array_equal(result.per_head["sink_ratio_layer_head"] > 0, planted)
    np.testing.assert_array_equal(result.per_head["sink_ratio_layer_head"][planted], 100.0)  # percent of prompts
    assert result.sink_ratio == pytest.approx(100 * len(SINK_HEADS) / planted.size)
    assert result.share_on_spikes == pytest.approx(expected_key0_mass(SINK_LOGIT, T), abs=0.01)


@pytest.mark.parametrize("logit", [1.0, 3.0])
def test_a_weaker_sink_puts_the_designed_mass_on_key_0(logit):
    """Below saturation the mass follows e^S / (e^S + t) (ordinary keys score ~0, up to the step-up
    block's small output on them)."""
    model, info = build_planted_llama(sink_heads=[(3, 2)], sink_logit=logit)
    stats = extract_block_stats(model, plain_prompts(info), batch_size=4, progress=False, collect_sinks=True)
    assert float(stats.sinks["key0_mass"][:, 3, 2].mean()) == pytest.approx(expected_key0_mass(logit, T), abs=0.03)


def test_sink_heads_must_read_a_spiking_state():
    for bad in ([(1, 0)], [(5, 0)], [(2, 4)]):  # layer 1 reads block 2 (before the step-up); 5 reads 10
        with pytest.raises(ValueError, match="sink head"):
            build_planted_llama(sink_heads=bad)
    with pytest.raises(ValueError, match="need a spike"):
        build_planted_llama(sink_heads=[(2, 0)], spike_magnitude=0)


@pytest.fixture(scope="module")
def sink_run(sink_model):
    model, info = sink_model
    return pipeline_inputs(model, text_prompts(info), heldout=text_prompts(info, n=6, seed=1))


def test_sink_claims_read_the_planted_verdicts(sink_model, sink_run):
    model, info = sink_model
    _, sinks = run_claims("sinks", model, sink_run)
    on_spike = sinks["attention sinks form on the spike token (key 0)"]
    assert on_spike.verdict == "holds", on_spike.ours
    assert on_spike.low >= 0.99  # sinking heads give the spike tokens (key 0 and delimiters) nearly all
    _, geometry = run_claims("sink_geometry", model, sink_run)
    assert {claim: c.verdict for claim, c in geometry.items()} == {
        "sink keys live in a 1-2 dimensional subspace": "holds",
        "in sink heads non-sink queries sit closer to the sink key than to non-sink keys": "holds",
    }
    ours = next(iter(geometry.values())).ours
    assert any(ours.startswith(f"sink head L{layer}H{head}:") for layer, head in SINK_HEADS), ours  # a planted head


def test_without_the_planted_sink_the_sink_claim_fails():
    """The control: the same spike without sink heads has no head that sinks."""
    model, info = build_planted_llama()
    _, sinks = run_claims("sinks", model, pipeline_inputs(model, text_prompts(info)))
    on_spike = sinks["attention sinks form on the spike token (key 0)"]
    assert on_spike.verdict == "fails" and on_spike.ours.startswith("sink ratio 0.0 [0.0, 0.0]%")


def test_removing_the_spike_removes_the_planted_sink_but_costs_nothing(sink_model, sink_run):
    """Zeroing the spike at the step-up block removes every planted sink (the planted keys read the
    spike); the planted spike does nothing for the random language model, so perplexity does not
    rise and the claim never holds. Replacing the spike by its mean keeps the sink: fails."""
    model, _ = sink_model
    result, claims = run_claims("intervention", model, sink_run)
    table = result.table.set_index("condition")
    assert table.loc["none", "sink_ratio"] == pytest.approx(100 * len(SINK_HEADS) / 24)
    assert table.loc["zero", "sink_ratio"] == 0.0
    assert table.loc["mean", "sink_ratio"] == pytest.approx(table.loc["none", "sink_ratio"])
    zero = claims["removing the spike (zero at block 4) removes the sink"]
    assert zero.value == 1.0 and zero.low == 1.0  # the sink-ratio drop, with its interval
    assert zero.verdict in {"fails", "inconclusive"}  # decided by the perplexity, which does not move
    assert claims["removing the spike (mean at block 4) removes the sink"].verdict == "fails"


def test_attention_path_edit_keeps_the_planted_sink(sink_model, sink_run):
    """A known limit of the attention-path edit, found on the plant: it fills token 0's spike
    channels with the ordinary tokens' mean. Here the step-up block writes a little onto every
    ordinary token's spike channels (its quadratic response, ~1 on channel 7), while token 0's
    residual off the spike channels is tiny (norm ~0.7: the position-0 attention cancels its
    token part). The filled state is then still mostly along the spike pattern, RMSNorm scales it
    back to ~sqrt(d) v, and the planted key (which reads v) still finds it: the sink stays and the
    claim fails, although the planted sink does come from the spike (the intervention removes it)."""
    from spikesink.instrumentation.taps import capture

    model, info = sink_model
    result, claims = run_claims("attention_path", model, sink_run)
    (claim,) = claims.values()
    assert claim.verdict == "fails" and claim.value == pytest.approx(0.0, abs=1e-3)
    ids = torch.as_tensor(sink_run["prompts.extraction"].matrix())
    state = capture(model, [(5, "input")], input_ids=ids)[(5, "input")]
    channels = info["spike_channels"]
    fill = state[:, 1:][..., channels].mean((0, 1))
    rest = state[:, 0].clone()
    rest[:, channels] = 0.0
    assert float(fill.norm()) > float(rest.norm(dim=-1).max())  # the reason, measured


# --- two stages, three channels -------------------------------------------------------------


STAGES = dict(
    n_layers=10,
    early_stage=(2, 4),
    step_up_block=6,
    step_down_block=18,
    spike_channels=(7, 23, 41),
    channel_ratio=(1.0, -0.5, 0.25),
)


@pytest.fixture(scope="module")
def stages_case():
    model, info = build_planted_llama(**STAGES)
    stats = extract_block_stats(model, plain_prompts(info), batch_size=4, progress=False)
    return info, detect_lifecycle(stats)


def claims_of(lc):
    return {c.claim: c for c in lifecycle_claims("planted", lc, 10, 0.05, 0.3333, 0.6667)}


def test_two_stages_are_found_in_order_with_their_blocks(stages_case):
    info, lc = stages_case
    assert [(s["step_up"], s["step_down"], s["main"]) for s in info["stages"]] == [
        ([2], [4], False),
        ([6], [18], True),
    ]
    assert lc.plateau == (6, 17) and lc.step_up == [6] and lc.step_down == [18]  # the early stage is no spike
    assert [(s["main"], s["step_up"], s["step_down"]) for s in lc.stages] == [(False, [2], [4]), (True, [6], [18])]
    early, main = lc.stages
    assert early["peak_level"] == pytest.approx(
        info["stages"][0]["magnitude"] * np.linalg.norm([1, 0.5, 0.25]), rel=0.02
    )
    assert early["cancelled_share"] == pytest.approx(1.0, abs=0.01) and early["peak_block"] in (2, 3)
    claims = claims_of(lc)
    assert claims["the spike rises, stays and falls once (one stage)"].verdict == "fails"
    step_up = claims["the spike is injected by one or two early FFN blocks (step-up)"]
    assert step_up.verdict == "holds" and "earlier stage(s): blocks 2 ->" in step_up.ours


def test_without_the_early_stage_there_is_one_stage():
    kwargs = {k: v for k, v in STAGES.items() if k != "early_stage"}
    model, info = build_planted_llama(**kwargs)
    lc = detect_lifecycle(extract_block_stats(model, plain_prompts(info), batch_size=4, progress=False))
    assert [(s["step_up"], s["step_down"]) for s in lc.stages] == [([6], [18])]
    assert claims_of(lc)["the spike rises, stays and falls once (one stage)"].verdict == "holds"


def test_three_spike_channels_are_found_with_their_ratios(stages_case):
    info, lc = stages_case
    assert lc.spike_channels == [7, 23, 41]  # strongest first
    ratio = np.asarray(lc.spike_vector) / lc.spike_vector[0]
    np.testing.assert_allclose(ratio, info["channel_ratio"], atol=1e-3)
    channels = claims_of(lc)["property (ii): massive activations live in few channels"]
    assert channels.verdict == "holds" and channels.ours == "3 channel(s): 7, 23, 41"


def test_early_stage_arguments_are_checked():
    for bad in ((4, 2), (2, 6), (3, 4), (2, 8)):
        with pytest.raises(ValueError, match="early_stage"):
            build_planted_llama(n_layers=10, step_up_block=6, step_down_block=18, early_stage=bad)


# --- a share straddling its threshold: inconclusive -----------------------------------------


@pytest.mark.parametrize(
    ("delimiters", "verdict"),
    [
        ([0] * 12, "holds"),  # 1/32 of tokens spike in every prompt: at most 5 %
        ([0, 0, 1, 2] * 3, "inconclusive"),  # 1, 1, 2 or 3 of 32: a mean of 5.5 % whose interval covers 5 %
        ([3] * 12, "fails"),  # 4/32 in every prompt
    ],
)
def test_the_spike_token_share_reads_the_planted_verdict(delimiters, verdict):
    """Delimiters spike wherever they stand (they attend only to delimiters), so a prompt's share of
    spike tokens is (1 + its delimiters) / T: planted, and with it the bootstrap interval of the
    mean over prompts against max_token_fraction (5 %)."""
    model, info = build_planted_llama()
    ids = plain_prompts(info, n=len(delimiters), n_delimiters=delimiters)
    lc = detect_lifecycle(extract_block_stats(model, ids, batch_size=4, progress=False))
    np.testing.assert_allclose(lc.spike_token_fraction_by_prompt, (1 + np.array(delimiters)) / T)
    claim = claims_of(lc)["property (v): massive activations sit on few tokens"]
    assert claim.verdict == verdict, claim.ours
    if verdict == "inconclusive":
        assert claim.low < 0.05 < claim.high
