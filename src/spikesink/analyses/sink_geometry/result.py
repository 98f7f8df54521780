"""Sink-key subspace, query-key gaps and the t-SNE points of two heads (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from spikesink.analyses.unit import Result, stored


@dataclass(kw_only=True)
class SinkGeometry(Result):
    heads: object = stored("parquet")  # the chosen sink and non-sink head
    subspace: object = stored("parquet")  # spectra of sink vs non-sink keys (the sink head's with intervals)
    gaps: object = stored("parquet")  # query-key cosine and distance gaps
    per_prompt: object = stored("parquet")  # the gaps per (head, prompt): what the claims' intervals resample
    tsne: object = stored("parquet")  # 2-D points of q(n), k(n), k(s) per head
    bos_added: bool = False  # a BOS makes every key 0 the same vector: the rank claim says nothing then
