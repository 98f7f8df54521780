"""Cost of the functional tests against a plain forward of the same shape, measured in one run.

    python benchmarks/bench_function.py --model-dir resources/models/smollm2-135m

* act-scales: the activation-scale pass (a pre-hook on every Linear input, per-channel max with
  and without spike tokens) vs a plain decoder forward, batch 8 x 128 (target <= 1.3x);
* windowed evaluation: next-token loss with every layer attending through a window of 256 keys
  keeping 4 first tokens (the KV-cache study) vs the plain full-attention loss, 1 x 2048
  (target <= 1.3x), and its peak extra memory in a fresh process (target <= 1.2x);
* LM head and loss: `head_nll` on 8 x 256 final states, the LM head fed about HEAD_ROWS rows per
  call vs the earlier 256 positions per call (target <= 1.0x: bounding rows must not cost time).

Variants alternate over many short repeats; min and median are printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch
from peak_memory import peak_extra, run_child

from spikesink.analyses.act_scales.measure import activation_scales
from spikesink.analyses.kv_cache.measure import windowed_nll
from spikesink.extraction.perplexity import HEAD_ROWS, head_nll, token_nll
from spikesink.instrumentation.loading import load_model
from spikesink.instrumentation.taps import run_decoder


def timed(variants: dict, repeats: int) -> dict:
    for fn in variants.values():
        fn()  # warm-up
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def report(times: dict, base: str, other: str, target: float, what: str) -> None:
    for name in (base, other):
        values = times[name]
        print(f"  {name:>10}: min {min(values):.3f} s  median {statistics.median(values):.3f} s")
    ratio_min = min(times[other]) / min(times[base])
    ratio_med = statistics.median(times[other]) / statistics.median(times[base])
    print(f"  {what}: min {ratio_min:.3f}x  median {ratio_med:.3f}x  (target <= {target}x)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--long", type=int, default=2048, help="tokens of the windowed evaluation")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--child", choices=["plain", "windowed"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, _, _ = load_model(args.model_dir, dtype="float32", device="cpu")
    vocab = model.config.vocab_size
    rng = np.random.default_rng(0)
    long_ids = rng.integers(0, vocab, size=(1, args.long))

    def plain_nll():
        return token_nll(model, long_ids)

    def windowed():
        return windowed_nll(model, long_ids, args.window, keep=4)

    if args.child:
        print(json.dumps(peak_extra(plain_nll if args.child == "plain" else windowed)))
        return

    ids = rng.integers(0, vocab, size=(8, 128))
    mask = np.zeros(ids.shape, dtype=bool)
    mask[:, 0] = True
    tensor = torch.from_numpy(ids)
    print(f"torch {torch.__version__}, threads {args.threads}, repeats {args.repeats}")
    print("== activation scales, 8 x 128")
    times = timed(
        {
            "plain": lambda: run_decoder(model, input_ids=tensor, use_cache=False),
            "act-scales": lambda: activation_scales(model, ids, mask, batch_size=8),
        },
        args.repeats,
    )
    report(times, "plain", "act-scales", 1.3, "act-scales / plain forward")
    print("== LM head and loss, 8 x 256 final states")
    head_ids = torch.from_numpy(rng.integers(0, vocab, size=(8, 256)))
    hidden = torch.randn(8, 256, model.config.hidden_size)
    times = timed(
        {
            "256 positions": lambda: head_nll(model, hidden, head_ids, rows=8 * 256),
            f"{HEAD_ROWS} rows": lambda: head_nll(model, hidden, head_ids),
        },
        args.repeats,
    )
    report(times, "256 positions", f"{HEAD_ROWS} rows", 1.0, f"{HEAD_ROWS} rows / 256 positions per call")
    print(f"== windowed evaluation, 1 x {args.long}, window {args.window} + 4 kept")
    times = timed({"plain": plain_nll, "windowed": windowed}, args.repeats)
    report(times, "plain", "windowed", 1.3, "windowed / plain loss")
    if not args.skip_memory:
        cmd = [sys.executable, __file__, "--model-dir", args.model_dir, "--threads", str(args.threads),
               "--long", str(args.long), "--window", str(args.window), "--child"]  # fmt: skip
        plain_mem, windowed_mem = run_child(cmd + ["plain"]), run_child(cmd + ["windowed"])
        for name, m in (("plain", plain_mem), ("windowed", windowed_mem)):
            flag = "" if m["exact"] else "  (ru_maxrss fallback: lower bound)"
            print(f"  {name:>10}: peak extra {m['extra'] / 2**20:8.1f} MiB{flag}")
        print(
            f"  peak extra windowed / plain: {windowed_mem['extra'] / max(plain_mem['extra'], 1):.2f}x (target <= 1.2x)"
        )


if __name__ == "__main__":
    main()
