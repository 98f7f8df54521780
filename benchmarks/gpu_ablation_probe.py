"""One-shot probe of a Section 4 preset on a lent GPU: train its baseline for a fixed few minutes.

Reports what a full sweep would cost and whether it is on track: training tokens/s, peak device
memory, and the held-out sink ratio, key-0 attention and spike at every evaluation of the
truncated run (the learning rate follows the preset's own schedule, so a 5-minute probe is the
first 5 minutes of the real run). Writes probe.json and probe.md to --out and prints the table.

The GPU machine has no network, so the preset's Hugging Face source cannot be streamed there;
--data picks what to train on instead:
    synthetic   the Bigram-Backcopy language (no files needed; vocabulary 65, so the output layer
                is far cheaper than with the preset's 32k BPE: tokens/s is an upper bound)
    corpus      a passages.jsonl carried along (--corpus; a BPE of the preset's vocabulary size)
    config      the preset's own data section (needs the network or a filled cache)

On the device (one line; `carry` the corpus if you use it):
    python benchmarks/gpu_ablation_probe.py --config config/ablations-gpu.yaml --minutes 5 --data synthetic --out $OUT

On CPU with a tiny preset (what the test does):
    python benchmarks/gpu_ablation_probe.py --config tiny.yaml --seconds 5 --data synthetic --device cpu --out /tmp/probe
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from spikesink.ablations.data import prepare_from_config
from spikesink.ablations.train import load_ablation_config, train
from spikesink.ablations.variants import resolve

# the synthetic language of the probe: the CPU preset's (config/ablations-cpu-synthetic.yaml) with
# enough distinct training text for a GPU's few minutes (windows are drawn at random from it)
SYNTHETIC = {
    "n_tokens": 64,
    "n_triggers": 3,
    "doc_len": 256,
    "concentration": 0.2,
    "train_tokens": 20_000_000,
    "heldout_tokens": 200_000,
    "seed": 0,
}


def probe_config(cfg: dict, data: str, corpus: str | None) -> dict:
    """The preset with its data section replaced as --data asks (model and recipe unchanged)."""
    cfg = json.loads(json.dumps(cfg))  # deep copy
    if data == "synthetic":
        cfg["data"] = {"source": "bigram_backcopy", "bigram_backcopy": dict(SYNTHETIC)}
        cfg["baseline"]["train"]["bos"] = True
    elif data == "corpus":
        if not corpus:
            raise SystemExit("--data corpus needs --corpus passages.jsonl")
        cfg["corpus"] = corpus
        cfg["data"] = {
            "source": "passages",
            "vocab_size": cfg.get("data", {}).get("vocab_size", 32000),
            "heldout_frac": 0.1,
            "seed": 0,
        }
    elif data != "config":
        raise SystemExit(f"--data {data!r}: choose synthetic, corpus or config")
    return cfg


def peak_memory() -> dict:
    """Peak device memory (CUDA) and peak resident memory of this process (MiB)."""
    out = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        out["peak_cuda_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        out["peak_cuda_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
    return out


def run_probe(
    cfg: dict,
    out: Path,
    seconds: float,
    variant: str = "baseline",
    device: str | None = None,
    eval_every: int | None = None,
    threads: int | None = None,
    corpus: str | None = None,
) -> dict:
    """Train `variant` of the preset for about `seconds` of wall time; returns (and writes) the report."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data = prepare_from_config(out / "_data", cfg, corpus)
    data_s = time.perf_counter() - start
    model_cfg, train_cfg, _ = resolve(cfg, variant)
    model_cfg = replace(model_cfg, vocab_size=data.vocab_size)
    over = {"progress": False, "checkpoint_every": 0}
    if device:
        over["device"] = device
    if eval_every:
        over["eval_every"] = eval_every
    if threads:
        over["threads"] = threads
    train_cfg = replace(train_cfg, **over)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    train_start = time.perf_counter()
    metrics = train(model_cfg, train_cfg, data, out / variant, time_limit_s=seconds)
    wall_s = time.perf_counter() - train_start
    curve = json.loads(json.dumps([r for r in _read_curve(out / variant) if r.get("eval_ppl") is not None]))
    report = {
        "config": cfg.get("preset"),
        "variant": variant,
        "data": data.meta.get("source"),
        "device": metrics["device"],
        "device_name": torch.cuda.get_device_name() if metrics["device"].startswith("cuda") else "cpu",
        "parameters": metrics["parameters"],
        "parameters_non_embedding": metrics["parameters_non_embedding"],
        "tokens_per_step": train_cfg.tokens_per_step,
        "steps_done": metrics["steps"],
        "steps_configured": train_cfg.total_steps,
        "train_tokens": metrics["train_tokens"],
        "time_limit_s": seconds,
        "data_prep_s": data_s,
        "train_wall_s": wall_s,
        "tokens_per_s_compute": metrics["train_tokens_per_s"],
        "tokens_per_s_wall": metrics["train_tokens"] / wall_s,
        "full_run_hours_at_this_rate": train_cfg.total_tokens / max(1e-9, metrics["train_tokens_per_s"] or 0) / 3600,
        **peak_memory(),
        "final": {
            k: metrics[k]
            for k in (
                "ppl",
                "sink_ratio",
                "key0_mass_mean",
                "spike",
                "spike_to_median",
                "first_token_spike_to_median",
                "first_token_spike_block",
            )
        },
        "evaluations": [
            {
                k: r.get(k)
                for k in (
                    "step",
                    "tokens",
                    "eval_ppl",
                    "eval_sink_ratio",
                    "eval_key0_mass_mean",
                    "eval_spike",
                    "eval_first_token_spike_to_median",
                )
            }
            for r in curve
        ],
    }
    (out / "probe.json").write_text(json.dumps(report, indent=2))
    (out / "probe.md").write_text(markdown(report))
    return report


def _read_curve(run: Path) -> list[dict]:
    import pandas as pd

    frame = pd.read_csv(run / "curve.csv")
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def markdown(report: dict) -> str:
    lines = [
        f"GPU probe of preset {report['config']} ({report['variant']}, data {report['data']}) on {report['device_name']}",
        "",
        f"- {report['parameters_non_embedding']:,} non-embedding parameters; {report['steps_done']} of "
        f"{report['steps_configured']} steps in {report['train_wall_s']:.0f} s ({report['train_tokens']:,} tokens)",
        f"- tokens/s: {report['tokens_per_s_compute']:,.0f} (training steps only), {report['tokens_per_s_wall']:,.0f} "
        f"(wall, with evaluations); the full preset would take {report['full_run_hours_at_this_rate']:.1f} h per variant",
        "- peak memory: " + ", ".join(f"{k} {v:,.0f}" for k, v in report.items() if k.startswith("peak_")),
        "",
        "| step | tokens | ppl | sink ratio % | key-0 attention | spike max abs(h) | first-token spike / median |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["evaluations"]:
        lines.append(
            f"| {r['step']} | {r['tokens']:,} | {r['eval_ppl']:.2f} | {r['eval_sink_ratio']:.1f} | "
            f"{r['eval_key0_mass_mean']:.3f} | {r['eval_spike']:.1f} | {r['eval_first_token_spike_to_median']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/ablations-gpu.yaml")
    parser.add_argument("--variant", default="baseline")
    parser.add_argument("--minutes", type=float, help="training wall time (default 5 minutes)")
    parser.add_argument("--seconds", type=float, help="training wall time in seconds (instead of --minutes)")
    parser.add_argument("--data", default="synthetic", help="synthetic | corpus | config (see the module docstring)")
    parser.add_argument("--corpus", help="passages.jsonl for --data corpus")
    parser.add_argument("--device", help="override train.device (e.g. cpu for a dry run)")
    parser.add_argument("--eval-every", type=int, help="steps between evaluations (default: the preset's)")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", type=Path, default=Path("results/gpu_probe"))
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else 60 * (args.minutes if args.minutes is not None else 5)
    cfg = probe_config(load_ablation_config(args.config), args.data, args.corpus)
    report = run_probe(cfg, args.out, seconds, args.variant, args.device, args.eval_every, args.threads, args.corpus)
    sys.stdout.write(markdown(report))


if __name__ == "__main__":
    main()
