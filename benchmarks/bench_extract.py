"""Cost of the block statistics: tapped forward vs plain sdpa forward, both through the decoder
only (the extraction never computes logits), measured in one process.

    python benchmarks/bench_extract.py --model-dir resources/models/smollm2-135m
    python benchmarks/bench_extract.py --gguf path/to/SmolLM2-135M-Instruct.Q4_1.gguf [--markdown]

Prints min and median seconds per batch of both, and their ratios (target <= 1.05x on SmolLM2),
at each shape (default 1 x 1024 and 8 x 128). Many short repeats alternate the two variants so
that load hits both alike. --markdown adds the rows of the README's benchmark table.
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

TARGET = 1.05


def load(args):
    from transformers import AutoModelForCausalLM

    if args.gguf:
        path = Path(args.gguf)
        return AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32, attn_implementation="sdpa"
        ).eval()
    from spikesink.instrumentation.loading import load_model

    return load_model(args.model_dir, dtype="float32", device="cpu")[0]


def ratios(times: dict, variant: str, base: str) -> tuple[float, float]:
    """(min, median) of variant / base."""
    return (
        min(times[variant]) / min(times[base]),
        statistics.median(times[variant]) / statistics.median(times[base]),
    )


def markdown_row(script: str, compares: str, ratio: tuple[float, float], target: float) -> str:
    met = "" if max(ratio) <= target else " (not met)"
    return f"| `benchmarks/{script}` | {compares} | {ratio[0]:.2f}x / {ratio[1]:.2f}x | <= {target:.2f}x{met} |"


def measure(model, batch: int, seq_len: int, repeats: int) -> dict:
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, size=(batch, seq_len))
    tensor = torch.from_numpy(ids)
    settings = ExtractionSettings()

    def plain():
        run_decoder(model, input_ids=tensor, use_cache=False)

    def hooked():
        extract_block_stats(model, ids, batch_size=batch, settings=settings, progress=False)

    plain(), hooked()  # warm-up
    times = {"plain": [], "hooked": []}
    for _ in range(repeats):
        for name, fn in (("plain", plain), ("hooked", hooked)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir")
    source.add_argument("--gguf")
    parser.add_argument("--shapes", default="1x1024,8x128", help="comma-separated BxT")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", action="store_true", help="also print the README table rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load(args)
    print(f"torch {torch.__version__}, threads {args.threads}, repeats {args.repeats}")
    rows = []
    for shape in args.shapes.split(","):
        batch, seq_len = (int(x) for x in shape.lower().split("x"))
        times = measure(model, batch, seq_len, args.repeats)
        for name, values in times.items():
            print(
                f"{name:>7}: min {min(values):.3f} s  median {statistics.median(values):.3f} s  ({batch} x {seq_len})"
            )
        ratio = ratios(times, "hooked", "plain")
        print(f"ratio hooked/plain: min {ratio[0]:.3f}x  median {ratio[1]:.3f}x  (target <= {TARGET}x)")
        compares = f"hooked block statistics vs plain sdpa forward, {batch} x {seq_len}"
        rows.append(markdown_row("bench_extract.py", compares, ratio, TARGET))
    if args.markdown:
        print("\n".join(["", "README rows:", *rows]))


if __name__ == "__main__":
    main()
