"""The paper's reported numbers (arXiv 2603.05498), keyed by the paper's model names.

A config model entry names its paper counterpart with `paper_model:`; tables put these rows
beside ours. Nothing here is used to compute a result.
"""

from __future__ import annotations

# Appendix C, Table 10: layers, d_model, heads, hub id
MODELS = {
    "Llama-2-7B": dict(layers=32, d_model=4096, heads=32, hub_id="meta-llama/Llama-2-7b-hf"),
    "Llama-2-13B": dict(layers=40, d_model=5120, heads=40, hub_id="meta-llama/Llama-2-13b-hf"),
    "Llama-3-8B": dict(layers=32, d_model=4096, heads=32, hub_id="meta-llama/Meta-Llama-3-8B"),
    "Qwen2.5-7B": dict(layers=28, d_model=3584, heads=28, hub_id="Qwen/Qwen2.5-7B"),
    "Qwen2.5-14B": dict(layers=48, d_model=5120, heads=40, hub_id="Qwen/Qwen2.5-14B"),
    "Qwen3-8B": dict(layers=36, d_model=4096, heads=32, hub_id="Qwen/Qwen3-8B"),
    "Qwen3-14B": dict(layers=40, d_model=5120, heads=40, hub_id="Qwen/Qwen3-14B"),
}

# Table 1: number of blocks, step-up blocks, step-down blocks
TABLE1 = {
    "Llama-2-7B": dict(blocks=64, step_up=[4], step_down=[62]),
    "Llama-2-13B": dict(blocks=80, step_up=[8], step_down=[78, 79]),
    "Llama-3-8B": dict(blocks=64, step_up=[4], step_down=[64]),
    "Qwen2.5-7B": dict(blocks=56, step_up=[8, 10], step_down=[54, 55]),
    "Qwen2.5-14B": dict(blocks=96, step_up=[10], step_down=[90, 92, 94, 95]),
    "Qwen3-8B": dict(blocks=72, step_up=[14], step_down=[70, 72]),
    "Qwen3-14B": dict(blocks=80, step_up=[14], step_down=[79]),
}

# Table 2: spike tokens at position 0 out of the vocabulary
TABLE2 = {
    "Llama-2-7B": dict(spike_tokens=31_887, vocab=32_000),
    "Llama-2-13B": dict(spike_tokens=31_889, vocab=32_000),
    "Llama-3-8B": dict(spike_tokens=127_956, vocab=128_256),
    "Qwen2.5-7B": dict(spike_tokens=149_587, vocab=152_064),
    "Qwen2.5-14B": dict(spike_tokens=149_645, vocab=152_064),
    "Qwen3-8B": dict(spike_tokens=151_830, vocab=151_936),
    "Qwen3-14B": dict(spike_tokens=151_824, vocab=151_936),
}

# Section 3.1 spike channels named in the text (Figure 3)
SPIKE_CHANNELS = {"Llama-3-8B": [788, 1384, 4062]}

# Tables 5-7: the sink ratio (eps 0.3) of the paper's Llama baseline trained from scratch, the one
# sink ratio the paper reports for a standard pre-norm softmax model
BASELINE_SINK_RATIO = 46.0
