"""The instrumented model: a model with everything an analysis needs about it, built once.

Analyses receive an `InstrumentedModel` (the workflow's model jobs build one per job, a notebook
user builds one from a model already in memory) and never load or resolve anything themselves:
the Hugging Face model, its resolved layout (spikesink.instrumentation.layout), its tokenizer,
dtype and device, the spike rule, and where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from spikesink.config import default_rule
from spikesink.instrumentation.layout import ModelLayout, model_layout
from spikesink.settings import SpikeRule


@dataclass
class InstrumentedModel:
    model: nn.Module
    layout: ModelLayout
    tokenizer: object | None
    rule: SpikeRule
    name: str = "model"
    manifest: dict = field(default_factory=dict)  # provenance of an acquired directory

    @classmethod
    def wrap(
        cls, model: nn.Module, tokenizer=None, rule: SpikeRule | None = None, name: str | None = None
    ) -> InstrumentedModel:
        """An in-memory Hugging Face causal LM (and its tokenizer), checked against its family
        adapter (an unsupported family or a model whose modules do not match fails here)."""
        from spikesink.instrumentation.families import adapter_for

        adapter_for(model.config)  # unsupported families fail before any hook is placed
        model.eval()
        return cls(
            model=model,
            layout=model_layout(model),
            tokenizer=tokenizer,
            rule=rule or default_rule(),
            name=name or str(getattr(model.config, "_name_or_path", "") or model.config.model_type).rstrip("/"),
        )

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        dtype: str = "auto",
        device: str = "auto",
        rule: SpikeRule | None = None,
        verify: bool = False,
        name: str | None = None,
    ) -> InstrumentedModel:
        """An acquired model directory (resources/models/<name>: safetensors + manifest)."""
        from spikesink.instrumentation.loading import load_model

        model, tokenizer, manifest = load_model(model_dir, dtype=dtype, device=device, verify=verify)
        wrapped = cls.wrap(model, tokenizer, rule, name or Path(model_dir).name)
        wrapped.manifest = manifest
        return wrapped

    # ---- what analyses read ------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def n_blocks(self) -> int:
        return self.layout.n_blocks

    @property
    def pad_id(self) -> int:
        return (getattr(self.tokenizer, "pad_token_id", None) or 0) if self.tokenizer is not None else 0

    def max_positions(self) -> int:
        from spikesink.instrumentation.loading import max_positions

        return max_positions(self.model)

    def describe(self) -> dict:
        return self.layout.describe()
