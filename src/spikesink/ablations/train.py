"""Train one ablation variant from scratch, with the paper's recipe, resumably and deterministically.

Recipe (paper, Section 4): AdamW (0.9, 0.95), linear warm-up then cosine decay to 0.1x the peak
learning rate, weight decay 0.1 on matrices only (norm gains, DyT alphas, learned gate constants,
sink logits and key/value biases are not decayed, as usual; `decay_all: true` decays everything
like the official code), gradient clipping at 1.0, next-token loss on positions
[loss_min_pos, loss_max_pos). `optimizer: sgd` swaps AdamW for SGD with momentum beta1 (Guo et al.
2024's remedy), the same groups, schedule and clipping, its weight decay decoupled as AdamW's (the
variant sets its own learning rate).

Resumability: every `checkpoint_every` steps the model (safetensors), the optimizer state, the
step, the RNG states, both configs, the seed and the training curve so far are written atomically
to <out>/checkpoint/. The batch of step s is drawn from an RNG seeded by (seed, s) and the learning
rate is a function of s, so a run killed after any step and restarted continues exactly where the
last checkpoint left it: on CPU the final weights are bitwise those of an uninterrupted run. The
checkpoint is removed once the run completes so that a later rerun (changed code) starts afresh.

Outputs in <out>/: model.safetensors, config.json, metrics.json (final held-out evaluation),
curve.csv and curve.parquet (step, loss, lr, grad norm, tokens; held-out ppl, sink ratio, spike
and spike/median every `eval_every` steps), train.log.

CLI: python -m spikesink.ablations.train --config <yaml> --variant <name> --out <dir> [--corpus ...]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_model, save_model
from tqdm import tqdm

from spikesink.io import atomic_path, read_json, write_json, write_parquet, write_text

# TrainConfig lives in the torch-free configs.py (the workflow resolves variants without torch);
# imported here also so that `from spikesink.ablations.train import TrainConfig` keeps working
from .configs import ModelConfig, TrainConfig, strict_from_dict  # noqa: F401
from .data import TokenData, heldout_batches, prepare_from_config, sample_batch, step_rng
from .evaluate import evaluate
from .model import Decoder, lm_loss

# fields that change the training trajectory: a checkpoint may only be resumed when they match
TRAJECTORY_FIELDS = (
    "seed",
    "batch_size",
    "seq_len",
    "total_tokens",
    "lr",
    "min_lr_ratio",
    "warmup_frac",
    "weight_decay",
    "decay_all",
    "optimizer",
    "beta1",
    "beta2",
    "grad_clip",
    "loss_min_pos",
    "loss_max_pos",
    "bos",
)


def lr_at(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Learning rate of update `step` (0-based): linear warm-up, then cosine to min_lr_ratio * lr."""
    warmup = max(1, round(cfg.warmup_frac * total_steps))
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


# learned constants that are not weights of a map: never decayed (unless decay_all)
NO_DECAY = ("gate_logit", "sink_logit", "k_bias", "v_bias")


def param_groups(model: torch.nn.Module, weight_decay: float, decay_all: bool = False) -> list[dict]:
    """Optimizer groups: matrices decay; vectors (norm gains, DyT alpha) and learned constants (NO_DECAY) do not."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if decay_all or (param.ndim >= 2 and not name.endswith(NO_DECAY)):
            decay.append(param)
        else:
            no_decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (betas beta1, beta2), or SGD with momentum beta1 (`optimizer: sgd`), over param_groups.

    SGD's weight decay is decoupled as AdamW's (SGDW): each step shrinks the decayed parameters by
    lr x weight_decay before the update (`decoupled_decay`, key `sgdw_decay`), instead of torch's L2 term in the gradient,
    which momentum would amplify 1 / (1 - beta1) times. So weight_decay means the same for both."""
    groups = param_groups(model, cfg.weight_decay, cfg.decay_all)
    if cfg.optimizer == "sgd":
        # own key: torch's AdamW groups carry a boolean "decoupled_weight_decay" flag of their own
        groups = [{**g, "weight_decay": 0.0, "sgdw_decay": g["weight_decay"]} for g in groups]
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.beta1)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


@torch.no_grad()
def decoupled_decay(optimizer: torch.optim.Optimizer) -> None:
    """p <- p (1 - lr x weight_decay) for the groups that carry `sgdw_decay` (SGD; AdamW does it itself)."""
    for group in optimizer.param_groups:
        if group.get("sgdw_decay"):
            for param in group["params"]:
                param.mul_(1.0 - group["lr"] * group["sgdw_decay"])


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# ----------------------------------------------------------------------------------------------
# checkpoints


def save_checkpoint(
    path: Path,
    model: Decoder,
    optimizer,
    step: int,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    curve: list[dict],
    elapsed_s: float,
) -> None:
    """Write the whole training state as one folder, atomically (a kill mid-write leaves the old one)."""
    with atomic_path(path) as tmp:
        tmp.mkdir()
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "python_rng": random.getstate(),
            },
            tmp / "trainer.pt",
        )
        write_json(
            tmp / "state.json",
            {
                "step": step,
                "seed": train_cfg.seed,
                "model_config": model_cfg.to_dict(),
                "train_config": asdict(train_cfg),
                "curve": curve,
                "elapsed_s": elapsed_s,
            },
        )


def load_checkpoint(path: Path, model: Decoder, optimizer, model_cfg: ModelConfig, train_cfg: TrainConfig):
    """Restore model, optimizer and RNG states in place; returns (step, curve, elapsed_s)."""
    state = read_json(path / "state.json")
    # keys added since the checkpoint was written read as their defaults
    if ModelConfig.from_dict(state["model_config"]).to_dict() != model_cfg.to_dict():
        raise ValueError(f"checkpoint {path} was written for another model config; delete it to start afresh")
    saved = state["train_config"]
    changed = [k for k in TRAJECTORY_FIELDS if saved.get(k, getattr(TrainConfig, k)) != getattr(train_cfg, k)]
    if changed:
        raise ValueError(f"checkpoint {path} differs in {', '.join(changed)}; delete it to start afresh")
    device = next(model.parameters()).device
    load_model(model, str(path / "model.safetensors"), device=str(device))
    trainer = torch.load(path / "trainer.pt", map_location=device, weights_only=True)
    optimizer.load_state_dict(trainer["optimizer"])
    torch.set_rng_state(trainer["torch_rng"].cpu())
    if trainer["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in trainer["cuda_rng"]])
    random.setstate(_as_tuple(trainer["python_rng"]))
    return int(state["step"]), list(state["curve"]), float(state.get("elapsed_s", 0.0))


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


# ----------------------------------------------------------------------------------------------
# logging and the curve


def make_logger(log_path: Path) -> logging.Logger:
    logger = logging.getLogger(f"spikesink.ablations.{log_path.resolve()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    return logger


def close_logger(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


CURVE_EVAL_KEYS = (
    "ppl",
    "sink_ratio",
    "key0_mass_mean",
    "spike",
    "spike_to_median",
    "spike_block",
    "spike_position",
    "first_token_spike_to_median",
)


def curve_eval_row(metrics: dict) -> dict:
    """The held-out columns of one curve row, plus the largest |h| at position 0 and elsewhere."""
    row = {f"eval_{k}": metrics[k] for k in CURVE_EVAL_KEYS}
    if metrics.get("sink_slot_share") is not None:  # only models whose softmax has a slot besides the tokens
        row["eval_sink_slot_share"] = metrics["sink_slot_share"]
    row["eval_first_token_max"] = max(metrics["blocks"]["first_token_top1"])
    row["eval_other_tokens_max"] = max(metrics["blocks"]["other_tokens_top1"])
    return row


def write_curve(out_dir: Path, curve: list[dict]) -> None:
    """The curve as CSV and parquet, columns in a fixed order (rows restored from a checkpoint come back key-sorted)."""
    frame = pd.DataFrame(curve)
    order = [
        "step",
        "tokens",
        "lr",
        "loss",
        "grad_norm",
        *(f"eval_{k}" for k in CURVE_EVAL_KEYS),
        "eval_first_token_max",
        "eval_other_tokens_max",
        "eval_sink_slot_share",
    ]
    frame = frame[[c for c in order if c in frame.columns] + [c for c in frame.columns if c not in order]]
    write_parquet(out_dir / "curve.parquet", frame)
    write_text(out_dir / "curve.csv", frame.to_csv(index=False))


# ----------------------------------------------------------------------------------------------
# the training loop


def train(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    data: TokenData,
    out_dir: str | os.PathLike,
    extra: dict | None = None,
    log: str | os.PathLike | None = None,
    stop_at_step: int | None = None,
    time_limit_s: float | None = None,
) -> dict | None:
    """Train, evaluate and write the outputs; returns the final metrics (None when stopped early).

    `stop_at_step` ends the run right after that step without final outputs, as a kill would
    (tests use it to check that resuming reproduces an uninterrupted run). `time_limit_s` ends the
    training loop after the first step that finishes past that many seconds of wall time and then
    writes the final outputs as usual (metrics say `time_limited` and the steps done; the learning
    rate followed the configured schedule up to there): a fixed-time probe of a long preset.
    """
    wall_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / "checkpoint"
    logger = make_logger(Path(log) if log else out / "train.log")
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    device = pick_device(train_cfg.device)
    if model_cfg.max_seq_len < train_cfg.seq_len:
        raise ValueError(f"max_seq_len {model_cfg.max_seq_len} < seq_len {train_cfg.seq_len}")
    if model_cfg.vocab_size != data.vocab_size:
        raise ValueError(f"model vocab {model_cfg.vocab_size} != tokenizer vocab {data.vocab_size}")
    autocast_dtype = torch.bfloat16 if (device.type == "cuda" and train_cfg.bf16) else None
    bos_id = data.eos_id if train_cfg.bos else None

    # model and optimizer (deterministic init from the seed)
    random.seed(train_cfg.seed)
    torch.manual_seed(train_cfg.seed)
    model = Decoder(model_cfg).to(device)
    model.gradient_checkpointing = train_cfg.grad_checkpointing
    optimizer = make_optimizer(model, train_cfg)
    total_steps = train_cfg.total_steps
    step, curve, elapsed = 0, [], 0.0
    if (ckpt_dir / "state.json").exists():
        step, curve, elapsed = load_checkpoint(ckpt_dir, model, optimizer, model_cfg, train_cfg)
        curve = [row for row in curve if row["step"] <= step]
        logger.info("resumed from %s at step %d", ckpt_dir, step)
    logger.info("model %s", model_cfg.to_dict())
    logger.info("train %s", asdict(train_cfg))
    logger.info(
        "%d parameters (%d without the input embedding), %d steps of %d tokens on %s",
        model.num_parameters(False),
        model.num_parameters(True),
        total_steps,
        train_cfg.tokens_per_step,
        device,
    )

    eval_batches = heldout_batches(
        data.heldout, train_cfg.eval_windows, train_cfg.seq_len, train_cfg.eval_batch_size, bos_id
    )

    def run_eval() -> dict:
        return evaluate(
            model, eval_batches, train_cfg.loss_min_pos, train_cfg.loss_max_pos, train_cfg.sink_eps, autocast_dtype
        )

    if step == 0 and train_cfg.eval_every:
        curve.append({"step": 0, "tokens": 0, **curve_eval_row(run_eval())})
    forward = torch.compile(model) if train_cfg.compile else model
    amp = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    bar = tqdm(total=total_steps, initial=step, disable=not train_cfg.progress, dynamic_ncols=True, file=sys.stderr)
    window_start, window_tokens = time.perf_counter(), 0
    model.train()
    while step < total_steps:
        # one update: batch of this step, lr of this step, forward, backward, clip, AdamW
        lr = lr_at(step, total_steps, train_cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = sample_batch(data.train, train_cfg.batch_size, train_cfg.seq_len, step_rng(train_cfg.seed, step), bos_id)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        t0 = time.perf_counter()
        with amp:
            logits = forward(x)  # (B, T, vocab)
        loss = lm_loss(logits, y, train_cfg.loss_min_pos, train_cfg.loss_max_pos)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
        decoupled_decay(optimizer)
        optimizer.step()
        step += 1
        loss_value = float(loss.detach())
        elapsed += time.perf_counter() - t0
        window_tokens += train_cfg.tokens_per_step
        row = {
            "step": step,
            "tokens": step * train_cfg.tokens_per_step,
            "lr": lr,
            "loss": loss_value,
            "grad_norm": float(grad_norm),
        }

        if (train_cfg.eval_every and step % train_cfg.eval_every == 0) or step == total_steps:
            row.update(curve_eval_row(run_eval()))
            logger.info(
                "step %d eval ppl %.2f sink %.1f%% key-0 mass %.3f spike %.1f (x%.0f median, block %d, pos %d) "
                "first-token spike x%.0f median",
                step,
                row["eval_ppl"],
                row["eval_sink_ratio"],
                row["eval_key0_mass_mean"],
                row["eval_spike"],
                row["eval_spike_to_median"],
                row["eval_spike_block"],
                row["eval_spike_position"],
                row["eval_first_token_spike_to_median"],
            )
        curve.append(row)
        bar.update(1)
        if step % train_cfg.log_every == 0 or step == total_steps:
            rate = window_tokens / max(1e-9, time.perf_counter() - window_start)
            bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{rate:,.0f}")
            logger.info(
                "step %d/%d loss %.4f lr %.3g grad_norm %.3f tokens/s %.0f",
                step,
                total_steps,
                loss_value,
                lr,
                float(grad_norm),
                rate,
            )
            window_start, window_tokens = time.perf_counter(), 0
        if train_cfg.checkpoint_every and (step % train_cfg.checkpoint_every == 0 or step == total_steps):
            save_checkpoint(ckpt_dir, model, optimizer, step, model_cfg, train_cfg, curve, elapsed)
        if time_limit_s is not None and step < total_steps and time.perf_counter() - wall_start > time_limit_s:
            if "eval_ppl" not in row:  # the curve ends on an evaluation
                row.update(curve_eval_row(run_eval()))
            logger.info("time limit of %.0f s reached after step %d of %d", time_limit_s, step, total_steps)
            break
        if stop_at_step is not None and step >= stop_at_step and step < total_steps:
            bar.close()
            logger.info("stopped at step %d (simulated kill)", step)
            close_logger(logger)
            return None
    bar.close()

    # final outputs: weights, configs, curve, metrics (metrics.json last: it marks a finished run)
    metrics = run_eval()
    n_train_tokens = step * train_cfg.tokens_per_step
    metrics.update(
        {
            "steps": step,
            "time_limited": step < total_steps,
            "train_tokens": n_train_tokens,
            "final_train_loss": curve[-1].get("loss"),
            "train_tokens_per_s": n_train_tokens / elapsed if elapsed > 0 else None,
            "parameters": model.num_parameters(False),
            "parameters_non_embedding": model.num_parameters(True),
            "device": str(device),
            "model_config": model_cfg.to_dict(),
            "train_config": asdict(train_cfg),
            **(extra or {}),
        }
    )
    with atomic_path(out / "model.safetensors") as tmp:
        save_model(model, str(tmp))
    write_json(
        out / "config.json", {"model_config": model_cfg.to_dict(), "train_config": asdict(train_cfg), **(extra or {})}
    )
    write_curve(out, curve)
    write_json(out / "metrics.json", metrics)
    logger.info(
        "done: ppl %.2f sink %.1f%% spike %.1f (x%.0f median)",
        metrics["ppl"],
        metrics["sink_ratio"],
        metrics["spike"],
        metrics["spike_to_median"],
    )
    close_logger(logger)
    if not train_cfg.keep_checkpoint and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    return metrics


# ----------------------------------------------------------------------------------------------
# entry points


def run_variant(
    ablation_cfg: dict,
    variant: str,
    out_dir: str | os.PathLike,
    corpus_path: str | os.PathLike | None = None,
    log: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    stop_at_step: int | None = None,
    overrides: dict | None = None,
) -> dict | None:
    """Train one named variant of an `ablations:` config section into out_dir; returns its metrics.

    The data cache (tokenizer + token files) goes to `data_dir`, else ablations.data.cache_dir,
    else <out_dir>/../_data. `overrides` ({"model": {...}, "train": {...}}) patches the resolved
    configs (e.g. to turn the progress bar off).
    """
    from dataclasses import replace

    from .variants import resolve

    model_cfg, train_cfg, info = resolve(ablation_cfg, variant)
    if overrides:
        model_cfg = replace(model_cfg, **overrides.get("model", {}))
        train_cfg = replace(train_cfg, **overrides.get("train", {}))
    cache = data_dir or ablation_cfg.get("data", {}).get("cache_dir") or Path(out_dir).parent / "_data"
    data = prepare_from_config(cache, ablation_cfg, corpus_path)
    model_cfg = replace(model_cfg, vocab_size=data.vocab_size)
    extra = {
        "preset": ablation_cfg.get("preset"),
        "variant": info.name,
        "table": info.table,
        "description": info.description,
        "paper": info.paper,
        "paper_setting": info.paper_setting,
        "data": {
            k: v
            for k, v in data.meta.items()
            if k
            in (
                "source",
                "train_tokens",
                "heldout_tokens",
                "heldout_docs",
                "vocab_size",
                "bigram_backcopy",
                "heldout_bayes_loss",
            )
        },
    }
    return train(model_cfg, train_cfg, data, out_dir, extra=extra, log=log, stop_at_step=stop_at_step)


def load_ablation_config(path: str | os.PathLike) -> dict:
    """The `ablations:` section of a YAML file (or the whole file if it has no such key)."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        cfg = yaml.safe_load(handle) or {}
    return cfg.get("ablations", cfg)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train one Section 4 ablation variant from scratch.")
    parser.add_argument("--config", required=True, help="YAML file with an `ablations:` section")
    parser.add_argument("--variant", required=True, help="variant name, e.g. baseline, dhead-16, norm-sandwich")
    parser.add_argument("--out", required=True, help="output folder, e.g. results/ablations/<preset>/<variant>/")
    parser.add_argument("--corpus", help="passages.jsonl (overrides ablations.corpus)")
    parser.add_argument("--data-dir", help="tokenizer / token cache folder (default <out>/../_data)")
    parser.add_argument("--log", help="log file (default <out>/train.log)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar (batch jobs)")
    args = parser.parse_args(argv)
    train_over = {}
    if args.threads:
        train_over["threads"] = args.threads
    if args.no_progress:
        train_over["progress"] = False
    metrics = run_variant(
        load_ablation_config(args.config),
        args.variant,
        args.out,
        corpus_path=args.corpus,
        log=args.log,
        data_dir=args.data_dir,
        overrides={"train": train_over},
    )
    if metrics:
        print(
            f"{args.variant}: ppl {metrics['ppl']:.2f}  sink {metrics['sink_ratio']:.1f}%  spike {metrics['spike']:.1f} "
            f"(x{metrics['spike_to_median']:.0f} median, block {metrics['spike_block']}, position {metrics['spike_position']})"
        )


if __name__ == "__main__":
    main()
