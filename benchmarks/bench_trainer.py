"""Training throughput of the ablation decoder vs transformers' LlamaForCausalLM of the same shape.

Same process, same batch, same optimizer (AdamW), sdpa attention in both; the two models take turns
so that machine load hits both alike. Prints min and median tokens/s per model and the ratio of
medians (ours / Llama; target >= 1.0x).

    OMP_NUM_THREADS=1 python benchmarks/bench_trainer.py --threads 1
    python benchmarks/bench_trainer.py --device cuda --d-model 512 --layers 8 --heads 8 --d-head 64 --seq 1024
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from spikesink.ablations.model import Decoder, ModelConfig


def build_ours(args) -> torch.nn.Module:
    cfg = ModelConfig(
        vocab_size=args.vocab,
        max_seq_len=args.seq,
        d_model=args.d_model,
        n_layers=args.layers,
        n_heads=args.heads,
        d_head=args.d_head,
        d_ffn=args.d_ffn,
    )
    return Decoder(cfg)


def build_llama(args) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.d_model,
        intermediate_size=args.d_ffn,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        head_dim=args.d_head,
        max_position_embeddings=args.seq,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(cfg)


def make_step(model, device, autocast_dtype):
    """One AdamW training step on a fixed batch, returning nothing (the loss is read to sync)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    is_hf = hasattr(model, "config") and hasattr(model.config, "model_type")

    def step(x, y):
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(input_ids=x).logits if is_hf else model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return float(loss.detach())

    return step


def time_steps(step, x, y, n_steps, device) -> float:
    """Seconds for n_steps steps (synchronised on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n_steps):
        step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--d-head", type=int, default=32)
    parser.add_argument("--d-ffn", type=int, default=344)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, alternating the two models")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    autocast_dtype = torch.bfloat16 if device.type == "cuda" else None

    torch.manual_seed(0)
    x = torch.randint(0, args.vocab, (args.batch, args.seq), device=device)
    y = torch.randint(0, args.vocab, (args.batch, args.seq), device=device)
    models = {"ours": build_ours(args).to(device), "llama": build_llama(args).to(device)}
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    steps = {name: make_step(m, device, autocast_dtype) for name, m in models.items()}
    for step in steps.values():  # warm-up (allocator, kernels)
        step(x, y)
        step(x, y)
    rates = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, step in steps.items():
            rates[name].append(args.steps * args.batch * args.seq / time_steps(step, x, y, args.steps, device))

    print(
        f"shape: vocab {args.vocab}, d_model {args.d_model}, layers {args.layers}, heads {args.heads}x{args.d_head}, "
        f"ffn {args.d_ffn}; batch {args.batch}x{args.seq} on {device} ({torch.get_num_threads()} threads)"
    )
    for name in models:
        print(
            f"{name:6s} params {counts[name]:>10,d}  tokens/s min {min(rates[name]):>10,.0f}  "
            f"median {statistics.median(rates[name]):>10,.0f}"
        )
    ratio = statistics.median(rates["ours"]) / statistics.median(rates["llama"])
    print(f"ratio ours / llama (medians): {ratio:.2f}x  (target >= 1.0x)")


if __name__ == "__main__":
    main()
