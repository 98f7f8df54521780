"""Tiny Llama models with a massive activation planted by hand: ground truth for every detector.

Why: a detector tested only on a real model can only be checked against itself. A planted model
knows its step-up block, step-down block, spike channels, spike direction s* and trigger tokens,
so each analysis (lifecycle, vocabulary probe, SiLU regime, quadratic amplifier, RMSNorm collapse)
can be asserted against the truth.

Construction (d = hidden size, n_i = RMSNorm(x)_i = x_i / rms(x), all norm weights 1):

* Directions. s* (the spike *input* direction) and e_d (a "delimiter" key direction) are random
  unit vectors, orthogonal to each other and to the spike channels' axes. W is a subspace of
  dimension r = n_kv_heads * head_dim that contains e_d and is orthogonal to s*; Q is an
  orthonormal basis of W.
* Embeddings. Trigger tokens: x = a s* + rho u with u a random unit vector in W minus e_d and
  |x| = N (default 5 sqrt(d)), so RMSNorm scales every trigger by the same sqrt(d)/N. Delimiter
  tokens (a subset of the triggers): x = a s* + b e_d + small noise in W, |x| = N. Exception
  tokens: a near-initialisation random vector (std = init_std) with no planted structure, like
  the paper's rare-script tokens whose embeddings stay near initialisation.
* Block 1 (layer 0 attention) is the position-0 mechanism. Its value/output maps sum, over heads
  and with GQA, to W_O W_V = -(1 - kappa)(N/sqrt(d)) Q Q^T: every head writes minus (most of)
  the un-normed W-part of the tokens it reads. Its queries and keys read only e_d, so a non-delimiter query scores every key 0 (uniform causal
  average) and a delimiter query attends to the delimiter keys only.
  - Position 0 attends only to itself, so the residual becomes x - (1 - kappa) Q Q^T x =
    a s* + kappa rho u: its cosine with s* is `pos0_alignment` (0.7), the same for every
    trigger, while the kappa rho u part keeps first tokens distinct (pairwise cos ~0.5) until the
    step-up block makes them all ~ the spike vector. This is the paper's point that attention
    at position 0 is a fixed linear map of the token itself.
  - A later token t receives minus the *average* W-part of tokens 0..t, which cannot cancel its
    own W-part (weight 1 - 1/(t+1)) plus the others (which add new random directions), so its
    s* share after RMSNorm is small and it does not spike. Repeating the same token, or a
    delimiter that attends only to (identical) delimiters, cancels exactly and does spike: the
    paper's "delimiters become spike tokens through strong self-attention in early layers".
* Step-up FFN block (SwiGLU, no biases): `n_rows` intermediate rows have W_gate[i] = alpha s*,
  W_up[i] = beta s*, and W_down[c, i] = coef * ratio_c for the spike channels c (0 elsewhere). With
  f = s* . h, the output on channel c is n_rows * coef * ratio_c * SiLU(alpha f) * beta f, about
  quadratic in f once alpha f >> 1 (SiLU ~ identity: the paper's Fig 2 regime). Hence
  U_c = sum_i W_down[c, i] W_gate[i]^T W_up[i] = n_rows coef ratio_c alpha beta s* s*^T (+ the small
  random rows): rank one with top eigenvector s* shared by all spike channels.
* Both amplifier gains are calibrated with one forward pass of the trigger tokens at position 0:
  the step-up so that the first spike channel reaches `spike_magnitude` on average.
* Step-down FFN block: the same construction on the *output* direction v = ratio / |ratio| (the
  normalised spike pattern on the spike channels) with the opposite sign, sized so that at the
  spike state (h ~ sqrt(d) v after RMSNorm, which is the "nearly constant normed state") it adds
  minus the measured spike: the post-residual returns to ordinary magnitude. Tokens without a
  spike have a small v share after RMSNorm and get a small output.
* Spike positions: every trigger token at position 0, and delimiter tokens anywhere (they attend
  only to delimiters, whose W-parts cancel); no other token at later positions.
* Early stage (optional, `early_stage=(up, down)`): an amplifier in FFN block `up` like the
  step-up, sized so that position 0 reaches `early_magnitude` on the first spike channel (same
  channels and ratio), and one in FFN block `down` (before the step-up) that cancels it, like the
  step-down. SmolLM2-135M's shape: a small spike (not massive: far below 1000x the median, but
  above the stage bar of 100x) that rises and is cancelled before the main step-up. Cancelled, it
  leaves position 0 as before, so the step-up still reads s*.
* Sink heads (optional, `sink_heads=[(layer, head), ...]` in layers whose input carries the
  spike): the config gets attention biases (all zero but these). The head's key reads the spike
  pattern v on the lowest-frequency rotary dimension (k_slow = v . n, the normed state), and its
  query is the constant bias b on that dimension (its weight row zeroed), so every query scores
  a key by b k_slow / sqrt(head_dim): the spike token's key (n ~ sqrt(d) v) scores `sink_logit`
  = S, an ordinary key ~0. A query at position t with no other spike key before it therefore puts
  e^S / (e^S + t) on key 0 (`expected_key0_mass`); delimiter spike tokens take the same share as
  key 0. Every other head stays random (near-uniform attention: no sink).
* No spike (`spike_magnitude=0`): no amplifier is planted (nor a sink): the same embeddings and
  position-0 attention, nothing massive.
* Every other weight keeps the random initialisation (std = init_std = initializer_range): a
  small random model whose blocks add O(0.05) to the residual.

Token ids are bytes: `planted_tokenizer` is a byte-level BPE with 256 byte symbols (id = byte
value) and no merges, no BOS, so position 0 is the first text byte.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from spikesink.instrumentation.blocks import block_kind, block_layer
from spikesink.instrumentation.taps import capture
from spikesink.io import atomic_path, sha256_file, write_json

DEFAULT_SPIKE_CHANNELS = (7, 23)
DEFAULT_CHANNEL_RATIO = (1.0, -0.5)
# UTF-8 lead bytes of 4-byte sequences (emoji, rare scripts): the byte-level analogue of the
# paper's rare-script exception tokens.
DEFAULT_EXCEPTIONS = tuple(range(240, 256))
DEFAULT_DELIMITERS = (10, 46)  # "\n" and "."


def _orthonormal(rng: np.random.Generator, d: int, k: int, avoid: np.ndarray | None = None) -> np.ndarray:
    """k orthonormal columns in R^d orthogonal to the columns of `avoid` (Gram-Schmidt via QR)."""
    basis = rng.standard_normal((d, k))
    if avoid is not None and avoid.size:
        avoid_q, _ = np.linalg.qr(avoid)
        basis -= avoid_q @ (avoid_q.T @ basis)
    q, _ = np.linalg.qr(basis)
    return q[:, :k]


def _check_early_stage(early_stage, step_up_block: int) -> tuple[int, int] | None:
    if early_stage is None:
        return None
    up, down = (int(b) for b in early_stage)
    for name, block in (("early_stage up", up), ("early_stage down", down)):
        if block_kind(block) != "ffn" or block < 2:
            raise ValueError(f"{name}={block} must be an even (FFN) block")
    if not up < down < step_up_block:
        raise ValueError(f"early_stage={early_stage}: needs up < down < step_up_block={step_up_block}")
    return up, down


def _check_sink_heads(sink_heads, n_layers, n_heads, step_up_block, step_down_block) -> dict[int, list[int]]:
    """{layer: [heads]}: every layer must read a spiking state (its input is the post-residual of
    block 2 * layer, which carries the spike when step_up_block <= 2 * layer < step_down_block)."""
    out: dict[int, list[int]] = {}
    for pair in sink_heads or ():
        layer, head = (int(x) for x in pair)
        if not 0 <= head < n_heads or not 0 <= layer < n_layers:
            raise ValueError(f"sink head {pair}: layer must be in 0..{n_layers - 1}, head in 0..{n_heads - 1}")
        if not step_up_block <= 2 * layer < step_down_block:
            raise ValueError(
                f"sink head {pair}: layer {layer} reads block {2 * layer}, which carries no spike "
                f"(plateau blocks {step_up_block}..{step_down_block - 1})"
            )
        out.setdefault(layer, [])
        if head not in out[layer]:
            out[layer].append(head)
    return {layer: sorted(heads) for layer, heads in out.items()}


def _check_blocks(n_layers: int, step_up_block: int, step_down_block: int) -> None:
    n_blocks = 2 * n_layers
    for name, block in (("step_up_block", step_up_block), ("step_down_block", step_down_block)):
        if block_kind(block) != "ffn" or not 2 <= block <= n_blocks:
            raise ValueError(f"{name}={block} must be an even (FFN) block in 2..{n_blocks}")
    if step_down_block <= step_up_block:
        raise ValueError("the step-down block must come after the step-up block")


def _set_amplifier(
    mlp, rows: slice, direction: torch.Tensor, alpha: float, beta: float, channels: list[int], weights: torch.Tensor
) -> None:
    """Plant a quadratic amplifier: rows read `direction`, write `weights` on `channels` only."""
    mlp.gate_proj.weight[rows] = alpha * direction
    mlp.up_proj.weight[rows] = beta * direction
    mlp.down_proj.weight[:, rows] = 0.0
    for channel, weight in zip(channels, weights):
        mlp.down_proj.weight[channel, rows] = weight


def _silu(z: float) -> float:
    return float(z / (1.0 + np.exp(-z)))


def _ffn_io(model, block: int, token_ids) -> tuple[torch.Tensor, torch.Tensor]:
    """(FFN normed input, FFN input residual) at position 0 for each token alone."""
    got = capture(
        model,
        [(block, "normed_input"), (block, "input")],
        transform=lambda t: t[:, 0].clone(),
        input_ids=torch.as_tensor(token_ids)[:, None],
    )
    return got[(block, "normed_input")], got[(block, "input")]


def build_planted_llama(
    n_layers: int = 6,
    hidden_size: int = 64,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    intermediate_size: int = 128,
    vocab_size: int = 256,
    step_up_block: int = 4,
    step_down_block: int = 10,
    spike_channels: tuple[int, ...] = DEFAULT_SPIKE_CHANNELS,
    channel_ratio: tuple[float, ...] = DEFAULT_CHANNEL_RATIO,
    spike_magnitude: float = 5000.0,
    exception_ids: tuple[int, ...] | None = None,
    delimiter_ids: tuple[int, ...] = DEFAULT_DELIMITERS,
    s_star_share: float = 0.5,
    embed_norm: float | None = None,
    pos0_alignment: float = 0.7,
    init_std: float = 0.004,
    n_rows: int = 8,
    alpha: float = 2.0,
    beta: float = 2.0,
    early_stage: tuple[int, int] | None = None,
    early_magnitude: float = 500.0,
    sink_heads: tuple[tuple[int, int], ...] = (),
    sink_logit: float = 8.0,
    seed: int = 0,
):
    """Build the planted LlamaForCausalLM (float32, eval mode) and return (model, info).

    `spike_magnitude` is the designed value on the first spike channel at position 0 after the
    step-up block (the others follow `channel_ratio`). `pos0_alignment` is the cosine between a
    first token's residual entering the step-up block and s* (before the small random blocks):
    below 1 the first tokens differ from each other before the step-up and collapse after it. `s_star_share` is a, the s* coefficient of
    a trigger embedding of norm sqrt(d): smaller a separates position 0 from later positions more.
    `info` holds the ground truth: step_up_blocks, step_down_blocks, spike_channels,
    channel_ratio, s_star (numpy, unit), spike_out_direction (numpy, unit), trigger/exception/
    delimiter token ids, spike_magnitude, stages (one dict per stage, earliest first: step_up,
    step_down, magnitude), sink_heads ([layer, head] pairs) and sink_logit.

    `early_stage` (up, down): FFN blocks of an earlier stage before the step-up block, whose
    position-0 spike reaches `early_magnitude` on the first spike channel. `sink_heads`: (layer,
    head) pairs that sink on the spike token with key-0 logit `sink_logit` (module docstring).
    `spike_magnitude=0`: no spike at all (and no stage, no sink).
    """
    _check_blocks(n_layers, step_up_block, step_down_block)
    spiking = spike_magnitude != 0
    early = _check_early_stage(early_stage, step_up_block) if spiking else None
    if early_stage is not None and not spiking:
        raise ValueError("early_stage needs a spike (spike_magnitude != 0)")
    sinks = _check_sink_heads(sink_heads, n_layers, n_heads, step_up_block, step_down_block)
    if sinks and not spiking:
        raise ValueError("sink_heads sink on the spike token: they need a spike (spike_magnitude != 0)")
    if len(spike_channels) != len(channel_ratio):
        raise ValueError("spike_channels and channel_ratio must have the same length")
    head_dim = hidden_size // n_heads
    if n_kv_heads * head_dim > hidden_size - 1:
        raise ValueError("n_kv_heads * head_dim must leave room for s* (at most hidden_size - 1)")
    if exception_ids is None:
        exception_ids = tuple(i for i in DEFAULT_EXCEPTIONS if i < vocab_size) or (vocab_size - 1,)
    exception_ids = tuple(sorted(set(int(i) for i in exception_ids)))
    delimiter_ids = tuple(sorted(set(int(i) for i in delimiter_ids) - set(exception_ids)))
    model = _random_llama(
        vocab_size, hidden_size, intermediate_size, n_layers, n_heads, n_kv_heads, init_std, seed, bias=bool(sinks)
    )
    rng = np.random.default_rng(seed)
    s_star, w_basis = _directions(rng, hidden_size, n_kv_heads * head_dim, spike_channels)
    norm = float(embed_norm) if embed_norm is not None else 5.0 * float(np.sqrt(hidden_size))
    emb = _embeddings(
        rng, vocab_size, s_star, w_basis, norm, float(s_star_share), exception_ids, delimiter_ids, init_std
    )
    ratio = np.asarray(channel_ratio, dtype=np.float64)
    v_out = np.zeros(hidden_size)
    v_out[list(spike_channels)] = ratio
    v_out /= np.linalg.norm(v_out)
    trigger_ids = tuple(i for i in range(vocab_size) if i not in set(exception_ids))
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(_t(emb))
        _plant_position0_attention(
            model.model.layers[0].self_attn,
            w_basis,
            norm,
            float(s_star_share),
            pos0_alignment,
            n_heads,
            n_kv_heads,
            head_dim,
        )
        amplifier = dict(
            channels=list(spike_channels), ratio=ratio, tokens=trigger_ids, n_rows=n_rows, alpha=alpha, beta=beta
        )
        stages = [(early, float(early_magnitude))] if early else []
        stages.append(((step_up_block, step_down_block), float(spike_magnitude)))
        for (up, down), magnitude in stages if spiking else ():
            # step-up: gain calibrated on the actual FFN input so that channel 0 reaches the magnitude
            _plant_amplifier(model, up, s_star, lambda h, resid, m=magnitude: m, **amplifier)
            # step-down: reads the spike pattern, writes minus the spike measured at its own input
            _plant_amplifier(
                model, down, v_out, lambda h, resid: -float(resid[:, spike_channels[0]].mean()), **amplifier
            )
        for layer, heads in sorted(sinks.items()):
            _plant_sink_heads(model, layer, heads, v_out, float(sink_logit), trigger_ids, n_heads, n_kv_heads, head_dim)
    info = {
        "step_up_blocks": [int(step_up_block)] if spiking else [],
        "step_down_blocks": [int(step_down_block)] if spiking else [],
        "stages": [
            {
                "step_up": [int(up)],
                "step_down": [int(down)],
                "magnitude": magnitude,
                "main": (up, down) == stages[-1][0],
            }
            for (up, down), magnitude in (stages if spiking else [])
        ],
        "spike_channels": [int(c) for c in spike_channels],
        "channel_ratio": [float(r) for r in ratio],
        "s_star": s_star.astype(np.float32),
        "spike_out_direction": v_out.astype(np.float32),
        "delimiter_key_direction": w_basis[:, 0].astype(np.float32),
        "trigger_token_ids": list(trigger_ids),
        "exception_token_ids": list(exception_ids),
        "delimiter_token_ids": list(delimiter_ids),
        "spike_magnitude": float(spike_magnitude),
        "spike_position": 0,
        "pos0_alignment": float(pos0_alignment),
        "amplifier_rows": n_rows,
        "sink_heads": [[int(layer), int(head)] for layer, heads in sorted(sinks.items()) for head in heads],
        "sink_logit": float(sink_logit) if sinks else None,
        "seed": int(seed),
        "bos": False,
    }
    return model, info


def _t(array) -> torch.Tensor:
    return torch.as_tensor(array, dtype=torch.float32)


def _random_llama(
    vocab_size, hidden_size, intermediate_size, n_layers, n_heads, n_kv_heads, init_std, seed, bias=False
):
    """A small LlamaForCausalLM with seeded random weights (std init_std), float32, eval mode;
    `bias`: attention projections with biases, all zero."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv_heads,
        head_dim=hidden_size // n_heads,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        initializer_range=init_std,
        attention_bias=bias,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).float().eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("_proj.bias"):
                param.zero_()
    return model


def _directions(rng, d: int, rank: int, spike_channels) -> tuple[np.ndarray, np.ndarray]:
    """s* and an orthonormal basis of W (e_d first, orthogonal to s*), both orthogonal to the
    spike-channel axes so that s* is not trivially axis aligned."""
    axes = np.eye(d)[:, list(spike_channels)]
    if rank + 1 + len(spike_channels) > d:
        axes = np.zeros((d, 0))
    s_star = _orthonormal(rng, d, 1, avoid=axes)[:, 0]
    return s_star, _orthonormal(rng, d, rank, avoid=np.column_stack([axes, s_star]))


def _embeddings(rng, vocab_size, s_star, w_basis, norm, a, exception_ids, delimiter_ids, init_std) -> np.ndarray:
    """Every trigger has norm N, so RMSNorm scales all of them by the same sqrt(d)/N (docstring)."""
    delimiter_noise = 0.02
    emb = np.empty((vocab_size, s_star.size))
    e_d, rest = w_basis[:, 0], w_basis[:, 1:]
    for token in range(vocab_size):
        if token in exception_ids:
            emb[token] = rng.standard_normal(s_star.size) * init_std
        elif token in delimiter_ids:
            noise = rest @ rng.standard_normal(rest.shape[1])
            noise *= delimiter_noise / np.linalg.norm(noise)
            b = np.sqrt(norm**2 - a * a - delimiter_noise**2)
            emb[token] = a * s_star + b * e_d + noise
        else:
            u = rest @ rng.standard_normal(rest.shape[1])
            u /= np.linalg.norm(u)
            emb[token] = a * s_star + np.sqrt(norm**2 - a * a) * u
    return emb


def _plant_position0_attention(attn, w_basis, norm, a, pos0_alignment, n_heads, n_kv_heads, head_dim) -> None:
    """Block 1: W_O W_V = -(1 - kappa)(N / sqrt(d)) Q Q^T over kv groups (the value reads the
    *normed* token, whose W-part is sqrt(d)/N times the raw one); q/k read e_d on the
    lowest-frequency rotary dimension (head_dim/2 - 1), so the score barely depends on distance.
    A share kappa of the token's own W-part is kept at position 0, so first tokens stay distinct
    before the step-up (cos(residual, s*) = pos0_alignment) and collapse after it."""
    sqrt_d = float(np.sqrt(w_basis.shape[0]))
    key_gain = 2.0  # delimiter query-key score ~ key_gain^2 d / sqrt(head_dim): far above the 0 of other keys
    e_d = w_basis[:, 0]
    for proj in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj):
        proj.weight.zero_()
    rho = np.sqrt(norm**2 - a * a)
    kappa = a * np.sqrt(1.0 / pos0_alignment**2 - 1.0) / rho if pos0_alignment < 1 else 0.0
    gain = (1.0 - kappa) * norm / sqrt_d
    slow = head_dim // 2 - 1
    per_group = n_heads // n_kv_heads
    for group in range(n_kv_heads):
        cols = w_basis[:, group * head_dim : (group + 1) * head_dim]  # (d, head_dim)
        attn.v_proj.weight[group * head_dim : (group + 1) * head_dim] = _t(cols.T)
        attn.k_proj.weight[group * head_dim + slow] = _t(key_gain * e_d)
        for head in range(group * per_group, (group + 1) * per_group):
            attn.o_proj.weight[:, head * head_dim : (head + 1) * head_dim] = _t(-gain * cols / per_group)
            attn.q_proj.weight[head * head_dim + slow] = _t(key_gain * e_d)


def _plant_amplifier(model, block, direction, target, channels, ratio, tokens, n_rows, alpha, beta) -> None:
    """A quadratic amplifier in `block` reading `direction`, sized so that the first spike channel
    receives target(normed FFN input, residual input) on average over the trigger tokens at position 0."""
    h, resid = _ffn_io(model, block, tokens)
    f = float((h @ _t(direction)).mean())
    coef = target(h, resid) / (ratio[0] * n_rows * _silu(alpha * f) * beta * f)
    mlp = model.model.layers[block_layer(block)].mlp
    _set_amplifier(mlp, slice(0, n_rows), _t(direction), alpha, beta, channels, _t(coef * ratio))


def _plant_sink_heads(model, layer, heads, v_out, sink_logit, tokens, n_heads, n_kv_heads, head_dim) -> None:
    """Sink heads in `layer` (module docstring): the kv group's key reads v on the lowest-frequency
    rotary dimension, the head's query is a constant bias there, sized so that the spike token's
    key scores `sink_logit` on average over the trigger tokens at position 0."""
    block = 2 * layer + 1  # the layer's attention block
    got = capture(
        model,
        [(block, "normed_input")],
        transform=lambda t: t[:, 0].clone(),
        input_ids=torch.as_tensor(tokens)[:, None],
    )
    key0 = float((got[(block, "normed_input")] @ _t(v_out)).mean())  # v . n at the spike token, ~sqrt(d)
    attn = model.model.layers[layer].self_attn
    slow = head_dim // 2 - 1
    per_group = n_heads // n_kv_heads
    bias = sink_logit * float(np.sqrt(head_dim)) / key0  # score = q . k / sqrt(head_dim)
    for head in heads:
        group = head // per_group
        attn.k_proj.weight[group * head_dim + slow] = _t(v_out)
        attn.q_proj.weight[head * head_dim + slow] = 0.0
        attn.q_proj.bias[head * head_dim + slow] = bias


def expected_key0_mass(sink_logit: float, n_positions: int) -> float:
    """Mean attention a planted sink head puts on key 0 over the queries 0..T-1 of a prompt whose
    only spike token is position 0: (1/T) sum_t e^S / (e^S + t), ordinary keys scoring 0."""
    t = np.arange(n_positions, dtype=np.float64)
    return float(np.mean(1.0 / (1.0 + t * np.exp(-float(sink_logit)))))


def planted_tokenizer():
    """Byte-level tokenizer: 256 byte symbols (id = byte value), no merges, no BOS/EOS.

    A pad token is set to the symbol of byte 0 so that batched calls with padding=True work;
    padded positions are masked by the attention mask.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_symbols = pre_tokenizers.ByteLevel.alphabet()
    # ByteLevel's alphabet is unordered; rebuild the GPT-2 byte -> unicode table for id = byte.
    table = _bytes_to_unicode()
    assert set(table.values()) == set(byte_symbols)
    vocab = {table[b]: b for b in range(256)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=table[0])
    fast.model_max_length = 4096
    return fast


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode map (the ByteLevel pre-tokenizer's alphabet)."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, map(chr, chars)))


def info_to_json(info: dict) -> dict:
    """JSON-safe copy of `info` (numpy arrays to lists)."""
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in info.items()}


def save_planted_into(directory: Path, **build_kwargs) -> dict:
    """Build a planted model into an existing (staging) directory: model.safetensors, config.json
    and the byte-level tokenizer. Returns the ground-truth record (builder, params, info)."""
    model, info = build_planted_llama(**build_kwargs)
    model.save_pretrained(directory)
    planted_tokenizer().save_pretrained(directory)
    return {
        "builder": "spikesink.acquisition.planted.build_planted_llama",
        "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in build_kwargs.items()},
        "planted": info_to_json(info),
    }


def save_planted(directory: str | os.PathLike, **build_kwargs) -> dict:
    """Build a planted model and write it as a `local` model dir, atomically.

    Writes model.safetensors + config.json, the byte-level tokenizer and manifest.json with the
    ground truth (`info`, s* as a list) and the build parameters. Returns the manifest.
    """
    target = Path(directory)
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        record = save_planted_into(tmp, **build_kwargs)
        weights = sorted(p.name for p in tmp.glob("*.safetensors"))
        manifest = {
            "source": "planted",
            **record,
            "dtype": "float32",
            "bos": False,
            "weights_sha256": {name: sha256_file(tmp / name) for name in weights},
        }
        write_json(tmp / "manifest.json", manifest)
    return manifest
