"""Hub acquisition with the real `huggingface_hub` client against a local hub (no network, no mocks).

`spikesink.rehearsal.hub_server.LocalHub` serves the endpoints snapshot_download and
hf_hub_download call (model info by revision, the tree, /resolve with ETag / X-Repo-Commit /
X-Linked-* headers and Range, the hub's error codes) on 127.0.0.1, from repositories published
here at pinned commits. Faults are injected in the server (a cut connection, a 503, a short or
corrupted body, a stalled transfer), never in the client. Subprocess tests (offline mode, a
killed download) point the client at the hub with HF_ENDPOINT, as a user would.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import tiny_config_dict

from spikesink.acquisition.hub import unpinned_models
from spikesink.acquisition.models import ModelSourceError, acquire_model
from spikesink.rehearsal.hub_server import Fault, LocalHub

REPO = "org/tiny-llama"
WEIGHTS = "model.safetensors"
# a 25 MB weights file: the client reads 10 MiB chunks, so a cut after 15 MB resumes mid-file
TINY = tiny_config_dict(num_hidden_layers=2, vocab_size=100_000, max_position_embeddings=64)
MIB = 1 << 20


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[str, Path]:
    """A Hugging Face model directory's files (random llama, byte tokenizer) plus what a hub repo
    also holds and the acquisition must not fetch (a pickle checkpoint, a README)."""
    root = tmp_path_factory.mktemp("hub_source")
    spec = {"source": "random", "model_type": "llama", "config": TINY, "seed": 1}
    acquire_model("src", spec, root / "src", root / "cache")
    (root / "src" / "manifest.json").unlink()
    (root / "pytorch_model.bin").write_bytes(b"a pickle: never downloaded")
    (root / "README.md").write_text("# tiny llama\n")
    files = {p.name: p for p in (root / "src").iterdir()}
    return files | {"pytorch_model.bin": root / "pytorch_model.bin", "README.md": root / "README.md"}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A running local hub; the environment holds no token and no offline switch of the caller."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with LocalHub(tmp_path / "hub", tokens={"hf_good": "*", "hf_other": []}) as server:
        yield server


def spec(hub: LocalHub, revision: str, repo_id: str = REPO, **extra) -> dict:
    return {"source": "hub", "repo_id": repo_id, "revision": revision, "endpoint": hub.url, **extra}


def leftovers(parent: Path, name: str) -> list[str]:
    """The acquired directory or its staged temporary, if any was left in `parent`."""
    return sorted(p.name for p in parent.iterdir() if p.name == name or p.name.startswith(f".{name}."))


def blobs(cache: Path, repo_id: str = REPO) -> list[str]:
    folder = cache / "hub" / f"models--{repo_id.replace('/', '--')}" / "blobs"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def logits(model_dir: Path) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([[1, 2, 3, 4]])).logits


def test_pinned_revision_downloads_only_model_files_and_verifies_them(hub, model_files, tmp_path):
    commit = hub.publish(REPO, model_files)
    manifest = acquire_model("m", spec(hub, commit), tmp_path / "m", tmp_path / "cache")
    origin = manifest["origin"]
    assert origin["commit"] == commit and origin["revision"] == commit and origin["revision_is_commit"]
    assert origin["endpoint"] == hub.url
    # every file checked against the hub's own hash and size (sha256 for LFS weights, git id otherwise)
    weights = hub.blob_path(REPO, commit, WEIGHTS)
    assert origin["hub_files"][WEIGHTS] == {"size": weights.stat().st_size, "sha256": weights.name}
    assert manifest["original_sha256"][WEIGHTS] == weights.name
    assert "git_sha1" in origin["hub_files"]["config.json"]
    # the pinned commit is what every file request named; the pickle and the README were never fetched
    fetched = {r.path.split("/resolve/")[1] for r in hub.downloads()}
    assert fetched and all(path.startswith(commit + "/") for path in fetched)
    assert not hub.downloads("pytorch_model.bin") and not hub.downloads("README.md")
    assert not (tmp_path / "m" / "pytorch_model.bin").exists()
    assert torch.equal(logits(tmp_path / "m"), logits(model_files[WEIGHTS].parent))
    assert unpinned_models({"m": manifest}) == {}


def test_a_branch_resolves_to_one_commit_and_is_named_as_unpinned(hub, model_files, tmp_path, caplog):
    first = hub.publish(REPO, model_files)
    with caplog.at_level(logging.WARNING, logger="spikesink.acquisition.hub"):
        manifest = acquire_model("m", spec(hub, "main"), tmp_path / "m1", tmp_path / "cache")
    assert manifest["origin"]["commit"] == first and not manifest["origin"]["revision_is_commit"]
    assert "models.m.revision = 'main' is not a commit hash" in caplog.text
    # only config.json is asked for by branch; the snapshot is then fetched by its commit
    by_branch = [r.path for r in hub.requests if "/resolve/main/" in r.path]
    assert by_branch and all(p.endswith("/config.json") for p in by_branch)
    warning = unpinned_models({"m": manifest})["m"]
    assert "'main'" in warning and first in warning and "models.m.revision" in warning

    # main moves: the same config now gets the new commit (and says so)
    second = hub.publish(REPO, {**model_files, "README.md": b"# retrained\n"})
    assert second != first
    moved = acquire_model("m", spec(hub, "main"), tmp_path / "m2", tmp_path / "cache")
    assert moved["origin"]["commit"] == second


def test_a_wrong_revision_names_the_key_and_leaves_nothing(hub, model_files, tmp_path):
    hub.publish(REPO, model_files)
    for revision in ("f" * 40, "no-such-branch"):
        with pytest.raises(ModelSourceError, match=rf"models\.m\.revision = '{revision}' does not exist in {REPO}"):
            acquire_model("m", spec(hub, revision), tmp_path / "m", tmp_path / "cache")
    with pytest.raises(ModelSourceError, match=r"models\.m\.repo_id = org/missing was not found"):
        acquire_model("m", spec(hub, "main", repo_id="org/missing"), tmp_path / "m", tmp_path / "cache")
    assert leftovers(tmp_path, "m") == []


def test_a_gated_repository_needs_hf_token(hub, model_files, tmp_path, monkeypatch):
    gated = "gated-org/tiny-llama"
    commit = hub.publish(gated, model_files, gated=True)
    # not declared gated in the config: the hub's 401 is what tells, and the message names HF_TOKEN
    with pytest.raises(ModelSourceError, match=r"models\.g\.repo_id = gated-org/tiny-llama is gated and no .*HF_TOKEN"):
        acquire_model("g", spec(hub, commit, repo_id=gated), tmp_path / "g", tmp_path / "cache")
    assert [r.status for r in hub.requests if "/resolve/" in r.path] == [401]
    monkeypatch.setenv("HF_TOKEN", "hf_other")
    with pytest.raises(ModelSourceError, match=r"token in HF_TOKEN has no access"):
        acquire_model("g", spec(hub, commit, repo_id=gated), tmp_path / "g", tmp_path / "cache")
    assert hub.requests[-1].status == 403
    assert leftovers(tmp_path, "g") == [] and not [b for b in blobs(tmp_path / "cache", gated) if b != "config.json"]

    monkeypatch.setenv("HF_TOKEN", "hf_good")
    manifest = acquire_model("g", spec(hub, commit, repo_id=gated), tmp_path / "g", tmp_path / "cache")
    assert manifest["origin"]["commit"] == commit
    assert all(r.authorized for r in hub.downloads())

    # declared gated (as meta-llama/* is) and no token: it fails before asking the hub anything
    monkeypatch.delenv("HF_TOKEN")
    asked = len(hub.requests)
    with pytest.raises(ModelSourceError, match=r"gated repository and no Hugging Face token .*export HF_TOKEN"):
        acquire_model("g", spec(hub, commit, repo_id=gated, gated=True), tmp_path / "g2", tmp_path / "cache2")
    assert len(hub.requests) == asked


def test_sha256_check_catches_bad_bytes_from_the_hub_and_in_the_cache(hub, model_files, tmp_path):
    commit = hub.publish(REPO, model_files)
    cache = tmp_path / "cache"
    sha = hub.blob_path(REPO, commit, WEIGHTS).name
    hub.inject(Fault(WEIGHTS, corrupt=True))  # right size, one byte flipped
    with pytest.raises(ModelSourceError, match=rf"{WEIGHTS} \(sha256 [0-9a-f]{{12}}\.\.\., the hub's {sha[:12]}"):
        acquire_model("m", spec(hub, commit), tmp_path / "m", cache)
    assert leftovers(tmp_path, "m") == [] and sha not in blobs(cache), "the bad copy must be deleted"
    acquire_model("m", spec(hub, commit), tmp_path / "m", cache)  # the next run downloads it again
    assert len(hub.downloads(WEIGHTS)) == 2

    # a cached blob altered after the download (bit rot, an edited cache): caught before it is used
    blob = next((cache / "hub").glob(f"models--*/blobs/{sha}"))
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(ModelSourceError, match="does not match the hub's hash; the bad copy was deleted"):
        acquire_model("m", spec(hub, commit), tmp_path / "again", cache)
    assert not blob.exists() and leftovers(tmp_path, "again") == []


def test_size_check_discards_a_short_download(hub, model_files, tmp_path):
    commit = hub.publish(REPO, model_files)
    hub.inject(Fault(WEIGHTS, truncate=1000))  # a clean answer 1,000 bytes shorter than the HEAD said
    with pytest.raises(ModelSourceError, match=r"models\.m\.repo_id = org/tiny-llama: a download of .* cut short"):
        acquire_model("m", spec(hub, commit), tmp_path / "m", tmp_path / "cache")
    left = blobs(tmp_path / "cache")
    assert hub.blob_path(REPO, commit, WEIGHTS).name not in left and not [b for b in left if "incomplete" in b]
    assert leftovers(tmp_path, "m") == []
    acquire_model("m", spec(hub, commit), tmp_path / "m", tmp_path / "cache")


def test_a_cut_connection_resumes_with_a_range_request(hub, model_files, tmp_path):
    commit = hub.publish(REPO, model_files)
    size = hub.blob_path(REPO, commit, WEIGHTS).stat().st_size
    assert size > 20 * MIB
    hub.inject(Fault(WEIGHTS, cut_after=15 * MIB))
    manifest = acquire_model("m", spec(hub, commit), tmp_path / "m", tmp_path / "cache")
    first, second = hub.downloads(WEIGHTS)
    assert first.range is None and first.body_bytes == 15 * MIB
    # the client kept the 10 MiB it had written and asked for the rest only
    assert second.range == f"bytes={10 * MIB}-" and second.status == 206 and second.body_bytes == size - 10 * MIB
    assert manifest["origin"]["hub_files"][WEIGHTS]["sha256"] == hub.blob_path(REPO, commit, WEIGHTS).name


def test_hub_down_midway_leaves_nothing_finished_and_the_next_run_fetches_the_rest(hub, model_files, tmp_path):
    commit = hub.publish(REPO, model_files)
    cache = tmp_path / "cache"
    hub.inject(Fault(WEIGHTS, cut_after=15 * MIB))
    hub.inject(Fault(WEIGHTS, status=503, times=5))  # the resume attempt finds the hub down
    with pytest.raises(ModelSourceError, match=r"the hub answered 503 .*run again later"):
        acquire_model("m", spec(hub, commit), tmp_path / "m", cache)
    assert leftovers(tmp_path, "m") == []
    left = blobs(cache)
    assert hub.blob_path(REPO, commit, WEIGHTS).name not in left, "no half file under its final name"
    assert not [b for b in left if b.endswith(".incomplete")], "the partial file is removed"
    done_before = {r.path for r in hub.downloads() if r.status == 200 and WEIGHTS not in r.path}

    for fault in hub.faults:
        fault.times = 0  # the hub is back
    asked = len(hub.requests)
    acquire_model("m", spec(hub, commit), tmp_path / "m", cache)
    again = {r.path for r in hub.requests[asked:] if r.method == "GET" and "/resolve/" in r.path}
    assert again == {f"/{REPO}/resolve/{commit}/{WEIGHTS}"}, "files finished by the first run are not fetched again"
    assert done_before


ACQUIRE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from spikesink.acquisition.models import ModelSourceError, acquire_model
    out = []
    for name, spec, target, cache in json.loads(sys.argv[1]):
        try:
            manifest = acquire_model(name, spec, Path(target), Path(cache))
            out.append({"commit": manifest["origin"]["commit"]})
        except ModelSourceError as error:
            out.append({"error": str(error)})
    print("RESULT " + json.dumps(out), flush=True)
    """
)


def acquire_in_subprocess(jobs: list, env: dict, **popen) -> subprocess.Popen:
    """acquire_model in a fresh interpreter: huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE at import."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))} | env
    return subprocess.Popen(
        [sys.executable, "-c", ACQUIRE, json.dumps(jobs)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def result_of(process: subprocess.Popen, timeout: float = 300) -> list[dict]:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-3000:]
    return json.loads(output.split("RESULT ", 1)[1])


@pytest.mark.slow
def test_offline_mode_uses_the_cache_and_names_hf_hub_offline(hub, model_files, tmp_path):
    commit = hub.publish(REPO, model_files)
    cache = tmp_path / "cache"
    acquire_model("m", spec(hub, commit), tmp_path / "online", cache)
    asked = len(hub.requests)
    by_env = {"source": "hub", "repo_id": REPO}  # the hub comes from HF_ENDPOINT, as a user sets it
    jobs = [
        ["m", by_env | {"revision": commit}, str(tmp_path / "pinned"), str(cache)],
        ["m", by_env | {"revision": "main"}, str(tmp_path / "branch"), str(cache)],
        ["m", by_env | {"revision": commit}, str(tmp_path / "uncached"), str(tmp_path / "empty-cache")],
    ]
    pinned, branch, uncached = result_of(
        acquire_in_subprocess(jobs, {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)})
    )
    assert pinned == {"commit": commit}
    assert "HF_HUB_OFFLINE is set" in branch["error"]  # offline, a branch resolves only if fetched by that name
    assert "HF_HUB_OFFLINE is set" in uncached["error"] and "empty-cache" in uncached["error"]
    assert len(hub.requests) == asked, "offline mode must not reach the hub"
    assert leftovers(tmp_path, "uncached") == []


@pytest.mark.slow
def test_a_killed_download_leaves_nothing_that_looks_finished(hub, model_files, tmp_path):
    """A power cut mid-transfer (SIGKILL while the hub is sending): no finished-looking file remains,
    and the next run downloads and verifies the model."""
    commit = hub.publish(REPO, model_files)
    cache = tmp_path / "cache"
    fault = hub.inject(Fault(WEIGHTS, cut_after=12 * MIB, stall=True))
    jobs = [["m", {"source": "hub", "repo_id": REPO, "revision": commit}, str(tmp_path / "m"), str(cache)]]
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path)}
    process = acquire_in_subprocess(jobs, env, start_new_session=True)
    try:
        assert fault.reached.wait(timeout=240), "the download never reached the cut"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        fault.release.set()
    # only the hidden staging folder of the killed process, never the model directory itself
    assert [p for p in leftovers(tmp_path, "m") if not (p.startswith(".m.") and p.endswith(".tmp"))] == []
    left = blobs(cache)
    assert hub.blob_path(REPO, commit, WEIGHTS).name not in left
    # transfers in flight are left under the client's temporary names, never read as finished blobs
    assert any(b.endswith(".incomplete") for b in left), left
    # and every file under a final name is whole: its bytes give its name (sha256 or git blob id)
    folder = next((cache / "hub").glob("models--*/blobs"))
    for name in (b for b in left if not b.endswith(".incomplete")):
        data = (folder / name).read_bytes()
        digest = hashlib.sha256(data) if len(name) == 64 else hashlib.sha1(b"blob %d\0" % len(data) + data)
        assert digest.hexdigest() == name

    assert result_of(acquire_in_subprocess(jobs, env)) == [{"commit": commit}]
    assert (tmp_path / "m" / WEIGHTS).stat().st_size == hub.blob_path(REPO, commit, WEIGHTS).stat().st_size
