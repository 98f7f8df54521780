"""Cost of the block statistics: tapped forward vs plain sdpa forward, both through the decoder
only (the extraction never computes logits), measured in one process.

    python benchmarks/bench_extract.py --model-dir resources/models/smollm2-135m
    python benchmarks/bench_extract.py --gguf path/to/SmolLM2-135M-Instruct.Q4_1.gguf

Prints min and median seconds per batch of both, and the ratio (target <= 1.05x on SmolLM2,
batch 8 x 128). Many short repeats alternate the two variants so that load hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from spikesink.extraction.block_stats import ExtractionSettings, extract_block_stats
from spikesink.instrumentation.taps import run_decoder


def load(args):
    from transformers import AutoModelForCausalLM

    if args.gguf:
        path = Path(args.gguf)
        return AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32, attn_implementation="sdpa"
        ).eval()
    from spikesink.instrumentation.loading import load_model

    return load_model(args.model_dir, dtype="float32", device="cpu")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir")
    source.add_argument("--gguf")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load(args)
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, size=(args.batch, args.seq_len))
    tensor = torch.from_numpy(ids)
    settings = ExtractionSettings()

    def plain():
        run_decoder(model, input_ids=tensor, use_cache=False)

    def hooked():
        extract_block_stats(model, ids, batch_size=args.batch, settings=settings, progress=False)

    plain(), hooked()  # warm-up
    times = {"plain": [], "hooked": []}
    for _ in range(args.repeats):
        for name, fn in (("plain", plain), ("hooked", hooked)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(
            f"{name:>7}: min {min(values):.3f} s  median {statistics.median(values):.3f} s  ({args.batch} x {args.seq_len})"
        )
    print(
        f"ratio hooked/plain: min {min(times['hooked']) / min(times['plain']):.3f}x  "
        f"median {statistics.median(times['hooked']) / statistics.median(times['plain']):.3f}x  (target <= 1.05x)"
    )


if __name__ == "__main__":
    main()
