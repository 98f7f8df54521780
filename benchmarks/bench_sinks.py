"""Cost of the sink statistics: plain sdpa vs sdpa + SinkStatistics vs eager output_attentions,
all three through the decoder only (no LM head: no variant needs logits).

    python benchmarks/bench_sinks.py --gguf /path/SmolLM2-135M-Instruct.Q4_1.gguf
    python benchmarks/bench_sinks.py --model-dir resources/models/smollm2-135m [--text-file x.txt] [--markdown]

Two measurements, because they need different set-ups:

* time: one process, the three variants interleaved forward by forward (so that a load spike
  on a shared machine hits all of them alike), `--repeats` times; min and median reported.
* peak memory: one fresh subprocess per (shape, variant), the peak extra RSS of one forward
  (benchmarks/peak_memory.py).

Targets: time (b)/(a) <= 1.05; peak extra (c)/(b) >= 10 at T = 1024. Also prints which kernel gave
(b)'s statistics (the fused kernel's log-sum-exp, or the chunked pass), the sink findings of the
measured batch, and whether (b)'s hidden states equal (a)'s. --markdown adds the README table rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_extract import markdown_row
from peak_memory import peak_extra, run_child

VARIANTS = ("sdpa", "sinks", "eager")
TIME_TARGET, MEMORY_TARGET = 1.05, 10.0
LABEL = {"sdpa": "(a) plain sdpa", "sinks": "(b) sdpa + SinkStatistics", "eager": "(c) eager output_attentions"}


def load_model(model_dir: str | None, gguf: str | None, threads: int):
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    if gguf:
        path = Path(gguf)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.set_attn_implementation("sdpa")
    return model.eval()


def make_inputs(model_dir: str | None, gguf: str | None, text_file: str | None, batch: int, seq: int, vocab: int):
    """(batch, seq) ids: consecutive windows of a text if given, else seeded random ids."""
    if text_file:
        from transformers import AutoTokenizer

        if gguf:
            tokenizer = AutoTokenizer.from_pretrained(Path(gguf).parent, gguf_file=Path(gguf).name)
        else:
            tokenizer = AutoTokenizer.from_pretrained(model_dir)
        ids = tokenizer(Path(text_file).read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
        if len(ids) < batch * seq:
            raise SystemExit(f"{text_file} has {len(ids)} tokens, need {batch * seq}")
        return torch.tensor(ids[: batch * seq]).view(batch, seq)
    return torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(0))


def forward(model, ids, variant: str):
    """One decoder forward of `variant`; returns (last hidden state, sink result or None)."""
    from spikesink.extraction.sink_stats import SinkStatistics
    from spikesink.instrumentation.layout import model_layout
    from spikesink.instrumentation.taps import run_decoder

    if variant == "sdpa":
        return run_decoder(model, input_ids=ids, use_cache=False).last_hidden_state, None
    if variant == "sinks":
        with SinkStatistics(model) as sinks:
            hidden = run_decoder(model, input_ids=ids, use_cache=False).last_hidden_state
        return hidden, {**sinks.result(), "kernels": dict(sinks.kernels)}
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model_layout(model).decoder(input_ids=ids, use_cache=False, output_attentions=True)
        assert out.attentions is not None and len(out.attentions) == model.config.num_hidden_layers
        return out.last_hidden_state, None
    finally:
        model.set_attn_implementation("sdpa")


def child_memory(args) -> None:
    """Runs in a fresh process: peak extra RSS of one forward of one variant."""
    model = load_model(args.model_dir, None, args.threads)
    ids = make_inputs(args.model_dir, None, args.text_file, args.batch, args.seq, model.config.vocab_size)
    print(json.dumps(peak_extra(lambda: forward(model, ids, args.variant))))


def measure_memory(args, model_dir: str, batch: int, seq: int, variant: str) -> dict:
    cmd = [
        sys.executable, __file__, "--child", "--model-dir", model_dir, "--variant", variant,
        "--batch", str(batch), "--seq", str(seq), "--threads", str(args.threads),
    ]  # fmt: skip
    if args.text_file:
        cmd += ["--text-file", args.text_file]
    return run_child(cmd)


def measure_time(model, ids, repeats: int) -> tuple[dict, dict]:
    timings = {variant: [] for variant in VARIANTS}
    outputs = {variant: forward(model, ids, variant) for variant in VARIANTS}  # warm-up + outputs
    for _ in range(repeats):
        for variant in VARIANTS:
            start = time.perf_counter()
            forward(model, ids, variant)
            timings[variant].append(time.perf_counter() - start)
    return timings, outputs


def report_sinks(result: dict, top: int = 8) -> None:
    mass = result["key0_mass_layer_head"]  # (L, H)
    n_layers, n_heads = mass.shape
    print(f"  sink ratio (eps {float(result['eps']):.1f}): {float(result['sink_ratio']):.1f}%   "
          f"mean key-0 mass: {float(result['key0_mass_mean']):.3f}")  # fmt: skip
    print("  per layer, mean key-0 mass / sink ratio %:")
    for layer in range(n_layers):
        print(f"    layer {layer:2d}: {result['key0_mass_layer'][layer]:.3f} / {result['sink_ratio_layer'][layer]:5.1f}  "
              + " ".join(f"{value:.2f}" for value in mass[layer]))  # fmt: skip
    order = np.argsort(mass, axis=None)[::-1][:top]
    heads = ", ".join(f"L{i // n_heads}H{i % n_heads}={mass.flat[i]:.3f}" for i in order)
    print(f"  strongest sink heads: {heads}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir", help="HF safetensors directory")
    source.add_argument("--gguf", help="GGUF file (converted once to a temporary safetensors dir for the children)")
    parser.add_argument("--text-file", help="text to tokenize for the inputs (default: seeded random ids)")
    parser.add_argument("--shapes", default="1x1024,8x128", help="comma-separated BxT")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved repeats (min and median reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--markdown", action="store_true", help="also print the README table rows")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seq", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_memory(args)
        return

    model = load_model(args.model_dir, args.gguf, args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_sinks.") as tmp:
        model_dir = args.model_dir
        if args.gguf:  # children load safetensors in ~2 s instead of dequantizing again
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(tmp)
            model_dir = tmp
        print(f"torch {torch.__version__}, threads {args.threads}, repeats {args.repeats}")
        rows = []
        for shape in args.shapes.split(","):
            batch, seq = (int(x) for x in shape.lower().split("x"))
            ids = make_inputs(args.model_dir, args.gguf, args.text_file, batch, seq, model.config.vocab_size)
            timings, outputs = measure_time(model, ids, args.repeats)
            print(f"\n== batch {batch} x T {seq}")
            for variant in VARIANTS:
                t = timings[variant]
                print(f"  {LABEL[variant]:32s} time min {min(t):7.3f} s  median {statistics.median(t):7.3f} s")
            ratio = min(timings["sinks"]) / min(timings["sdpa"])
            ratio_med = statistics.median(timings["sinks"]) / statistics.median(timings["sdpa"])
            print(f"  time (b)/(a): min {ratio:.3f}  median {ratio_med:.3f}  (target <= {TIME_TARGET})")
            print(f"  time (c)/(a): min {min(timings['eager']) / min(timings['sdpa']):.3f}")
            print(f"  (b)'s statistics per layer call: {outputs['sinks'][1]['kernels']}")
            same = torch.equal(outputs["sdpa"][0], outputs["sinks"][0])
            print(f"  hidden states (b) == (a) bit for bit: {same}")
            compares = f"sink statistics vs plain sdpa, {batch} x {seq}"
            rows.append(markdown_row("bench_sinks.py", compares, (ratio, ratio_med), TIME_TARGET))
            if not args.skip_memory:
                memory = {variant: measure_memory(args, model_dir, batch, seq, variant) for variant in VARIANTS}
                for variant in VARIANTS:
                    m = memory[variant]
                    flag = "" if m["exact"] else "  (ru_maxrss fallback: lower bound)"
                    print(f"  {LABEL[variant]:32s} peak extra {m['extra'] / 2**20:8.1f} MiB "
                          f"(RSS before {m['rss_before'] / 2**20:.0f} MiB){flag}")  # fmt: skip
                extra_b = max(memory["sinks"]["extra"], 1)
                eager_over_ours = memory["eager"]["extra"] / extra_b
                ours_over_plain = memory["sinks"]["extra"] / max(memory["sdpa"]["extra"], 1)
                print(f"  peak extra (c)/(b): {eager_over_ours:.1f} (target >= {MEMORY_TARGET:g} at T = 1024); "
                      f"(b)/(a): {ours_over_plain:.2f}")  # fmt: skip
                mib = f"{memory['eager']['extra'] / 2**20:,.1f} vs {memory['sinks']['extra'] / 2**20:,.1f} MiB"
                met = "" if eager_over_ours >= MEMORY_TARGET or seq < 1024 else " (not met)"
                rows.append(
                    f"| `benchmarks/bench_sinks.py` | peak extra memory, eager attention maps vs sink statistics, "
                    f"{batch} x {seq} | {eager_over_ours:.1f}x ({mib}); ours vs plain {ours_over_plain:.2f}x | "
                    f">= {MEMORY_TARGET:g}x at T = 1024{met} |"
                )
            print("  sink findings on this batch:")
            report_sinks(outputs["sinks"][1])
        if args.markdown:
            print("\n".join(["", "README rows:", *rows]))


if __name__ == "__main__":
    main()
