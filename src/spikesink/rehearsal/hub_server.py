"""A local stand-in for the Hugging Face hub: the endpoints that `huggingface_hub.snapshot_download`
and `hf_hub_download` call, served over HTTP on 127.0.0.1 from a folder of published repositories.

Point the real client at it with `HF_ENDPOINT=<hub.url>` (or a model entry's `endpoint:`) and
every hub path of the acquisition runs for real: revision resolution, the tree listing, HEAD
metadata (ETag, X-Repo-Commit, X-Linked-Etag/-Size), downloads with `Range` resume, the error
codes the client maps to exceptions (GatedRepo, RevisionNotFound, EntryNotFound, RepoNotFound).
Faults can be injected per file (a connection cut after N bytes, a 5xx, a stall) to rehearse
interrupted downloads; every request is logged for tests to assert on.

Layout of the folder (written by `LocalHub.publish`, read on every request, so a separate
server process serves what a builder published):

    <root>/<org>/<name>/repo.json     gated flag, refs {branch: commit}, commits {commit: {path: meta}}
    <root>/<org>/<name>/blobs/<sha256> file contents, by hash
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from spikesink.io import atomic_path, read_json, write_json

# Files the hub stores in LFS (the rest are plain git blobs): what decides ETag = sha256 vs git sha1
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.model", "*.gguf")
LFS_MIN_SIZE = 10 * 1024 * 1024
CHUNK = 1 << 16
COMMIT_RE = re.compile(r"[0-9a-f]{40}")


def git_blob_sha1(data_or_path: bytes | Path) -> str:
    """The git object id of a file (what the hub's tree calls `oid` for non-LFS files)."""
    digest = hashlib.sha1()
    if isinstance(data_or_path, bytes):
        digest.update(b"blob %d\0" % len(data_or_path) + data_or_path)
        return digest.hexdigest()
    digest.update(b"blob %d\0" % data_or_path.stat().st_size)
    with open(data_or_path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_lfs(path: str, size: int) -> bool:
    return size >= LFS_MIN_SIZE or any(fnmatch.fnmatchcase(Path(path).name, p) for p in LFS_PATTERNS)


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file the repository's git tree holds in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class Fault:
    """What the server does to the next `times` GETs of files matching `pattern` (fnmatch on the path
    in the repository):

    * `cut_after`: send that many bytes of the body, then drop the connection (with `stall`: hold
      it open until `release` is set, a hung transfer); `reached` is set at that point;
    * `status`: answer it (e.g. 503) instead of the file;
    * `truncate`: announce and send that many bytes fewer than the file has (a short, clean answer);
    * `corrupt`: flip one byte of the body (what a broken proxy or disk would serve).
    """

    pattern: str
    cut_after: int | None = None
    status: int | None = None
    stall: bool = False
    truncate: int = 0
    corrupt: bool = False
    times: int = 1
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    authorized: bool
    status: int = 0
    body_bytes: int = 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # a client that hangs up mid-transfer (a killed download) is part of the rehearsal, not an error
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LocalHub:
    """A hub on 127.0.0.1 serving the repositories published under `root`.

    `tokens` maps an access token to the gated repositories it may read ("*": all). Use as a
    context manager (or start/stop); `url` is the endpoint to give the client.
    """

    def __init__(self, root: str | os.PathLike, tokens: Mapping[str, Iterable[str] | str] | None = None, port: int = 0):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.tokens = {t: (repos if repos == "*" else set(repos)) for t, repos in (tokens or {}).items()}
        self.faults: list[Fault] = []
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- publishing

    def publish(
        self, repo_id: str, files: Mapping[str, bytes | str | os.PathLike], branch: str = "main", gated: bool = False
    ) -> str:
        """Commit `files` ({path in repo: bytes or a file to copy}) as the new head of `branch`; return
        the commit hash. The hash is derived from the parent and the contents, like git's."""
        repo_dir = self.root / repo_id
        (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
        state = self._repo_state(repo_id) or {"gated": gated, "refs": {}, "commits": {}}
        state["gated"] = bool(gated)
        listing = {}
        for path, content in sorted(files.items()):
            meta = self._store_blob(repo_dir, content)
            listing[path] = meta | {"lfs": is_lfs(path, meta["size"])}
        parent = state["refs"].get(branch, "")
        commit = hashlib.sha1(json.dumps([parent, listing], sort_keys=True).encode()).hexdigest()
        state["commits"][commit] = listing
        state["refs"][branch] = commit
        write_json(repo_dir / "repo.json", state)
        return commit

    @staticmethod
    def _store_blob(repo_dir: Path, content: bytes | str | os.PathLike) -> dict:
        if isinstance(content, bytes):
            sha256, size, git_sha1 = hashlib.sha256(content).hexdigest(), len(content), git_blob_sha1(content)
            target = repo_dir / "blobs" / sha256
            if not target.exists():
                with atomic_path(target) as tmp:
                    tmp.write_bytes(content)
        else:
            source = Path(content)
            sha256, size, git_sha1 = file_sha256(source), source.stat().st_size, git_blob_sha1(source)
            target = repo_dir / "blobs" / sha256
            if not target.exists():
                with atomic_path(target) as tmp:
                    try:
                        os.link(source, tmp)
                    except OSError:
                        shutil.copyfile(source, tmp)
        return {"sha256": sha256, "size": size, "git_sha1": git_sha1}

    def _repo_state(self, repo_id: str) -> dict | None:
        path = self.root / repo_id / "repo.json"
        return read_json(path) if path.is_file() else None

    def blob_path(self, repo_id: str, commit: str, path: str) -> Path:
        return self.root / repo_id / "blobs" / self._repo_state(repo_id)["commits"][commit][path]["sha256"]

    # ---------------------------------------------------------------- faults and the request log

    def inject(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fnmatch.fnmatchcase(path, fault.pattern):
                    fault.times -= 1
                    return fault
        return None

    def _log(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def downloads(self, pattern: str = "*") -> list[Request]:
        """GET requests of repository files (resolve URLs) whose path in the repository matches."""
        with self._lock:
            return [
                r
                for r in self.requests
                if r.method == "GET"
                and "/resolve/" in r.path
                and fnmatch.fnmatchcase(r.path.split("/", 5)[-1], pattern)
            ]

    # ---------------------------------------------------------------- serving

    @property
    def url(self) -> str:
        assert self._server is not None, "the hub is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> LocalHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = _Server(("127.0.0.1", self._port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            for fault in self.faults:
                fault.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    """One request against `hub`; routes as the real hub's URLs."""

    hub: LocalHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # the hub keeps its own request log
        pass

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    # ------------------------------------------------------------ routing

    def _route(self, head: bool) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        self.record = Request(self.command, url.path, self.headers.get("Range"), bool(self._token()))
        try:
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                self._api(parts[2] + "/" + parts[3], parts[4:], parse_qs(url.query))
            elif len(parts) >= 5 and parts[2] == "resolve":
                self._resolve(parts[0] + "/" + parts[1], parts[3], "/".join(parts[4:]), head)
            else:
                self._error(404, "NotFound", f"no such endpoint: {url.path}")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self.hub._log(self.record)

    def _state(self, repo_id: str) -> dict | None:
        state = self.hub._repo_state(repo_id)
        if state is None:
            # the hub answers 401 for a repository it cannot show: missing, or private without a token
            self._error(401, "RepoNotFound", "Repository not found")
        return state

    def _commit(self, repo_id: str, state: dict, revision: str) -> str | None:
        commit = state["refs"].get(revision) or (revision if revision in state["commits"] else None)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", repo_commit=None)
        return commit

    def _api(self, repo_id: str, rest: list[str], query: dict) -> None:
        state = self._state(repo_id)
        if state is None:
            return
        if not rest or rest[0] == "revision":
            commit = self._commit(repo_id, state, rest[1] if len(rest) > 1 else "main")
            if commit:
                self._json(self._model_info(repo_id, state, commit))
        elif rest[0] == "tree" and len(rest) >= 2:
            commit = self._commit(repo_id, state, rest[1])
            if commit:
                prefix = "/".join(rest[2:])
                recursive = query.get("recursive", ["false"])[0].lower() == "true"
                self._json(self._tree(state["commits"][commit], prefix, recursive))
        else:
            self._error(404, "NotFound", f"no such endpoint: /api/models/{repo_id}/{'/'.join(rest)}")

    @staticmethod
    def _model_info(repo_id: str, state: dict, commit: str) -> dict:
        return {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit,
            "private": False,
            "gated": "manual" if state["gated"] else False,
            "disabled": False,
            "tags": ["rehearsal"],
            "siblings": [{"rfilename": path} for path in sorted(state["commits"][commit])],
        }

    @staticmethod
    def _tree(listing: dict, prefix: str, recursive: bool) -> list[dict]:
        """Files (LFS ones with their sha256) and folders under `prefix`, as /api/models/.../tree lists them."""
        base = prefix.strip("/")
        folders, files = set(), []
        for path, meta in sorted(listing.items()):
            if base and not path.startswith(base + "/"):
                continue
            parents = path[len(base) + 1 if base else 0 :].split("/")[:-1]
            if parents and not recursive:
                folders.add("/".join(filter(None, [base, parents[0]])))
                continue
            folders.update("/".join(filter(None, [base, *parents[:n]])) for n in range(1, len(parents) + 1))
            entry = {"type": "file", "path": path, "size": meta["size"], "oid": meta["git_sha1"]}
            if meta["lfs"]:
                pointer = lfs_pointer(meta["sha256"], meta["size"])
                entry["oid"] = git_blob_sha1(pointer)
                entry["lfs"] = {"oid": meta["sha256"], "size": meta["size"], "pointerSize": len(pointer)}
            files.append(entry)
        dirs = [
            {"type": "directory", "path": f, "size": 0, "oid": hashlib.sha1(f.encode()).hexdigest()}
            for f in sorted(folders)
        ]
        return dirs + files

    def _resolve(self, repo_id: str, revision: str, path: str, head: bool) -> None:
        state = self._state(repo_id)
        if state is None:
            return
        if state["gated"] and not self._may_read(repo_id):
            token = self._token()
            message = f"Access to model {repo_id} is restricted" + (
                ". You must have access to it and be authenticated to access it. Please log in."
                if not token
                else " and you are not in the authorized list. Visit the repository to ask for access."
            )
            self._error(401 if not token else 403, "GatedRepo", message)
            return
        commit = self._commit(repo_id, state, revision)
        if commit is None:
            return
        meta = state["commits"][commit].get(path)
        if meta is None:
            self._error(404, "EntryNotFound", f'{path} does not exist on "{revision}"', repo_commit=commit)
            return
        blob = self.hub.root / repo_id / "blobs" / meta["sha256"]
        self._send_file(blob, meta, commit, path, head)

    # ------------------------------------------------------------ answers

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth.split(" ", 1)[1].strip() if auth.lower().startswith("bearer ") else None

    def _may_read(self, repo_id: str) -> bool:
        repos = self.hub.tokens.get(self._token() or "")
        return repos == "*" or (repos is not None and repo_id in repos)

    def _send_file(self, blob: Path, meta: dict, commit: str, path: str, head: bool) -> None:
        size = meta["size"]
        start = 0
        if (wanted := self.headers.get("Range")) and (match := re.fullmatch(r"bytes=(\d+)-(\d*)", wanted.strip())):
            start = int(match.group(1))
        fault = None if head else self.hub._take_fault(path)
        if fault is not None and fault.status:
            self._error(fault.status, "ServiceUnavailable", "the hub is down (injected fault)")
            return
        status = HTTPStatus.PARTIAL_CONTENT if start else HTTPStatus.OK
        body = size - start - (fault.truncate if fault is not None else 0)
        self.send_response(status)
        self.send_header("Content-Length", str(body))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("X-Repo-Commit", commit)
        if meta["lfs"]:
            self.send_header("ETag", f'"{git_blob_sha1(lfs_pointer(meta["sha256"], size))}"')
            self.send_header("X-Linked-Etag", f'"{meta["sha256"]}"')
            self.send_header("X-Linked-Size", str(size))
        else:
            self.send_header("ETag", f'"{meta["git_sha1"]}"')
        if start:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        self.record.status = int(status)
        if head:
            return
        limit = body if fault is None or fault.cut_after is None else min(fault.cut_after, body)
        with open(blob, "rb") as handle:
            handle.seek(start)
            while self.record.body_bytes < limit:
                chunk = handle.read(min(CHUNK, limit - self.record.body_bytes))
                if fault is not None and fault.corrupt and self.record.body_bytes == 0:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                self.wfile.write(chunk)
                self.record.body_bytes += len(chunk)
        if fault is not None and fault.cut_after is not None:
            self.wfile.flush()
            fault.reached.set()
            if fault.stall:  # hold the connection open mid-body, as a hung transfer
                fault.release.wait(timeout=600)
            # an abrupt end of the body: the client sees fewer bytes than Content-Length
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _json(self, payload) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.record.status = 200
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, repo_commit: str | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if repo_commit:
            self.send_header("X-Repo-Commit", repo_commit)
        self.end_headers()
        self.record.status = status
        if self.command != "HEAD":
            self.wfile.write(body)


def main(argv: list[str] | None = None) -> None:
    """`python -m spikesink.rehearsal.hub_server --root DIR`: serve DIR until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, type=Path, help="folder of published repositories")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--token", action="append", default=[], help="an access token that may read every gated repo")
    parser.add_argument("--url-file", type=Path, help="write the endpoint URL here once listening")
    args = parser.parse_args(argv)
    with LocalHub(args.root, {t: "*" for t in args.token}, port=args.port) as hub:
        if args.url_file:
            with atomic_path(args.url_file) as tmp:
                tmp.write_text(hub.url + "\n")
        print(f"local hub at {hub.url} serving {args.root}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
