"""The ablation configs as plain dataclasses: ModelConfig (the decoder, model.py) and TrainConfig
(the training run, train.py), and the strict from_dict they share.

Kept free of torch so that the workflow can resolve variant names into configs (variants.py) while
it builds its DAG without importing torch; tests/test_imports.py checks that. model.py and train.py
re-export these names, so `from spikesink.ablations.model import ModelConfig` keeps working.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

FFN_TYPES = ("swiglu", "gelu", "linear", "attention", "none")
NORMS = ("pre", "sandwich", "output", "post")  # where the norms sit (see model.Block)
NORM_TYPES = ("rmsnorm", "dyt")
GATES = ("none", "conditional", "unconditional", "positional", "embedding")
GATE_GRANULARITIES = ("channel", "head", "single")
ATTENTIONS = ("softmax", "softmax1", "sigmoid", "relu")  # how scores become weights (see model.attention_explicit)
OPTIMIZERS = ("adamw", "sgd")


def strict_from_dict(cls, values: dict, what: str):
    """Build dataclass `cls` from `values`, refusing keys it does not have (a typo must fail)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what} config keys: {', '.join(unknown)}")
    return cls(**values)


@dataclass
class ModelConfig:
    vocab_size: int = 4096  # tokenizer size (a small BPE trained on the corpus)
    max_seq_len: int = 256  # RoPE table length and positional-gate length
    d_model: int = 128  # residual stream width
    n_layers: int = 4  # decoder layers L; the model has 2L blocks
    n_heads: int = 4  # attention heads
    d_head: int = 32  # head dimension, independent of d_model: q/k/v project d_model -> n_heads*d_head
    d_ffn: int = 344  # FFN hidden width (SwiGLU ~ 8/3 d_model; the paper's GeLU variant uses 1.5x)
    ffn_type: str = "swiglu"  # swiglu | gelu | linear (one d x d map) | attention (attention-only) | none
    norm: str = "pre"  # pre: x + f(N(x)); sandwich: x + N(f(N(x))); output: x + N(f(x)); post: N(x + f(x))
    norm_type: str = "rmsnorm"  # rmsnorm | dyt (DynamicTanh: w * tanh(alpha x), replaces RMSNorm in blocks)
    qk_norm: bool = False  # RMSNorm on the full q and k projections (n_heads*d_head wide, as the official code)
    norm_eps: float = 1e-5  # RMSNorm epsilon
    dyt_alpha_attn: float = 0.8  # DynamicTanh alpha init before attention (official config)
    dyt_alpha_ffn: float = 0.2  # DynamicTanh alpha init before the FFN (official config)
    gate: str = "none"  # none | conditional | unconditional | positional | embedding
    gate_granularity: str = "channel"  # channel (n_heads*d_head) | head (n_heads) | single (1)
    # sink remedies (each one switch; model.attention_explicit computes every kind but plain softmax)
    attention: str = "softmax"  # softmax | softmax1 (+1 in the denominator) | sigmoid | relu (both unnormalised)
    sink_logit: bool = False  # a learned logit per head joins the softmax and is dropped afterwards (gpt-oss)
    kv_bias: bool = False  # a learned key and value per head that every query sees: a slot that is not a token
    sigmoid_bias: float = 0.0  # added to the scores before the sigmoid (Gu et al. 2025: 0; Ramapuram et al.: -log T)
    rope_theta: float = 10000.0  # RoPE base
    tie_embeddings: bool = False  # Llama unties input and output embeddings
    init_std: float = 0.02  # std of every projection matrix
    embed_init_std: float = 1.0  # std of the input embedding (official code; tied embeddings use the head's)

    def __post_init__(self) -> None:
        _check_choice("ffn_type", self.ffn_type, FFN_TYPES)
        _check_choice("norm", self.norm, NORMS)
        _check_choice("norm_type", self.norm_type, NORM_TYPES)
        _check_choice("gate", self.gate, GATES)
        _check_choice("gate_granularity", self.gate_granularity, GATE_GRANULARITIES)
        _check_choice("attention", self.attention, ATTENTIONS)
        if problems := self.conflicts():
            raise ValueError("; ".join(problems))
        if self.n_heads < 1:
            if self.gate != "none":
                raise ValueError(
                    f"gate={self.gate!r} gates the attention output, but n_heads={self.n_heads} leaves the model "
                    "without attention: use gate 'none' or at least one head"
                )
            raise ValueError(
                f"n_heads must be >= 1, got {self.n_heads}: an attention-free model has no sink to measure"
            )
        for name in ("vocab_size", "max_seq_len", "d_model", "n_layers", "d_head", "d_ffn"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_head % 2:
            raise ValueError(f"d_head must be even for RoPE, got {self.d_head}")

    def conflicts(self) -> list[str]:
        """Remedies that cannot be combined, each message naming both switches."""
        problems = []
        if self.sink_logit and self.attention != "softmax":
            why = (
                "already is a sink logit fixed at 0"
                if self.attention == "softmax1"
                else "has no normaliser for the logit to join"
            )
            problems.append(
                f"sink_logit=true cannot combine with attention={self.attention!r}: {self.attention} {why}; "
                "use one of the two"
            )
        if self.kv_bias and self.attention in ("sigmoid", "relu"):
            problems.append(
                f"kv_bias=true cannot combine with attention={self.attention!r}: the bias slot takes mass from the "
                f"tokens only under a normalised softmax, {self.attention} attention has no mass to move; use one of the two"
            )
        if self.sigmoid_bias != 0.0 and self.attention != "sigmoid":
            problems.append(
                f"sigmoid_bias={self.sigmoid_bias:g} cannot combine with attention={self.attention!r}: it is added "
                "before a sigmoid only; set attention: sigmoid or drop sigmoid_bias"
            )
        return problems

    @property
    def explicit_attention(self) -> bool:
        """Whether attention runs the explicit path (every kind but plain softmax, which stays on fused sdpa)."""
        return self.attention != "softmax" or self.sink_logit or self.kv_bias

    @property
    def has_sink_slot(self) -> bool:
        """Whether the softmax has a slot besides the tokens (softmax1's 1, a sink logit, a key/value bias)."""
        return self.attention == "softmax1" or self.sink_logit or self.kv_bias

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        return strict_from_dict(cls, values, "model")

    def to_dict(self) -> dict:
        return asdict(self)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r}; expected one of {', '.join(choices)}")


@dataclass
class TrainConfig:
    seed: int = 0  # model init, data order (batch of step s drawn from rng(seed, s))
    batch_size: int = 16  # sequences per step
    seq_len: int = 256  # tokens per sequence
    total_tokens: int = 4_000_000  # training length; steps = total_tokens // (batch_size * seq_len)
    lr: float = 1e-3  # peak learning rate (paper: 3e-4 at 7B; small models take more)
    min_lr_ratio: float = 0.1  # cosine decays to min_lr_ratio * lr
    warmup_frac: float = 0.04  # linear warm-up share of the steps (paper: 2000 of 50000)
    weight_decay: float = 0.1
    decay_all: bool = False  # True: decay every parameter (the official code's AdamW(model.parameters()))
    optimizer: str = "adamw"  # adamw | sgd (Guo et al. 2024: momentum beta1, decoupled decay as AdamW's; no beta2)
    beta1: float = 0.9  # AdamW beta1; SGD's momentum
    beta2: float = 0.95  # AdamW only
    grad_clip: float = 1.0
    loss_min_pos: int = 0  # loss on positions [loss_min_pos, loss_max_pos) (paper Table 8)
    loss_max_pos: int | None = None  # None: up to the end of the sequence
    bos: bool = False  # True: position 0 of every window is the <|endoftext|> token
    eval_every: int = 100  # steps between held-out evaluations in the curve (0: only at the end)
    eval_windows: int = 32  # held-out windows per evaluation (samples of the sink ratio)
    eval_batch_size: int = 8
    sink_eps: float = 0.3  # a head sinks on a sample when its mean attention on key 0 exceeds this
    checkpoint_every: int = 200  # steps between checkpoints (0: never)
    keep_checkpoint: bool = False  # keep <out>/checkpoint after a completed run
    log_every: int = 10  # steps between log lines / progress-bar updates
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    bf16: bool = True  # bf16 autocast on CUDA (statistics stay float32); ignored on CPU
    compile: bool = False  # torch.compile the training forward (CUDA)
    grad_checkpointing: bool = False  # recompute layer activations in backward (long contexts)
    threads: int | None = None  # torch CPU threads (None: leave as is)
    progress: bool = True  # tqdm progress bar

    def __post_init__(self) -> None:
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.optimizer == "sgd" and self.beta2 != TrainConfig.beta2:
            raise ValueError(
                f"optimizer='sgd' cannot combine with beta2={self.beta2:g}: beta2 is AdamW's second-moment decay, "
                f"SGD has none; keep beta2 at {TrainConfig.beta2:g} or use optimizer adamw"
            )
        for name in ("batch_size", "seq_len", "total_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        stop = self.seq_len if self.loss_max_pos is None else self.loss_max_pos
        if not 0 <= self.loss_min_pos < stop <= self.seq_len:
            raise ValueError(
                f"loss positions [{self.loss_min_pos}, {self.loss_max_pos}) lie outside the sequence of "
                f"{self.seq_len} tokens: need 0 <= loss_min_pos < loss_max_pos <= seq_len "
                "(loss_max_pos null = seq_len)"
            )

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        return strict_from_dict(cls, values, "train")

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def total_steps(self) -> int:
        return max(1, self.total_tokens // self.tokens_per_step)
