"""Why delimiters spike: do their embeddings align with the first norm's gain? (a helper of rmsnorm_collapse)

The mechanism to test: a delimiter's embedding puts its energy on the channels the first layer's
attention-input norm amplifies, so the norm hands it an outsized magnitude and it attends strongly
to itself (the self-attention rows of this analysis).

Definition. The first layer's attention-input norm outputs g * n(x), n(x) = x / rms(x) (LayerNorm:
x centred first), for a token whose embedding row is x (the token embedding only: a family's scalar
embedding scale changes nothing here, learned position embeddings are left out). Its magnitude
relative to the gain vector's,

    a(x) = ||g * n(x)|| / ||g|| = sqrt( sum_i g_i^2 x_i^2 / ||x||^2  /  mean_i g_i^2 ),

is the gain-weighted root-mean-square of x's energy distribution over channels: 1 for a token whose
energy is spread independently of g (all gains 1: exactly 1), above 1 when x puts its energy on the
high-gain channels. We compare the delimiter ids (ids that are spike tokens at a position > 0 in
the prompts) with the ordinary ids (ids at positions > 0 that never spike there): the ratio of the
median a(x) of the delimiters to that of the ordinary ids; the claim's 95 % interval resamples the
ids of each group (claims.gain_ratio_estimate).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from spikesink.instrumentation.layout import model_layout


def gain_alignment(x: torch.Tensor, gain: torch.Tensor, center: bool = False) -> torch.Tensor:
    """a(x) = ||g * x / rms(x)|| / ||g|| per row of x (module docstring), float32."""
    x = x.float()
    if center:
        x = x - x.mean(dim=-1, keepdim=True)
    normed = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True).clamp_min(1e-30))
    g = gain.float().to(x.device)
    return (normed * g).norm(dim=-1) / g.norm().clamp_min(1e-30)


def delimiter_gain_alignment(model, input_ids: np.ndarray, delimiter_ids: Iterable[int]) -> dict:
    """a(x) of the delimiter ids and of the ordinary ids (positions > 0 of `input_ids`, never spiking).

    Returns {"norm", "delimiter_ids", "delimiter", "ordinary_ids", "ordinary"} (values by id, ids
    sorted), or {"not_applicable": reason} when no norm with a gain reads the embeddings.
    """
    layout = model_layout(model)
    norm = layout.layers[0].attn_input_norm
    if norm is None:
        return {"not_applicable": "no norm reads the embeddings in this family (norms sit on block outputs)"}
    gain, _ = layout.norm_gain(norm)
    if gain is None:
        return {"not_applicable": "the first attention-input norm has no gain"}
    delimiters = sorted({int(i) for i in delimiter_ids})
    later = np.unique(np.asarray(input_ids)[:, 1:])
    ordinary = sorted(set(int(i) for i in later) - set(delimiters))
    weight = model.get_input_embeddings().weight.detach()
    center = layout.adapter.norm_type == "layernorm"

    def values(ids):
        if not ids:
            return []
        rows = weight[torch.as_tensor(ids, device=weight.device)]
        return [float(v) for v in gain_alignment(rows, gain, center).cpu()]

    return {
        "norm": f"{layout.layers[0].path} attention input norm",
        "delimiter_ids": delimiters,
        "delimiter": values(delimiters),
        "ordinary_ids": ordinary,
        "ordinary": values(ordinary),
    }
