"""The CPU baseline search of Section 4: run one search config, or summarize the runs made so far.

The search asks for the smallest CPU-trainable pre-norm model that forms both a first-token spike
(>= 100x the median |h| of its block) and an attention sink (sink ratio >= 20 % on held-out
windows). The configs in benchmarks/ablation_search/ are the runs tried; each is an ordinary
`ablations:` section:

    python -m spikesink.ablations.train --config benchmarks/ablation_search/text-no-decay.yaml \
        --variant baseline --out results/search/text-no-decay/baseline --corpus resources/corpus/passages.jsonl

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
from pathlib import Path

import numpy as np
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
        meta, weights = json.loads((run / "checkpoint" / "state.json").read_text()), run / "checkpoint" / "model.safetensors"
        steps = meta["step"]
    model = Decoder(ModelConfig.from_dict(meta["model_config"]))
    load_model(model, str(weights))
    return model, meta["train_config"], steps


def summarize(run: Path, data_dir: Path | None) -> dict:
    model, train_cfg, steps = load_run(run)
    data = load_data(data_dir or run.parent / "_data")
    bos_id = data.eos_id if train_cfg["bos"] else None
    batches = heldout_batches(data.heldout, 32, train_cfg["seq_len"], 16, bos_id)
    metrics = evaluate(model, batches)
    blocks = metrics["blocks"]
    median = np.maximum(np.asarray(blocks["post_residual_median"]), 1e-30)
    seq_len = train_cfg["seq_len"]
    return {
        "run": run_name(run),
        "tokens_M": steps * train_cfg["batch_size"] * seq_len / 1e6,
        "ppl": metrics["ppl"],
        "sink_%": metrics["sink_ratio"],
        "key0_mass": metrics["key0_mass_mean"],
        "key0_uniform": float(np.mean([1 / (t + 1) for t in range(seq_len)])),
        "key0_max_head": float(np.max(metrics["key0_mass_per_head"])),
        "first_token_x_median": metrics["first_token_spike_to_median"],
        "first_token_block": metrics["first_token_spike_block"],
        "other_tokens_x_median": float(np.max(np.asarray(blocks["other_tokens_top1"]) / median)),
    }


def load_curve(run: Path):
    """The held-out curve of a run: curve.csv when finished, else the rows saved in its checkpoint."""
    import pandas as pd

    if (run / "curve.csv").exists():
        return pd.read_csv(run / "curve.csv")
    return pd.DataFrame(json.loads((run / "checkpoint" / "state.json").read_text())["curve"])


def run_name(run: Path) -> str:
    return run.parent.name if run.name == "baseline" else run.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (with metrics.json or checkpoint/)")
    parser.add_argument("--data-dir", type=Path, help="token cache (default <run>/../_data)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--curves", type=Path, help="also draw the runs' curves into this figure (PDF + PNG)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import pandas as pd

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
