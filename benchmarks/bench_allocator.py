"""A Section 4 training step with and without spikesink.allocator's glibc settings.

Each variant runs in fresh processes (malloc's state cannot be reset in place), taking turns over
rounds so that machine load hits both alike; each process times `--steps` steps of the default
run's baseline (config/config.yaml: d_model 64, one layer, batch 64 x 32) on one thread after a
warm-up. Prints min and median ms/step and the ratio of medians (tuned / glibc defaults; the
setting is worth keeping while it stays below 1.0x).

    python benchmarks/bench_allocator.py [--rounds 5] [--steps 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def child(steps: int) -> None:
    from spikesink.allocator import keep_freed_memory

    tuned = keep_freed_memory()
    import torch

    from spikesink.ablations.model import Decoder, ModelConfig
    from spikesink.ablations.train import TrainConfig, lm_loss, make_optimizer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = Decoder(ModelConfig(vocab_size=67, d_model=64, n_layers=1, n_heads=1, d_head=64, d_ffn=172, max_seq_len=32))
    train = TrainConfig(batch_size=64, seq_len=32, total_tokens=64 * 32 * steps, lr=0.003)
    optimizer = make_optimizer(model, train)
    x, y = torch.randint(0, 67, (64, 32)), torch.randint(0, 67, (64, 32))

    def step() -> None:
        loss = lm_loss(model(x), y, train.loss_min_pos, train.loss_max_pos)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
        optimizer.step()

    for _ in range(20):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    print(f"{tuned} {(time.perf_counter() - start) / steps * 1e3:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.steps)
        return
    times = {"glibc defaults": [], "tuned": []}
    for _ in range(args.rounds):
        for name in times:
            env = {**os.environ, "SPIKESINK_MALLOC_TUNING": "1" if name == "tuned" else "0", "OMP_NUM_THREADS": "1"}
            cmd = [sys.executable, __file__, "--child", "--steps", str(args.steps)]
            applied, ms = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout.split()
            if (applied == "True") != (name == "tuned"):
                raise SystemExit(f"{name}: the allocator settings were {'' if applied == 'True' else 'not '}applied")
            times[name].append(float(ms))
    for name, values in times.items():
        print(f"{name:>15}: ms/step min {min(values):.2f}  median {statistics.median(values):.2f}")
    ratio = statistics.median(times["tuned"]) / statistics.median(times["glibc defaults"])
    print(f"tuned / glibc defaults (medians): {ratio:.3f}x  (keep the setting while < 1.0x)")


if __name__ == "__main__":
    main()
