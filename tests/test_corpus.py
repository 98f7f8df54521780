"""Corpus stage: splitting, local and Debian sources, prompt and sentence sampling.

Tokenizers are built here: byte-level BPE with no merges (one token per byte, so token
counts are known exactly), once with a BOS post-processor (Llama-like) and once without
(Qwen/SmolLM2-like). The Debian path is exercised offline on a .deb assembled in the
test; one slow test downloads the real package.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import struct
import tarfile
import zlib

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from spikesink.acquisition import corpus, rdata
from spikesink.extraction import prompts
from spikesink.io import sha256_file

# --------------------------------------------------------------------------- fixtures


def make_tokenizer(add_bos: bool) -> PreTrainedTokenizerFast:
    """One token per byte (ids 2..257), <s> = 0, </s> = 1."""
    vocab = {"<s>": 0, "</s>": 1}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="module")
def bos_tok():
    return make_tokenizer(add_bos=True)


@pytest.fixture(scope="module")
def plain_tok():
    return make_tokenizer(add_bos=False)


def make_passages(n_docs: int = 3, per_doc: int = 40, seed: int = 0) -> list[dict]:
    """Distinct ASCII passages of 60-160 characters, each starting with its own tag."""
    rng = np.random.default_rng(seed)
    words = "the a sink spike token attention layer norm channel block value query key".split()
    records = []
    for d in range(n_docs):
        for i in range(per_doc):
            body = " ".join(rng.choice(words, size=int(rng.integers(10, 25))))
            records.append({"doc": f"doc{d}", "index": i, "text": f"P{d}.{i}: {body}."})
    return records


def decode_text(tok, ids) -> str:
    return tok.decode([int(i) for i in ids], skip_special_tokens=True)


# --------------------------------------------------------------------------- splitting

NOVEL = """PRIDE AND PREJUDICE

By Jane Austen



Chapter 1


It is a truth universally acknowledged, that a single man in possession
of a good fortune, must be in want of a wife.

However little known the feelings or views of such a man may be on his
first entering a neighbourhood, this truth is _so_ well fixed.

"Yes."

CHAPTER II
\t
Mr. Bennet was among the earliest of those who waited on Mr. Bingley.
"""


def test_split_passages_drops_headings_and_short_lines():
    passages = corpus.split_passages(NOVEL)
    assert passages == [
        "It is a truth universally acknowledged, that a single man in possession "
        "of a good fortune, must be in want of a wife.",
        "However little known the feelings or views of such a man may be on his "
        "first entering a neighbourhood, this truth is so well fixed.",
        "Mr. Bennet was among the earliest of those who waited on Mr. Bingley.",
    ]
    # An R character vector (one line per element, NA as None) gives the same passages.
    lines = NOVEL.split("\n") + [None]
    assert corpus.split_passages(lines) == passages
    assert corpus.split_passages(NOVEL, min_chars=3) == ["By Jane Austen"] + passages[:2] + ['"Yes."'] + passages[2:]
    assert "_so_" in corpus.split_passages(NOVEL, strip_emphasis=False)[1]
    assert corpus.split_passages("") == []


def test_split_sentences_keeps_abbreviations_and_quotes():
    text = (
        'Mr. Darcy bowed. "Is it true?" asked Mrs. Bennet! She waited... J. Smith came at '
        '3 o\'clock.\nThen he left. "I shall go. You stay," said he.'
    )
    assert corpus.split_sentences(text) == [
        "Mr. Darcy bowed.",
        '"Is it true?" asked Mrs. Bennet!',
        "She waited...",
        "J. Smith came at 3 o'clock.",
        "Then he left.",
        "I shall go.",  # a quotation spanning two sentences: stray quotes are dropped
        "You stay, said he.",
    ]
    assert corpus.split_sentences("no terminal punctuation") == ["no terminal punctuation"]
    assert corpus.split_sentences("   ") == []


# --------------------------------------------------------------------------- local source


def test_acquire_local_text_writes_passages_and_manifest(tmp_path):
    src = tmp_path / "texts"
    src.mkdir()
    second = "Second document, first paragraph here.\n\nAnd a second one follows."
    (src / "b.txt").write_text(second, encoding="utf-8")
    (src / "a.txt").write_text(NOVEL, encoding="utf-8")
    (src / "notes.md").write_text("Not matched by the pattern at all, long enough.", encoding="utf-8")
    out = tmp_path / "corpus"
    manifest = corpus.acquire_local_text(src, out)

    records = corpus.read_passages(out)
    assert [r["doc"] for r in records] == ["a"] * 3 + ["b"] * 2
    assert [r["index"] for r in records] == [0, 1, 2, 0, 1]
    assert records[3]["text"] == "Second document, first paragraph here."
    assert manifest["source"] == "local" and manifest["n_passages"] == 5
    assert manifest["n_chars"] == sum(len(r["text"]) for r in records)
    assert manifest["passages_sha256"] == sha256_file(out / "passages.jsonl")
    assert manifest["files"]["a"]["sha256"] == sha256_file(src / "a.txt")
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert corpus.read_passages(out / "passages.jsonl") == records
    # rerunning replaces the outputs with identical bytes
    corpus.acquire_local_text(src, out)
    assert sha256_file(out / "passages.jsonl") == manifest["passages_sha256"]


def test_acquire_local_text_errors_name_the_config_key(tmp_path):
    with pytest.raises(corpus.CorpusError, match=r"corpus\.path.*does not exist"):
        corpus.acquire_local_text(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(corpus.CorpusError, match=r"corpus\.path.*no files matching"):
        corpus.acquire_local_text(tmp_path / "empty", tmp_path / "out")
    (tmp_path / "empty" / "x.txt").write_text("CHAPTER I\n\nshort\n\n", encoding="utf-8")
    with pytest.raises(corpus.CorpusError, match=r"corpus\.path.*hold no passages"):
        corpus.acquire_local_text(tmp_path / "empty", tmp_path / "out")
    (tmp_path / "empty" / "y.txt").write_bytes(b"caf\xe9 " * 20)
    with pytest.raises(corpus.CorpusError, match=r"corpus\.path.*not UTF-8"):
        corpus.acquire_local_text(tmp_path / "empty", tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.json").exists()
    with pytest.raises(corpus.CorpusError, match="passages file not found"):
        corpus.read_passages(tmp_path / "out")


# --------------------------------------------------------------------------- Debian source


def _i32(*values: int) -> bytes:
    return struct.pack(f">{len(values)}i", *values)


def _serialize_strsxp(values: list[str | None]) -> bytes:
    """R's XDR serialization (version 2) of a character vector."""
    out = b"X\n" + _i32(2, 0x040201, 0x020300, rdata.STRSXP, len(values))
    for v in values:
        if v is None:
            out += _i32(rdata.CHARSXP, -1)
        else:
            raw = v.encode("utf-8")
            out += _i32(rdata.CHARSXP | (rdata.UTF8_MASK << 12), len(raw)) + raw
    return out


def _lazyload_db(objects: dict[str, list[str]]) -> tuple[bytes, bytes]:
    """(rdx, rdb) laid out like R's makeLazyLoadDB (zlib blobs, gzip index)."""
    import gzip

    rdb = b""
    offsets = []
    for values in objects.values():
        payload = _serialize_strsxp(values)
        blob = struct.pack(">I", len(payload)) + zlib.compress(payload)
        offsets.append((len(rdb), len(blob)))
        rdb += blob
    names = _serialize_strsxp(list(objects))[2 + 12 :]
    symbol_names = _i32(rdata.SYMSXP, rdata.CHARSXP | (rdata.ASCII_MASK << 12), 5) + b"names"
    variables = _i32(rdata.VECSXP | (1 << 9), len(objects))
    variables += b"".join(_i32(rdata.INTSXP, 2, *o) for o in offsets)
    variables += _i32(rdata.LISTSXP | (1 << 10)) + symbol_names + names + _i32(rdata.NILVALUE_SXP)
    index = _i32(rdata.VECSXP | (1 << 9), 1) + variables
    index += _i32(rdata.LISTSXP | (1 << 10), (1 << 8) | rdata.REFSXP)
    index += _serialize_strsxp(["variables"])[14:] + _i32(rdata.NILVALUE_SXP)
    return gzip.compress(b"X\n" + _i32(2, 0x040201, 0x020300) + index), rdb


def _tar_xz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _ar(members: dict[str, bytes]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members.items():
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode("ascii")
        out += data + (b"\n" if len(data) % 2 else b"")
    return out


def make_fake_deb(novels: dict[str, list[str]]) -> bytes:
    rdx, rdb = _lazyload_db(novels)
    lib = "./usr/lib/R/site-library/janeaustenr/data/"
    control = b"Package: r-cran-janeaustenr\nVersion: 9.9-test\nDescription: fake\n multi-line\n"
    return _ar(
        {
            "debian-binary": b"2.0\n",
            "control.tar.xz": _tar_xz({"./control": control}),
            "data.tar.xz": _tar_xz({lib + "Rdata.rdx": rdx, lib + "Rdata.rdb": rdb}),
        }
    )


def test_acquire_janeausten_from_a_local_deb(tmp_path):
    novels = {
        name: [
            name.upper(),
            "",
            "CHAPTER 1",
            "",
            f"The first paragraph of {name}, over",
            "two lines.",
            "",
            f"Second {name} paragraph \u2014 na\u00efve.",
            None,
        ]
        for name in sorted(corpus.JANEAUSTEN_NOVELS)
    }
    deb = make_fake_deb(novels)
    assert set(corpus.read_ar_members(deb)) == {"debian-binary", "control.tar.xz", "data.tar.xz"}
    (tmp_path / "fake.deb").write_bytes(deb)
    manifest = corpus.acquire_janeausten(tmp_path / "out", deb_path=tmp_path / "fake.deb")
    assert manifest["package"] == "r-cran-janeaustenr" and manifest["version"] == "9.9-test"
    assert manifest["deb_sha256"] == hashlib.sha256(deb).hexdigest()
    assert set(manifest["docs"]) == set(corpus.JANEAUSTEN_NOVELS)
    records = corpus.read_passages(tmp_path / "out")
    assert len(records) == 12 == manifest["n_passages"]
    assert records[0] == {"doc": "emma", "index": 0, "text": "The first paragraph of emma, over two lines."}
    assert records[1]["text"] == "Second emma paragraph \u2014 na\u00efve."
    assert manifest["raw"]["emma"]["n_lines"] == 9


def test_broken_debs_fail_clearly(tmp_path):
    with pytest.raises(corpus.CorpusError, match="not an ar archive"):
        corpus.read_ar_members(b"PK\x03\x04")
    novels = {name: ["Some text that is long enough."] for name in corpus.JANEAUSTEN_NOVELS[:5]}
    with pytest.raises(corpus.CorpusError, match="sensesensibility"):
        corpus.decode_janeausten_deb(make_fake_deb(novels))
    no_data = _ar({"debian-binary": b"2.0\n", "control.tar.xz": _tar_xz({"./control": b"Package: x\n"})})
    with pytest.raises(corpus.CorpusError, match="data.tar"):
        corpus.decode_janeausten_deb(no_data)


def test_missing_apt_get_gives_actionable_error(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus.shutil, "which", lambda name: None)
    with pytest.raises(corpus.CorpusError, match=r"apt-get update.*source: local"):
        corpus.acquire_janeausten(tmp_path / "out")


@pytest.mark.slow
def test_acquire_real_janeausten(tmp_path):
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get is not available: cannot download the r-cran-janeaustenr .deb")
    manifest = corpus.acquire_janeausten(tmp_path)
    assert sorted(manifest["docs"]) == sorted(corpus.JANEAUSTEN_NOVELS)
    assert manifest["n_chars"] > 3_000_000
    assert all(info["n_chars"] > 300_000 for info in manifest["docs"].values())
    assert len(manifest["deb_sha256"]) == 64 and manifest["version"]
    records = corpus.read_passages(tmp_path)
    assert manifest["passages_sha256"] == sha256_file(tmp_path / "passages.jsonl")
    pride = [r["text"] for r in records if r["doc"] == "prideprejudice"]
    assert pride[0].startswith("It is a truth universally acknowledged")
    assert any("Emma Woodhouse, handsome, clever, and rich" in r["text"] for r in records)


# --------------------------------------------------------------------------- prompt sampling


@pytest.mark.parametrize("add_bos", [True, False])
def test_sample_prompts_shapes_starts_and_bos(add_bos, bos_tok, plain_tok):
    tok = bos_tok if add_bos else plain_tok
    passages = make_passages()
    seq_len = 300  # spans 2-5 passages of one document
    ids, meta = prompts.sample_prompts(passages, tok, n_prompts=12, seq_len=seq_len, seed=3)
    assert ids.shape == (12, seq_len) and ids.dtype == np.int64
    assert len(meta) == 12
    by_key = {(p["doc"], p["index"]): p for p in passages}
    spans = set()
    for row, m in zip(ids, meta):
        assert m["bos_added"] is add_bos
        assert m["first_token_id"] == row[0]
        assert bool(row[0] == tok.bos_token_id) is add_bos
        assert (row == tok.bos_token_id).sum() == int(add_bos)  # no BOS inside the text
        # the prompt is the passage and its successors joined by blank lines, cut to seq_len
        joined = "\n\n".join(by_key[(m["doc"], m["start_index"] + j)]["text"] for j in range(m["n_passages"]))
        assert joined.startswith(decode_text(tok, row))
        assert len(joined.encode()) >= seq_len - int(add_bos)
        assert "\n\n" in decode_text(tok, row)
        covered = {(m["doc"], m["start_index"] + j) for j in range(m["n_passages"])}
        assert not covered & spans  # distinct, non-overlapping starting passages
        spans |= covered


def test_sample_prompts_is_deterministic_in_the_seed(bos_tok):
    passages = make_passages()
    a, meta_a = prompts.sample_prompts(passages, bos_tok, 8, 128, seed=11)
    b, meta_b = prompts.sample_prompts(passages, bos_tok, 8, 128, seed=11)
    c, _ = prompts.sample_prompts(passages, bos_tok, 8, 128, seed=12)
    np.testing.assert_array_equal(a, b)
    assert meta_a == meta_b
    assert not np.array_equal(a, c)
    # input order of the passages does not matter, only (doc, index)
    shuffled = list(reversed(passages[:40])) + passages[40:]
    d, _ = prompts.sample_prompts(shuffled, bos_tok, 8, 128, seed=11)
    np.testing.assert_array_equal(a, d)


def test_prompts_do_not_cross_documents(plain_tok):
    long_doc = make_passages(n_docs=1, per_doc=30)
    short_doc = [{"doc": "short", "index": i, "text": f"Tiny passage {i} of short doc."} for i in range(3)]
    ids, meta = prompts.sample_prompts(short_doc + long_doc, plain_tok, 6, 400, seed=0)
    assert {m["doc"] for m in meta} == {"doc0"}
    assert ids.shape == (6, 400)


def test_sample_prompts_errors(bos_tok):
    passages = make_passages(n_docs=1, per_doc=10)
    with pytest.raises(corpus.CorpusError, match="empty"):
        prompts.sample_prompts([], bos_tok, 2, 16, seed=0)
    with pytest.raises(corpus.CorpusError, match=r"extraction\.seq_len = 4096.*2048"):
        prompts.sample_prompts(passages, bos_tok, 2, 4096, seed=0, max_positions=2048)
    with pytest.raises(corpus.CorpusError, match=r"not enough text for 20 prompts x 256"):
        prompts.sample_prompts(passages, bos_tok, 20, 256, seed=0)
    with pytest.raises(corpus.CorpusError, match="must be positive"):
        prompts.sample_prompts(passages, bos_tok, 0, 16, seed=0)
    # exactly at the limit is fine
    ids, _ = prompts.sample_prompts(passages, bos_tok, 1, 64, seed=0, max_positions=64)
    assert ids.shape == (1, 64)


# --------------------------------------------------------------------------- sentences


def test_sample_sentences():
    passages = [
        {"doc": "d", "index": i, "text": f"Sentence number {i} is here. Mr. Smith read item {i} aloud! Short."}
        for i in range(30)
    ]
    picks = prompts.sample_sentences(passages, 25, seed=5)
    assert len(picks) == 25 and len(set(picks)) == 25
    assert picks == prompts.sample_sentences(passages, 25, seed=5)
    assert picks != prompts.sample_sentences(passages, 25, seed=6)
    assert all(len(s) >= 20 for s in picks)  # "Short." is filtered out
    assert any(s.startswith("Mr. Smith read item") for s in picks)
    with pytest.raises(corpus.CorpusError, match="not enough sentences: asked for 61"):
        prompts.sample_sentences(passages, 61, seed=0)
    with pytest.raises(corpus.CorpusError, match="empty"):
        prompts.sample_sentences([], 1, seed=0)
