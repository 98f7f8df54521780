"""The paper's block numbering and the five states of a block (torch-free).

A model with L decoder layers has 2L blocks numbered from 1: block 2l-1 is layer l's attention
block, block 2l its feed-forward block (paper, Section 3). Each block has five states, defined
for every norm placement (`spikesink.instrumentation.families`):

    input          the residual stream the block reads
    normed_input   what its sublayer computes from: the input after the block's input norm
                   (the input itself when the block has none, as in OLMo 2)
    raw_output     what the sublayer (attention or FFN module) returns
    output         what the block adds to the residual stream: raw_output after the block's
                   output norm (sandwich norm: Gemma 2/3; post-output norm: OLMo 2), else raw_output
    post_residual  the residual stream after the add: input + output (each block continues the
                   stream of the block before it, so post_residual(b) = post_residual(b-1) + output(b))

With a parallel residual (GPT-NeoX / Pythia: h + Attn(LN1(h)) + FFN(LN2(h))) both blocks of a
layer read the same input h, so the FFN block's `input` is h, not the attention block's
post-residual. The attention block's post-residual is h + Attn(...), a state the model never
forms (derived by the taps, read-only); the FFN block's post-residual is the layer output
h + Attn(...) + FFN(...), so the two block outputs still add up to the layer's change of the
residual stream and post_residual(b) = post_residual(b-1) + output(b) holds for every block.
"""

from __future__ import annotations

STATES = ("input", "normed_input", "raw_output", "output", "post_residual")
KINDS = ("attn", "ffn")


def block_kind(block: int) -> str:
    """'attn' for odd (attention) blocks, 'ffn' for even (feed-forward) blocks; 1-based."""
    return "attn" if block % 2 == 1 else "ffn"


def block_layer(block: int) -> int:
    """0-based decoder layer that holds a 1-based block."""
    return (block - 1) // 2


def block_number(layer: int, kind: str) -> int:
    """1-based block of a 0-based layer's attention ('attn') or FFN ('ffn') sublayer."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return 2 * layer + (1 if kind == "attn" else 2)


def check_blocks(blocks, n_blocks: int) -> list[int]:
    """Sorted unique blocks, each within 1..n_blocks."""
    out = sorted({int(b) for b in blocks})
    if not out:
        raise ValueError("no blocks given")
    bad = [b for b in out if not 1 <= b <= n_blocks]
    if bad:
        raise ValueError(f"blocks {bad} are outside 1..{n_blocks}")
    return out


def check_state(state: str) -> str:
    if state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
    return state
