"""The CPU baseline search of Section 4: run one search config, or summarize the runs made so far.

The search asks for the smallest CPU-trainable pre-norm model that forms both a first-token spike
(>= 100x the median |h| of its block) and an attention sink (sink ratio >= 20 % on held-out
windows). The configs in benchmarks/ablation_search/ are the runs tried; each is an ordinary
`ablations:` section:

    python -m spikesink.ablations.train --config benchmarks/ablation_search/text-no-decay.yaml \
        --variant baseline --out results/search/text-no-decay/baseline --corpus resources/corpus/passages.jsonl

or train configs one after another (one core; skips finished runs) into results/search/<config>/baseline,
recording the wall time of data generation and training in results/search/<config>/wall.json:

    python benchmarks/ablation_search.py --train benchmarks/ablation_search/bb-*.yaml

Then summarize (finished runs from model.safetensors, stopped ones from their last checkpoint):

    python benchmarks/ablation_search.py results/search/*/baseline

and draw every run's held-out curve (sink ratio, key-0 attention, first-token spike over tokens):

    python benchmarks/ablation_search.py results/search/*/baseline --curves benchmarks/ablation_search/curves.png

Every run is re-evaluated the same way on its held-out windows, so the table compares like with
like: perplexity, sink ratio, mean attention on key 0 (and the uniform level it would have with no
preference for key 0), and per block the largest |h| at position 0 and elsewhere over the block's
median |h|.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_model

from spikesink.ablations.data import heldout_batches, load_data
from spikesink.ablations.evaluate import evaluate
from spikesink.ablations.model import Decoder, ModelConfig


def load_run(run: Path) -> tuple[Decoder, dict, int]:
    """The model of a finished run (config.json) or of its last checkpoint (checkpoint/state.json)."""
    if (run / "metrics.json").exists():
        meta, weights = json.loads((run / "config.json").read_text()), run / "model.safetensors"
        steps = json.loads((run / "metrics.json").read_text())["steps"]
    else:
        meta, weights = (
            json.loads((run / "checkpoint" / "state.json").read_text()),
            run / "checkpoint" / "model.safetensors",
        )
        steps = meta["step"]
    model = Decoder(ModelConfig.from_dict(meta["model_config"]))
    load_model(model, str(weights))
    return model, meta["train_config"], steps


def summarize(run: Path, data_dir: Path | None) -> dict:
    model, train_cfg, steps = load_run(run)
    data = load_data(data_dir or run.parent / "_data")
    bos_id = data.eos_id if train_cfg["bos"] else None
    # 32 windows of 128 tokens, more of shorter ones (at least 4,096 held-out tokens per evaluation)
    batches = heldout_batches(data.heldout, max(32, 4096 // train_cfg["seq_len"]), train_cfg["seq_len"], 16, bos_id)
    metrics = evaluate(model, batches)
    blocks = metrics["blocks"]
    median = np.maximum(np.asarray(blocks["post_residual_median"]), 1e-30)
    seq_len = train_cfg["seq_len"]
    cfg = model.cfg
    tokens = steps * train_cfg["batch_size"] * seq_len
    wall = wall_time(run)
    curve = load_curve(run)
    sunk = (
        curve[curve["eval_sink_ratio"] >= 20] if "eval_sink_ratio" in curve else curve.iloc[:0]
    )  # first evaluation at >= 20 %
    floor = data.meta.get("heldout_bayes_loss")
    return {
        "run": run_name(run),
        "model": f"d{cfg.d_model} {cfg.n_layers}x{cfg.n_heads}x{cfg.d_head}",
        "tokens_M": tokens / 1e6,
        "wall_s": wall,
        "tok_per_s": tokens / wall if wall == wall else float("nan"),
        "ppl": metrics["ppl"],
        "ppl_floor": float(np.exp(floor)) if floor is not None else float("nan"),
        "sink20_at_M": float(sunk["tokens"].iloc[0]) / 1e6 if len(sunk) else float("nan"),
        "sink_%": metrics["sink_ratio"],
        "key0_mass": metrics["key0_mass_mean"],
        "key0_uniform": float(np.mean([1 / (t + 1) for t in range(seq_len)])),
        "key0_max_head": float(np.max(metrics["key0_mass_per_head"])),
        "first_token_x_median": metrics["first_token_spike_to_median"],
        "first_token_block": metrics["first_token_spike_block"],
        "other_tokens_x_median": float(np.max(np.asarray(blocks["other_tokens_top1"]) / median)),
    }


def train_config(path: Path, root: Path, threads: int = 1) -> Path:
    """Train the baseline of one search config into <root>/<config stem>/baseline; returns that folder.

    The wall time (data generation, then training with its evaluations) goes to wall.json beside it,
    and the run is skipped when it has finished before.
    """
    from spikesink.ablations.data import prepare_from_config
    from spikesink.ablations.train import load_ablation_config, run_variant

    cfg = load_ablation_config(path)
    run = root / path.stem / "baseline"
    if (run / "metrics.json").exists():
        return run
    run.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    corpus = cfg.get("corpus") or "resources/corpus/passages.jsonl"
    prepare_from_config(
        run.parent / "_data", cfg, corpus if cfg.get("data", {}).get("source", "passages") == "passages" else None
    )
    data_s = time.perf_counter() - start
    run_variant(
        cfg,
        "baseline",
        run,
        corpus_path=corpus,
        data_dir=run.parent / "_data",
        overrides={"train": {"progress": False, "threads": threads}},
    )
    wall = {"config": str(path), "data_s": data_s, "train_s": time.perf_counter() - start - data_s}
    wall["wall_s"] = wall["data_s"] + wall["train_s"]
    (run.parent / "wall.json").write_text(json.dumps(wall, indent=2))
    return run


def wall_time(run: Path) -> float:
    """Seconds of data generation plus training (wall.json of --train), NaN when not recorded."""
    path = run.parent / "wall.json"
    return json.loads(path.read_text())["wall_s"] if path.exists() else float("nan")


def load_curve(run: Path):
    """The held-out curve of a run: curve.csv when finished, else the rows saved in its checkpoint."""
    if (run / "curve.csv").exists():
        return pd.read_csv(run / "curve.csv")
    return pd.DataFrame(json.loads((run / "checkpoint" / "state.json").read_text())["curve"])


def run_name(run: Path) -> str:
    return run.parent.name if run.name == "baseline" else run.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run folders (with metrics.json or checkpoint/)")
    parser.add_argument(
        "--train", nargs="+", type=Path, help="search configs to train first (one after another), then summarize"
    )
    parser.add_argument("--root", type=Path, default=Path("results/search"), help="where --train puts its runs")
    parser.add_argument("--data-dir", type=Path, help="token cache (default <run>/../_data)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--curves", type=Path, help="also draw the runs' curves into this figure (PDF + PNG)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.train:
        for path in args.train:
            args.runs.append(train_config(path, args.root, args.threads))

    rows = [summarize(run, args.data_dir) for run in args.runs]
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3g"))
    if args.curves:
        from spikesink.ablations.report import plot_training_curves

        curves = {}
        for run in args.runs:
            curve = load_curve(run)
            if "eval_first_token_spike_to_median" not in curve:  # runs from before that column existed
                curve["eval_first_token_spike_to_median"] = float("nan")
            curves[run_name(run)] = curve
        plot_training_curves(curves, args.curves)


if __name__ == "__main__":
    main()
