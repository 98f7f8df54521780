"""Evaluation text: acquire a corpus and split it into passages and sentences.

Why this shape: every analysis needs the same fixed, hash-pinned token batches. The
corpus is acquired once into ``passages.jsonl`` (one paragraph per line, in reading
order) plus a ``manifest.json`` with provenance and checksums; prompts are then sampled
deterministically from a seed (``spikesink.extraction.prompts``). The paper's prompts start at text starts, so every prompt
starts at the start of a passage, and the tokenizer's own special-token behaviour is kept
(Llama tokenizers prepend a BOS, Qwen/SmolLM2 ones do not), which decides what sits at
position 0, the position where spikes and sinks live.

Sources: ``janeausten`` (Debian's ``r-cran-janeaustenr``, decoded without R; offline
default, ~4 MB of English prose) and ``local`` (a directory of UTF-8 text files).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from spikesink.acquisition import rdata
from spikesink.io import atomic_path, sha256_file, write_json

JANEAUSTEN_PACKAGE = "r-cran-janeaustenr"
JANEAUSTEN_NOVELS = (
    "emma",
    "mansfieldpark",
    "northangerabbey",
    "persuasion",
    "prideprejudice",
    "sensesensibility",
)
DEFAULT_MIN_CHARS = 20

# Headings in Project Gutenberg style texts: "CHAPTER I", "Chapter 12", "VOLUME II", "BOOK 3".
_HEADING_RE = re.compile(r"^(chapter|volume|book|part|letter)\s+([ivxlcdm]+|\d+|[a-z]+)\b[.:]?\s*$", re.IGNORECASE)
_EMPHASIS_RE = re.compile(r"_([^_\n]+)_")  # _word_ marks italics in Gutenberg texts
_WHITESPACE_RE = re.compile(r"\s+")
_BLANK_SPLIT_RE = re.compile(r"\n[ \t\r\f\v]*\n")

# Sentence boundary candidates: terminal punctuation, optional closing quotes/brackets,
# whitespace, then something that can start a sentence (capital, digit, opening quote).
_SENTENCE_END_RE = re.compile(r"([.!?]+)([\"'\u2019\u201d)\]]*)\s+(?=[\"'\u2018\u201c(\[]*[A-Z0-9])")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr st messrs col capt gen lt sgt rev prof jr sr esq vs etc no vol ch fig e.g i.e viz cf ibid".split()
)


class CorpusError(ValueError):
    """The corpus cannot be acquired or does not hold what the configuration asks for."""


# ---------------------------------------------------------------------------- splitting


def normalise_whitespace(text: str) -> str:
    """Collapse runs of whitespace (line breaks included) into single spaces."""
    return _WHITESPACE_RE.sub(" ", text).strip()


def is_heading(paragraph: str) -> bool:
    """Chapter/volume headings and all-caps title lines carry no prose: drop them."""
    if _HEADING_RE.match(paragraph):
        return True
    return not any(ch.islower() for ch in paragraph)


def split_passages(
    lines_or_text: str | Sequence[str],
    min_chars: int = DEFAULT_MIN_CHARS,
    strip_emphasis: bool = True,
) -> list[str]:
    """Split text into paragraphs: blank-line separated, whitespace normalised.

    Accepts one string or a sequence of lines (an R character vector holds one line per
    element). Headings (see :func:`is_heading`) and paragraphs shorter than ``min_chars``
    are dropped: they are title-page debris, not running text. ``strip_emphasis`` turns
    Gutenberg's ``_italic_`` markup into plain words so underscores do not reach the
    tokenizer.
    """
    if isinstance(lines_or_text, str):
        text = lines_or_text
    else:
        text = "\n".join("" if line is None else line for line in lines_or_text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    passages = []
    for block in _BLANK_SPLIT_RE.split(text):
        paragraph = normalise_whitespace(block)
        if strip_emphasis:
            paragraph = _EMPHASIS_RE.sub(r"\1", paragraph)
        if len(paragraph) < min_chars or is_heading(paragraph):
            continue
        passages.append(paragraph)
    return passages


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences with a regex, keeping abbreviations like "Mr." intact.

    A boundary is terminal punctuation (plus closing quotes) followed by whitespace and a
    capital, digit or opening quote; it is rejected after a known abbreviation or a
    single-letter initial. Simple and deterministic, which is what the 'sentences'
    samples need; not a linguistic tokenizer.
    """
    text = normalise_whitespace(text)
    sentences = []
    start = 0
    for match in _SENTENCE_END_RE.finditer(text):
        if match.group(1) == ".":
            word = re.search(r"([A-Za-z][A-Za-z.]*)$", text[start : match.start()])
            if word:
                token = word.group(1).lower().rstrip(".")
                if token in _ABBREVIATIONS or len(token) == 1:
                    continue
        sentence = _balance_quotes(text[start : match.end(2)].strip())
        if sentence:
            sentences.append(sentence)
        start = match.end()
    tail = _balance_quotes(text[start:].strip())
    if tail:
        sentences.append(tail)
    return sentences


def _balance_quotes(sentence: str) -> str:
    """Drop a stray double quote left by a quotation that spans several sentences."""
    if sentence.count('"') % 2 == 1:
        if sentence.startswith('"'):
            return sentence[1:].lstrip()
        if sentence.endswith('"'):
            return sentence[:-1].rstrip()
        if sentence.count('"') == 1:
            return sentence.replace('"', "")
    return sentence


# ---------------------------------------------------------------------------- writing


def _passage_records(docs: dict[str, list[str]]) -> list[dict[str, Any]]:
    return [{"doc": doc, "index": i, "text": text} for doc, passages in docs.items() for i, text in enumerate(passages)]


def write_corpus(docs: dict[str, list[str]], out_dir: str | os.PathLike, provenance: dict[str, Any]) -> dict[str, Any]:
    """Write ``passages.jsonl`` then ``manifest.json`` (both atomic) and return the manifest.

    The manifest is written last, so its presence means the corpus is complete; it holds
    the sha256 of passages.jsonl so later stages can check what they read.
    """
    records = _passage_records(docs)
    if not records:
        raise CorpusError("the corpus holds no passages")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    passages_path = out / "passages.jsonl"
    with atomic_path(passages_path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    manifest = dict(provenance)
    manifest.update(
        {
            "n_docs": len(docs),
            "n_passages": len(records),
            "n_chars": sum(len(r["text"]) for r in records),
            "docs": {doc: {"n_passages": len(p), "n_chars": sum(len(t) for t in p)} for doc, p in docs.items()},
            "passages_file": passages_path.name,
            "passages_sha256": sha256_file(passages_path),
        }
    )
    write_json(out / "manifest.json", manifest)
    return manifest


def read_passages(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read ``passages.jsonl`` (a file, or the directory holding it) into a list of dicts."""
    path = Path(path)
    if path.is_dir():
        path = path / "passages.jsonl"
    if not path.is_file():
        raise CorpusError(f"passages file not found: {path} (run the corpus stage first)")
    records = []
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            if not {"doc", "index", "text"} <= record.keys():
                raise CorpusError(f"{path}:{lineno}: a passage needs doc, index and text")
            records.append(record)
    if not records:
        raise CorpusError(f"{path} holds no passages: the corpus is empty")
    return records


# ---------------------------------------------------------------------------- sources


def acquire_local_text(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    pattern: str = "*.txt",
    min_chars: int = DEFAULT_MIN_CHARS,
) -> dict[str, Any]:
    """Build the corpus from a directory of UTF-8 text files, one document per file.

    Documents are named by their path relative to ``path`` without the suffix and are
    read in sorted order, so the output does not depend on directory listing order.
    """
    root = Path(path)
    if not root.is_dir():
        raise CorpusError(f"corpus.path: directory {str(root)!r} does not exist")
    files = sorted(p for p in root.glob(pattern) if p.is_file())
    if not files:
        raise CorpusError(f"corpus.path: no files matching {pattern!r} in {str(root)!r}")
    docs: dict[str, list[str]] = {}
    file_info = {}
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise CorpusError(f"corpus.path: {file} is not UTF-8 text ({err})") from err
        name = file.relative_to(root).with_suffix("").as_posix()
        passages = split_passages(text, min_chars=min_chars)
        if passages:
            docs[name] = passages
        file_info[name] = {"sha256": sha256_file(file), "n_bytes": file.stat().st_size}
    if not docs:
        raise CorpusError(
            f"corpus.path: the {len(files)} file(s) matching {pattern!r} in {str(root)!r} "
            f"hold no passages of at least {min_chars} characters"
        )
    provenance = {
        "source": "local",
        "path": str(root.resolve()),
        "pattern": pattern,
        "files": file_info,
        "min_chars": min_chars,
    }
    return write_corpus(docs, out_dir, provenance)


def read_ar_members(data: bytes) -> dict[str, bytes]:
    """Members of a Unix ``ar`` archive (a .deb is one): name -> bytes.

    Format: the magic ``!<arch>\\n`` then, per member, a 60-byte ASCII header (name 16,
    mtime 12, uid 6, gid 6, mode 8, size 10, terminator ``\\x60\\n``) and the data padded
    to an even length. GNU ar ends names with ``/``; Debian's do not, both are accepted.
    """
    if not data.startswith(b"!<arch>\n"):
        raise CorpusError("not an ar archive (a .deb must start with '!<arch>')")
    members = {}
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        if header[58:60] != b"`\n":
            raise CorpusError(f"corrupt ar member header at offset {pos}")
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        start = pos + 60
        if start + size > len(data):
            raise CorpusError(f"ar member {name!r} is truncated")
        members[name] = data[start : start + size]
        pos = start + size + (size % 2)
    return members


def _deb_tar(members: dict[str, bytes], prefix: str) -> tarfile.TarFile:
    """Open ``data.tar.*`` / ``control.tar.*`` of a .deb (gz, xz, bz2 or uncompressed)."""
    for name, payload in members.items():
        if name.startswith(prefix):
            if name.endswith(".zst"):
                raise CorpusError(f"{name} is zstd-compressed, which Python's tarfile cannot read here")
            return tarfile.open(fileobj=io.BytesIO(payload), mode="r:*")
    raise CorpusError(f"the .deb holds no {prefix}* member (members: {sorted(members)})")


def parse_deb_control(deb: bytes) -> dict[str, str]:
    """The package's control fields (Package, Version, ...) read from control.tar.*."""
    with _deb_tar(read_ar_members(deb), "control.tar") as tar:
        member = next((m for m in tar.getmembers() if m.name.lstrip("./") == "control"), None)
        if member is None:
            raise CorpusError("the .deb has no control file")
        text = tar.extractfile(member).read().decode("utf-8")
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    return fields


def read_deb_files(deb: bytes, suffixes: Iterable[str]) -> dict[str, bytes]:
    """Files of the .deb's data archive whose paths end with one of ``suffixes``."""
    wanted = tuple(suffixes)
    found = {}
    with _deb_tar(read_ar_members(deb), "data.tar") as tar:
        for member in tar.getmembers():
            for suffix in wanted:
                if member.isfile() and member.name.endswith(suffix):
                    found[suffix] = tar.extractfile(member).read()
    missing = [s for s in wanted if s not in found]
    if missing:
        raise CorpusError(f"the .deb holds no file ending in {missing}")
    return found


def decode_janeausten_deb(deb: bytes) -> dict[str, list[str]]:
    """The six novels (name -> lines) from the bytes of the r-cran-janeaustenr .deb.

    The package keeps them as lazy-loaded data: ``janeaustenr/data/Rdata.rdx`` + ``.rdb``.
    """
    files = read_deb_files(deb, ("janeaustenr/data/Rdata.rdx", "janeaustenr/data/Rdata.rdb"))
    objects = rdata.decode_lazyload(files["janeaustenr/data/Rdata.rdx"], files["janeaustenr/data/Rdata.rdb"])
    missing = [name for name in JANEAUSTEN_NOVELS if name not in objects]
    if missing:
        raise CorpusError(f"novels {missing} missing from the package (it has {sorted(objects)})")
    return {
        name: ["" if line is None else line for line in rdata.as_character(objects[name], name)]
        for name in JANEAUSTEN_NOVELS
    }


def download_deb(package: str, dest: str | os.PathLike, version: str | None = None) -> Path:
    """``apt-get download`` one package into ``dest`` and return the .deb's path.

    Only the download is delegated to apt (it knows the mirrors and checks signatures);
    nothing is installed.
    """
    apt = shutil.which("apt-get")
    hint = (
        "run `apt-get update` (as root) if the package lists are missing, or set "
        "`corpus: {source: local, path: <directory of .txt files>}` in the config"
    )
    if apt is None:
        raise CorpusError(f"apt-get is not available to download {package}; {hint}")
    spec = package if version is None else f"{package}={version}"
    try:
        proc = subprocess.run([apt, "download", spec], cwd=dest, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as err:
        raise CorpusError(f"`apt-get download {spec}` timed out; {hint}") from err
    debs = sorted(Path(dest).glob(f"{package}_*.deb"))
    if proc.returncode != 0 or not debs:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise CorpusError(f"`apt-get download {spec}` failed (exit {proc.returncode}: {' | '.join(detail)}); " + hint)
    return debs[0]


def acquire_janeausten(
    out_dir: str | os.PathLike,
    min_chars: int = DEFAULT_MIN_CHARS,
    version: str | None = None,
    deb_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Jane Austen's six novels from Debian's r-cran-janeaustenr, without installing R.

    Downloads the .deb with apt-get (or uses ``deb_path``), records package, version and
    the .deb's sha256, decodes the R lazy-load database in Python and writes the passages
    and manifest into ``out_dir``.
    """
    with tempfile.TemporaryDirectory(prefix="janeaustenr.") as tmp:
        if deb_path is None:
            os.chmod(tmp, 0o755)
            deb_file = download_deb(JANEAUSTEN_PACKAGE, tmp, version=version)
        else:
            deb_file = Path(deb_path)
        deb = deb_file.read_bytes()
    control = parse_deb_control(deb)
    novels = decode_janeausten_deb(deb)
    docs = {name: split_passages(lines, min_chars=min_chars) for name, lines in novels.items()}
    provenance = {
        "source": "janeausten",
        "package": control.get("Package", JANEAUSTEN_PACKAGE),
        "version": control.get("Version"),
        "deb_filename": deb_file.name,
        "deb_sha256": hashlib.sha256(deb).hexdigest(),
        "raw": {
            name: {"n_lines": len(lines), "n_chars": sum(len(line) for line in lines)} for name, lines in novels.items()
        },
        "min_chars": min_chars,
    }
    return write_corpus(docs, out_dir, provenance)
