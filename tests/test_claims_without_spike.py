"""Every claim of the mechanism analyses yields a row on a model without a spike, and that row
reads n/a with its reason: a claim about the spike cannot fail (or hold) where there is none. The
one claim that does fail is the life cycle's "massive activations appear".

Two models without a spike: a random tiny Llama, and the planted Llama with no spike planted
(spike_magnitude 0: the same embeddings and position-0 attention, no amplifier). The model goes
through the pipeline's own stages: the extraction forward (block and sink statistics), the
life-cycle detector, then each analysis's measure and claims."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from analysis_helpers import make_job
from conftest import tiny_model

from spikesink.acquisition.planted import build_planted_llama, planted_tokenizer
from spikesink.analyses import runner
from spikesink.analyses.lifecycle.measure import detect_lifecycle
from spikesink.extraction.block_stats import extract_block_stats
from spikesink.results import PromptSet, SinkStats

torch.set_num_threads(1)
ANALYSES = (
    "vocab_probe",
    "silu_regime",
    "amplifier",
    "rmsnorm_collapse",
    "sinks",
    "sink_geometry",
    "spike_channels",
    "intervention",
    "attention_path",
    "implicit_params",
)
APPEAR = "massive activations appear (rise - plateau - fall)"


def no_spike_model(kind: str):
    if kind == "random":
        return tiny_model(vocab_size=256)  # the planted byte tokenizer's ids, for the vocabulary probe's prefix
    model, info = build_planted_llama(spike_magnitude=0)
    assert info["step_up_blocks"] == [] and info["stages"] == [] and info["sink_heads"] == []
    return model


@pytest.fixture(scope="module", params=["random", "planted without spike"])
def random_run(request):
    model = no_spike_model(request.param)
    ids = np.random.default_rng(0).integers(0, 256, (8, 32))
    stats = extract_block_stats(model, ids, batch_size=4, progress=False, collect_sinks=True, sink_eps=0.3)
    lifecycle = detect_lifecycle(stats)
    assert lifecycle.plateau is None and not lifecycle.massive_blocks  # no spike
    prompts = PromptSet("extraction", list(ids), {"bos_added": False})
    inputs = {
        "lifecycle": lifecycle,
        "block_stats": stats,
        "sinks": SinkStats.from_arrays(stats.sinks),
        "prompts.extraction": prompts,
        "prompts.heldout": PromptSet("heldout", list(ids[:4]), {"bos_added": False}),
        "prompts.sentences": PromptSet("sentences", [row[: 5 + i] for i, row in enumerate(ids)], {}),
    }
    return model, inputs


@pytest.mark.parametrize("name", ANALYSES)
def test_every_claim_is_a_row_reading_n_a(random_run, name):
    model, inputs = random_run
    settings = {"limit": 32} if name == "vocab_probe" else None
    job = make_job(name, inputs, model, settings, model_name="random")
    job.model.tokenizer = planted_tokenizer()
    result = runner.measure(job)
    claims = runner.claims(result, job)
    assert claims, name
    assert all(c.verdict == "n/a" and c.ours.startswith("n/a: ") and len(c.ours) > 10 for c in claims), [
        (c.claim, c.verdict, c.ours) for c in claims if c.verdict != "n/a"
    ]


def test_the_life_cycle_fails_only_appear_and_reads_n_a_for_every_spike_claim(random_run):
    model, inputs = random_run
    job = make_job("lifecycle", inputs, model, model_name="random")
    claims = {c.claim: c for c in runner.claims(runner.measure(job), job)}
    assert claims.pop(APPEAR).verdict == "fails"
    assert len(claims) == 6 and all(c.verdict == "n/a" for c in claims.values())
    assert all(c.ours.startswith("n/a: the model has no spike: no massive block") for c in claims.values())
