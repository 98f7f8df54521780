"""What config/paper.yaml costs on real hardware, computed from the seven models' published configs.

Nothing here is measured (no GPU was lent to this project): each number is arithmetic on the
config, printed with its formula by `python -m spikesink.rehearsal.costs` (the README's table).

* parameters: embeddings (and an untied LM head) + per layer the attention projections (Qwen2's
  q/k/v biases, Qwen3's per-head q/k norms), the SwiGLU MLP (3 d I) and two RMSNorms, + the final norm;
* weights: parameters x 2 bytes (bf16), the download, the disk and the GPU memory they take;
* activations of the extraction forward (batch B x T tokens, bf16, no LM head): the residual stream
  B T d, the MLP's gate, up and their product (3 B T I) of the layer being computed, the attention's
  q, k, v and output (B T (2 H + 2 KV) hd with a fused kernel, no T x T map), and the float32 sink
  statistics' chunk of scores (B H chunk T, chunk = 128 queries);
* compute: one forward is 2 x parameters FLOPs per token (the extraction's tokens: n_prompts x
  seq_len); the vocabulary probe runs every id alone at position 0 and again after a prefix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from spikesink.rehearsal.architectures import ARCHITECTURES, head_dim

GIB = 1024**3
SINK_CHUNK = 128  # queries per chunk of the sink statistics


def parameter_count(config: Mapping) -> int:
    """Exact parameter count of a Llama / Qwen2 / Qwen3 decoder from its config.json."""
    d, inter, layers, vocab = (
        config["hidden_size"],
        config["intermediate_size"],
        config["num_hidden_layers"],
        config["vocab_size"],
    )
    heads = config["num_attention_heads"]
    kv = config.get("num_key_value_heads") or heads
    hd = head_dim(config)
    attention = d * heads * hd + 2 * d * kv * hd + heads * hd * d
    if config["model_type"] == "qwen2" or config.get("attention_bias"):
        attention += heads * hd + 2 * kv * hd + (d if config.get("attention_bias") else 0)
    if config["model_type"] == "qwen3":
        attention += 2 * hd  # q_norm and k_norm, one gain per head dimension
    per_layer = attention + 3 * d * inter + 2 * d
    embeddings = vocab * d * (1 if config.get("tie_word_embeddings") else 2)
    return embeddings + layers * per_layer + d


def extraction_costs(config: Mapping, batch: int, seq_len: int, n_prompts: int) -> dict:
    """Weights, activation peak and FLOPs of one model's extraction (module doc for the formulas)."""
    params = parameter_count(config)
    d, inter = config["hidden_size"], config["intermediate_size"]
    heads = config["num_attention_heads"]
    kv = config.get("num_key_value_heads") or heads
    hd = head_dim(config)
    tokens = batch * seq_len
    bf16 = 2
    activations = (
        tokens * d * bf16 * 2  # residual stream in and out of the block
        + tokens * inter * bf16 * 3  # gate, up, act(gate) * up
        + tokens * (2 * heads + 2 * kv) * hd * bf16  # q, k, v, attention output
        + batch * heads * min(SINK_CHUNK, seq_len) * seq_len * 4  # float32 sink scores of one chunk
    )
    extraction_tokens = n_prompts * seq_len
    probe_tokens = 2 * config["vocab_size"]  # every id at position 0, and after the prefix
    return {
        "params": params,
        "weights_gib": params * bf16 / GIB,
        "activations_gib": activations / GIB,
        "forwards": math.ceil(n_prompts / batch),
        "extraction_pflop": 2 * params * extraction_tokens / 1e15,
        "probe_pflop": 2 * params * probe_tokens / 1e15,
    }


def cost_table(paper: Mapping) -> list[dict]:
    """One row per model of a paper-style config (models with paper_model and batch_size)."""
    extraction = paper.get("extraction", {})
    rows = []
    for name, entry in paper["models"].items():
        config = ARCHITECTURES[entry["paper_model"]].config
        batch = entry.get("batch_size") or extraction.get("batch_size", 8)
        costs = extraction_costs(config, batch, extraction.get("seq_len", 512), extraction.get("n_prompts", 256))
        rows.append({"model": name, "batch": batch, **costs})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | parameters | bf16 weights | activations (batch x 512) | forwards | extraction | vocabulary probe (at most) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params'] / 1e9:.2f} B | {r['weights_gib']:.1f} GiB | "
            f"{r['activations_gib']:.2f} GiB (batch {r['batch']}) | {r['forwards']} | "
            f"{r['extraction_pflop']:.1f} PFLOP | {r['probe_pflop']:.1f} PFLOP |"
        )
    total = sum(r["params"] for r in rows)
    lines.append(
        f"| all seven | {total / 1e9:.1f} B | {sum(r['weights_gib'] for r in rows):.0f} GiB | - | "
        f"{sum(r['forwards'] for r in rows)} | {sum(r['extraction_pflop'] for r in rows):.0f} PFLOP | "
        f"{sum(r['probe_pflop'] for r in rows):.0f} PFLOP |"
    )
    return "\n".join(lines)


def main() -> None:
    from pathlib import Path

    import yaml

    paper = yaml.safe_load(Path("config/paper.yaml").read_text())
    print(markdown(cost_table(paper)))


if __name__ == "__main__":
    main()
