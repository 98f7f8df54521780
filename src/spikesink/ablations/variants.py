"""Named ablation variants as short diffs from a baseline, each with the paper's numbers attached.

A variant is a function of the baseline (model config, train config) that returns overrides, so the
same names work at any scale: `lr-2x` doubles the baseline learning rate, `seq-div4` quarters the
context, `dhead-16` sets the head dimension to 16 at the baseline's head count. The paper's row
(perplexity / sink ratio % / spike, Tables 3-8, baseline d_head 128, 32 heads, seq 4096) is
attached so a table can print paper beside ours; parametric head variants are matched to the
paper's row by their ratio to the baseline (e.g. d_head = baseline/2 <-> the paper's d_head 64).

The sink remedies (table "remedies", `REMEDIES`) are one switch each: a learned sink logit per
head, softmax1, sigmoid and ReLU attention, a key/value bias, SGD, true post-norm, and the
conditional output gates of Table 7 again for comparison. Their `paper` holds the literature's
number where one is published (its source in `paper_setting`, None where there is none), plus
`key0_mass` where a paper measured the mean attention on the first token (Qiu et al. 2025).

Names are lower-case letters, digits and dashes (plus `x` in `heads-8x16`): safe as folder names
and Snakemake wildcards.

Mapping notes (where the paper's prose and the official code, savinasun/SpikeSparseSink, differ):
- "Sandwich + QK-norm" (Table 5) is implemented in the official code as QK-norm plus a norm on the
  block *output* only (no input norm): our `norm-qk-output`. `norm-sandwich-qk` is the literal
  reading (input norm, output norm and QK-norm); both carry the paper's row.
- "Attention-only" (Table 4) replaces each FFN with a second attention (official code):
  `ffn-attn-only`. `ffn-none` drops the FFN altogether (no paper row).
- GeLU FFN uses a 1.5x wider hidden layer (official config: 16512 = 1.5 x 11008), matching the
  SwiGLU parameter count; the linear FFN is one d_model x d_model map.
- Unconditional positional gating is a learned constant per (position, channel).
- Table 6's fixed-width rows are taken from PAPER.md (8/512, 16/256, 32/128, 64/64, 256/16); the
  official configs list 16/256, 64/64, 128/32, 256/16, 512/8, so our `heads-NxD` rows only carry
  paper numbers where PAPER.md has them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

# torch-free imports only: the workflow resolves variants (and table names) while it builds its DAG
from .configs import ModelConfig, TrainConfig

VARIANT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")

# the paper's Tables 3-8, and "remedies": every known sink remedy side by side (not a paper table;
# its rows carry the literature's number where one exists)
TABLE_NAMES = {
    "3": "optimizer",
    "4": "ffn",
    "5": "norm",
    "6": "heads",
    "7": "gating",
    "8": "context",
    "remedies": "menu",
}


def table_stem(table: str) -> str:
    return f"table{table}_{TABLE_NAMES[table]}"


PAPER_BASELINE = {"ppl": 10.1, "sink_ratio": 46.0, "spike": 3818.0}
PAPER_D_HEAD, PAPER_N_HEADS, PAPER_SEQ_LEN = 128, 32, 4096

# Table 6 rows keyed by the paper's setting
PAPER_DHEAD = {
    8: (11.3, 4.1, 291),
    16: (10.8, 9.8, 315),
    32: (10.5, 27.9, 829),
    64: (10.3, 37.7, 2112),
    128: (10.1, 46.0, 3818),
}
PAPER_NHEAD = {8: (10.4, 37.1, 1253), 16: (10.3, 41.7, 1936), 32: (10.1, 46.0, 3818)}
PAPER_FIXED_WIDTH = {
    8: (10.7, 11.0, 1205),
    16: (10.4, 30.8, 1750),
    32: (10.3, 41.1, 1916),
    64: (10.2, 44.1, 2523),
    256: (10.1, 52.1, 3429),
}  # keyed by N_head; d_head = 4096 / N_head


def _paper(row) -> dict | None:
    if row is None:
        return None
    ppl, sink, spike = row
    return {"ppl": float(ppl), "sink_ratio": float(sink), "spike": float(spike)}


def _literature(**values) -> dict:
    """A remedy's published numbers (any of ppl, sink_ratio %, spike, key0_mass), each from the source
    its variant's paper_setting names; the rest stay None (no such number published)."""
    return {"ppl": None, "sink_ratio": None, "spike": None, "key0_mass": None, **values}


Diff = Callable[[ModelConfig, TrainConfig], tuple[dict, dict]]


@dataclass(frozen=True)
class Variant:
    name: str
    table: str  # paper table ("3".."8"), "" for the baseline
    description: str
    diff: Diff  # (baseline model, baseline train) -> (model overrides, train overrides)
    paper: dict | None  # {"ppl", "sink_ratio", "spike"} (remedies: + "key0_mass", None where unpublished) or None
    paper_setting: str = ""  # the paper's wording of the row


def _model(**overrides) -> Diff:
    return lambda m, t: (dict(overrides), {})


def _train(fn: Callable[[ModelConfig, TrainConfig], dict]) -> Diff:
    return lambda m, t: ({}, fn(m, t))


def _seq(divisor_or_factor: float, loss_from: float | None = None) -> Diff:
    """Context length scaled by a factor; optionally loss only from `loss_from` x baseline length on."""

    def diff(m: ModelConfig, t: TrainConfig):
        seq_len = int(round(t.seq_len * divisor_or_factor))
        train = {"seq_len": seq_len}
        if loss_from is not None:
            train["loss_min_pos"] = int(round(t.seq_len * loss_from))
            train["loss_max_pos"] = None
        return {"max_seq_len": seq_len}, train

    return diff


def _gate(kind: str, granularity: str) -> Diff:
    return _model(gate=kind, gate_granularity=granularity)


def _sgd(factor: float) -> Diff:
    """SGD at `factor` x the baseline's learning rate, weight decay / factor: the same shrink per step (lr x wd)."""
    return _train(lambda m, t: {"optimizer": "sgd", "lr": t.lr * factor, "weight_decay": t.weight_decay / factor})


STATIC: list[Variant] = [
    Variant("baseline", "", "the baseline", lambda m, t: ({}, {}), PAPER_BASELINE, "Llama baseline"),
    # Table 3: optimizer
    Variant(
        "lr-025x",
        "3",
        "learning rate x0.25",
        _train(lambda m, t: {"lr": t.lr * 0.25}),
        _paper((11.8, 18.6, 1447)),
        "lr 7.5e-5",
    ),
    Variant(
        "lr-05x",
        "3",
        "learning rate x0.5",
        _train(lambda m, t: {"lr": t.lr * 0.5}),
        _paper((10.7, 31.8, 2251)),
        "lr 1.5e-4",
    ),
    Variant(
        "lr-2x", "3", "learning rate x2", _train(lambda m, t: {"lr": t.lr * 2}), _paper((10.0, 51.5, 3773)), "lr 6e-4"
    ),
    Variant(
        "lr-4x", "3", "learning rate x4", _train(lambda m, t: {"lr": t.lr * 4}), _paper((10.2, 39.2, 2723)), "lr 1.2e-3"
    ),
    Variant(
        "minlr-1x",
        "3",
        "no decay: min lr = lr",
        _train(lambda m, t: {"min_lr_ratio": 1.0}),
        _paper((10.7, 56.8, 2870)),
        "min lr 3e-4",
    ),
    Variant(
        "wd-0", "3", "no weight decay", _train(lambda m, t: {"weight_decay": 0.0}), _paper((10.4, 33.8, 12275)), "wd 0"
    ),
    Variant(
        "wd-5x",
        "3",
        "weight decay x5 (not in the paper's table; Gu et al. 2025: wd 0.5 -> 41 % sinks vs 18 % at 0.1)",
        _train(lambda m, t: {"weight_decay": t.weight_decay * 5}),
        None,
        "",
    ),
    Variant(
        "beta2-090",
        "3",
        "AdamW beta2 0.9",
        _train(lambda m, t: {"beta2": 0.9}),
        _paper((10.1, 49.0, 2832)),
        "beta2 0.9",
    ),
    Variant(
        "beta2-0999",
        "3",
        "AdamW beta2 0.999",
        _train(lambda m, t: {"beta2": 0.999}),
        _paper((10.7, 20.9, 1855)),
        "beta2 0.999",
    ),
    Variant(
        "tokens-2x",
        "3",
        "twice the training tokens",
        _train(lambda m, t: {"total_tokens": t.total_tokens * 2}),
        _paper((9.5, 63.3, 1848)),
        "200B tokens",
    ),
    # Table 4: FFN
    Variant(
        "ffn-gelu",
        "4",
        "GeLU FFN, 1.5x hidden width",
        lambda m, t: ({"ffn_type": "gelu", "d_ffn": int(round(1.5 * m.d_ffn))}, {}),
        _paper((10.1, 69.3, 3369)),
        "GeLU",
    ),
    Variant(
        "ffn-linear", "4", "linear FFN (one d x d map)", _model(ffn_type="linear"), _paper((12.5, 58.9, 688)), "Linear"
    ),
    Variant(
        "ffn-attn-only",
        "4",
        "attention-only: a second attention replaces the FFN",
        _model(ffn_type="attention"),
        _paper((10.8, 73.9, 637)),
        "attention-only",
    ),
    Variant("ffn-none", "4", "no FFN at all (not in the paper)", _model(ffn_type="none"), None, ""),
    # Table 5: normalization
    Variant(
        "norm-sandwich",
        "5",
        "sandwich norm: x + N(f(N(x)))",
        _model(norm="sandwich"),
        _paper((9.8, 44.7, 520)),
        "sandwich",
    ),
    Variant(
        "norm-sandwich-qk",
        "5",
        "sandwich norm + QK-norm (literal reading)",
        _model(norm="sandwich", qk_norm=True),
        _paper((10.0, 42.0, 92)),
        "sandwich + QK-norm",
    ),
    Variant(
        "norm-qk-output",
        "5",
        "QK-norm + output norm, no input norm (official code of that row)",
        _model(norm="output", qk_norm=True),
        _paper((10.0, 42.0, 92)),
        "sandwich + QK-norm",
    ),
    Variant(
        "norm-dyt",
        "5",
        "DynamicTanh instead of RMSNorm in the blocks",
        _model(norm_type="dyt"),
        _paper((10.0, 61.0, 153)),
        "DynamicTanh",
    ),
    # Table 7: gated attention
    Variant(
        "gate-cond-channel",
        "7",
        "conditional gate per channel",
        _gate("conditional", "channel"),
        _paper((10.0, 4.5, 202)),
        "conditional, channel",
    ),
    Variant(
        "gate-cond-head",
        "7",
        "conditional gate per head",
        _gate("conditional", "head"),
        _paper((10.1, 6.4, 186)),
        "conditional, head",
    ),
    Variant(
        "gate-cond-single",
        "7",
        "conditional single gate",
        _gate("conditional", "single"),
        _paper((10.2, 31.2, 316)),
        "conditional, single",
    ),
    Variant(
        "gate-uncond-channel",
        "7",
        "learned constant gate per channel",
        _gate("unconditional", "channel"),
        _paper((10.1, 42.2, 1922)),
        "unconditional, channel",
    ),
    Variant(
        "gate-uncond-head",
        "7",
        "learned constant gate per head",
        _gate("unconditional", "head"),
        _paper((10.1, 41.3, 1884)),
        "unconditional, head",
    ),
    Variant(
        "gate-uncond-single",
        "7",
        "learned constant single gate",
        _gate("unconditional", "single"),
        _paper((10.2, 44.3, 1797)),
        "unconditional, single",
    ),
    Variant(
        "gate-positional",
        "7",
        "learned constant gate per (position, channel)",
        _gate("positional", "channel"),
        _paper((10.1, 41.1, 1755)),
        "positional",
    ),
    Variant(
        "gate-embedding",
        "7",
        "gate from the token embedding, per channel",
        _gate("embedding", "channel"),
        _paper((10.0, 31.1, 1966)),
        "token-embedding",
    ),
    # Table 8: context length and loss positions (paper baseline: 4096 tokens, loss on all)
    Variant("seq-div16", "8", "context / 16, loss on all positions", _seq(1 / 16), _paper((12.4, 42.1, 5411)), "1/256"),
    Variant("seq-div4", "8", "context / 4, loss on all positions", _seq(1 / 4), _paper((10.6, 46.3, 4442)), "1/1024"),
    Variant("lossfrom-q1", "8", "loss only from T/4 on", _seq(1, 1 / 4), _paper((10.1, 13.0, 38470)), "1024/4096"),
    Variant(
        "lossfrom-q1-long",
        "8",
        "context 5T/4, loss from T/4 on",
        _seq(5 / 4, 1 / 4),
        _paper((10.1, 8.0, 42365)),
        "1024/5120",
    ),
    Variant("lossfrom-half", "8", "loss only from T/2 on", _seq(1, 1 / 2), _paper((10.6, 1.2, 7193)), "2048/4096"),
    Variant(
        "lossfrom-half-long",
        "8",
        "context 3T/2, loss from T/2 on",
        _seq(3 / 2, 1 / 2),
        _paper((10.0, 5.8, 30634)),
        "2048/6144",
    ),
]

# Sink remedies, each one switch (table "remedies"); the literature's numbers where one is published
GUO_2024 = "Guo et al. 2024 (Active-Dormant Attention Heads, Bigram-Backcopy)"
REMEDIES: list[Variant] = [
    Variant(
        "sink-logit",
        "remedies",
        "a learned logit per head joins the softmax and is dropped afterwards",
        _model(sink_logit=True),
        _literature(),
        "gpt-oss (OpenAI 2025): learned per-head attention sink; no sink ratio published",
    ),
    Variant(
        "softmax1",
        "remedies",
        "softmax with an extra 1 in the denominator (off-by-one)",
        _model(attention="softmax1"),
        _literature(),
        "Miller 2023, 'Attention is off by one' (a sink logit fixed at 0); no trained number published",
    ),
    Variant(
        "sigmoid-attn",
        "remedies",
        "sigmoid attention without normalisation, no bias (Gu et al.'s kernel)",
        _model(attention="sigmoid"),
        _literature(sink_ratio=2.46),
        "Gu et al. 2025, 1B: sigmoid without normalisation, sink 2.46 % vs 45.11 % with softmax",
    ),
    Variant(
        "sigmoid-attn-logt",
        "remedies",
        "sigmoid attention without normalisation, bias -log(T) (T: the training context)",
        lambda m, t: ({"attention": "sigmoid", "sigmoid_bias": -math.log(t.seq_len)}, {}),
        _literature(),
        "Ramapuram et al. 2024's bias -log(T) on Gu et al.'s kernel; no sink ratio published",
    ),
    Variant(
        "relu-attn",
        "remedies",
        "ReLU attention without normalisation: relu(s) / (number of keys seen)",
        _model(attention="relu"),
        _literature(),
        f"{GUO_2024}: ReLU attention removes the active-dormant sink (no ratio published)",
    ),
    Variant(
        "kv-bias",
        "remedies",
        "a learned key and value per head that every query sees (a slot that is not the first token)",
        _model(kv_bias=True),
        _literature(),
        "Sun et al. 2024, Gu et al. 2025: learnable key/value biases take the sink off the first token",
    ),
    Variant(
        "sgd",
        "remedies",
        "SGD (momentum 0.9) instead of AdamW, 10x the learning rate, the same decay per step (lr x wd)",
        _sgd(10),
        _literature(),
        f"{GUO_2024}: SGD instead of Adam, lr 10x Adam's as in their code (no ratio published)",
    ),
    Variant(
        "sgd-100x",
        "remedies",
        "SGD (momentum 0.9) at 100x the learning rate, the same decay per step (lr x wd)",
        _sgd(100),
        _literature(),
        "SGD at the smallest of 10x / 33x / 100x the learning rate that reaches AdamW's perplexity in our budget",
    ),
    Variant(
        "norm-post",
        "remedies",
        "true post-norm: x = N(x + f(x)) after every block",
        _model(norm="post"),
        _literature(),
        "post-norm (the original Transformer's); no sink ratio published",
    ),
    Variant(
        "gated-attn",
        "remedies",
        "conditional output gate per channel (Table 7's gate-cond-channel)",
        _gate("conditional", "channel"),
        _literature(ppl=10.0, sink_ratio=4.5, spike=202.0, key0_mass=0.048),
        "paper Table 7 (conditional, channel): sink 4.5 %, spike 202; Qiu et al. 2025, 1B: "
        "first-token attention 46.7 % -> 4.8 %, max activation 1053 -> 94",
    ),
    Variant(
        "gated-attn-head",
        "remedies",
        "conditional output gate per head (Table 7's gate-cond-head)",
        _gate("conditional", "head"),
        _literature(ppl=10.1, sink_ratio=6.4, spike=186.0),
        "paper Table 7 (conditional, head)",
    ),
]
STATIC += REMEDIES
REGISTRY = {v.name: v for v in STATIC}


def _ratio_row(table: dict, paper_value: float):
    key = int(round(paper_value))
    return table.get(key) if abs(paper_value - key) < 1e-9 else None


def parametric(name: str, base_model: ModelConfig) -> Variant | None:
    """Head sweeps (Table 6): dhead-D (fixed heads), nhead-N (fixed d_head), heads-NxD (any, fixed width)."""
    if m := re.fullmatch(r"dhead-(\d+)", name):
        d = int(m[1])
        row = _ratio_row(PAPER_DHEAD, PAPER_D_HEAD * d / base_model.d_head)
        return Variant(
            name,
            "6",
            f"d_head {d} at {base_model.n_heads} heads",
            _model(d_head=d),
            _paper(row),
            f"d_head {round(PAPER_D_HEAD * d / base_model.d_head)}, N_head 32" if row else "",
        )
    if m := re.fullmatch(r"nhead-(\d+)", name):
        n = int(m[1])
        row = _ratio_row(PAPER_NHEAD, PAPER_N_HEADS * n / base_model.n_heads)
        return Variant(
            name,
            "6",
            f"{n} heads at d_head {base_model.d_head}",
            _model(n_heads=n),
            _paper(row),
            f"N_head {round(PAPER_N_HEADS * n / base_model.n_heads)}, d_head 128" if row else "",
        )
    if m := re.fullmatch(r"heads-(\d+)x(\d+)", name):
        n, d = int(m[1]), int(m[2])
        fixed_width = n * d == base_model.n_heads * base_model.d_head
        row = _ratio_row(PAPER_FIXED_WIDTH, PAPER_N_HEADS * n / base_model.n_heads) if fixed_width else None
        return Variant(
            name,
            "6",
            f"{n} heads x d_head {d}",
            _model(n_heads=n, d_head=d),
            _paper(row),
            f"fixed width {round(PAPER_N_HEADS * n / base_model.n_heads)}/{round(4096 * base_model.n_heads / (PAPER_N_HEADS * n))}"
            if row
            else "",
        )
    return None


class UnknownVariant(KeyError):
    """A variant name that is neither registered nor parametric; its message lists the known ones."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


def known_variants() -> str:
    """The registered names grouped by paper table, and the parametric patterns (for error messages)."""
    groups = {}
    for v in STATIC:
        groups.setdefault(v.table, []).append(v.name)
    parts = [f"Table {t}: {', '.join(names)}" if t else ", ".join(names) for t, names in groups.items()]
    return "; ".join(parts) + "; Table 6, parametric: dhead-D (d_head D), nhead-N (N heads), heads-NxD"


def get_variant(name: str, base_model: ModelConfig) -> Variant:
    if not VARIANT_NAME.match(name):
        raise ValueError(f"variant name {name!r} must match {VARIANT_NAME.pattern}")
    variant = REGISTRY.get(name) or parametric(name, base_model)
    if variant is None:
        raise UnknownVariant(f"unknown variant {name!r}; known: {known_variants()}")
    return variant


def baseline_configs(ablation_cfg: dict) -> tuple[ModelConfig, TrainConfig]:
    """Baseline configs from an `ablations:` section (keys `baseline.model`, `baseline.train`, `eval`)."""
    baseline = ablation_cfg.get("baseline", {})
    train = dict(baseline.get("train", {}))
    for key, value in ablation_cfg.get("eval", {}).items():
        train[f"eval_{key}" if not key.startswith("eval_") and key != "sink_eps" else key] = value
    train_cfg = TrainConfig.from_dict(train)
    model = dict(baseline.get("model", {}))
    model.setdefault("max_seq_len", train_cfg.seq_len)
    return ModelConfig.from_dict(model), train_cfg


def resolve(ablation_cfg: dict, name: str) -> tuple[ModelConfig, TrainConfig, Variant]:
    """The model and train configs of variant `name`: the baseline with the variant's diff applied."""
    base_model, base_train = baseline_configs(ablation_cfg)
    variant = get_variant(name, base_model)
    model_over, train_over = variant.diff(base_model, base_train)
    return replace(base_model, **model_over), replace(base_train, **train_over), variant


def seeds(ablation_cfg: dict) -> list[int]:
    """The training seeds every variant runs with: `ablations.seeds`, else the baseline's train seed.

    A seed sets the model's initialization and the order of the training batches (train.seed); the
    data themselves (corpus split, synthetic language) stay those of `ablations.data`.
    """
    configured = ablation_cfg.get("seeds")
    if configured:
        return [int(s) for s in configured]
    return [int(ablation_cfg.get("baseline", {}).get("train", {}).get("seed", TrainConfig.seed))]


def check_ablations(ablation_cfg: dict) -> None:
    """Every problem of an `ablations:` section that the schema cannot see, raised at once (workflow start-up).

    Each variant must resolve (unknown names list the known ones) into valid configs: loss positions
    inside the sequence, a context the model's RoPE table covers, a gate only where there is
    attention; the synthetic language's spec must be valid; seeds must be distinct.
    """
    if not ablation_cfg:
        return
    problems = []
    data = ablation_cfg.get("data", {})
    if data.get("source") == "bigram_backcopy":
        from .synthetic import BigramBackcopy  # numpy only

        try:
            BigramBackcopy.from_dict(data.get("bigram_backcopy", {}))
        except (TypeError, ValueError) as err:
            problems.append(f"ablations.data.bigram_backcopy: {err}")
    try:
        baseline_configs(ablation_cfg)
    except (TypeError, ValueError) as err:
        problems.append(f"ablations.baseline: {err}")
    else:
        for name in ablation_cfg.get("variants", []):
            try:
                model_cfg, train_cfg, _ = resolve(ablation_cfg, name)
            except (KeyError, TypeError, ValueError) as err:
                problems.append(f"ablations.variants: {name}: {err}")
                continue
            if model_cfg.max_seq_len < train_cfg.seq_len:
                problems.append(
                    f"ablations.variants: {name}: seq_len {train_cfg.seq_len} exceeds the model's max_seq_len "
                    f"{model_cfg.max_seq_len}"
                )
    configured = ablation_cfg.get("seeds") or []
    if len(set(configured)) != len(configured):
        problems.append(f"ablations.seeds: {configured} repeats a seed")
    if problems:
        raise ValueError("invalid ablations configuration:\n  - " + "\n  - ".join(problems))


def sweep_names(prefix: str, values) -> list[str]:
    """Variant names of a sweep, e.g. sweep_names('dhead', [8, 16]) -> ['dhead-8', 'dhead-16']."""
    return [f"{prefix}-{v}" for v in values]
