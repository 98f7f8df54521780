"""The R serialization reader, on hand-built byte strings and on bytes written by R itself.

Hand-built streams follow R's serialize.c layout word by word (XDR, big-endian); the
"written by R" fixtures are copied from the r-cran-janeaustenr 1.0.0-1 package, so the
decoder is checked against real R output without needing apt or R.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from spikesink.acquisition import rdata


def read_lazyload_db(base, names=None):
    """The on-disk pair base.rdx / base.rdb through rdata.decode_lazyload (the corpus reads the
    same two files from inside the .deb, in memory)."""
    base = Path(base)
    rdx, rdb = base.with_name(base.name + ".rdx"), base.with_name(base.name + ".rdb")
    for path in (rdx, rdb):
        if not path.is_file():
            raise FileNotFoundError(f"lazy-load database file missing: {path}")
    return rdata.decode_lazyload(rdx.read_bytes(), rdb.read_bytes(), names)


# --- low-level builders: one function per wire element of serialize.c ---------------


def i32(*values: int) -> bytes:
    return struct.pack(f">{len(values)}i", *values)


def flags(sexptype: int, levels: int = 0, obj: bool = False, attr: bool = False, tag: bool = False) -> bytes:
    word = sexptype | (levels << 12) | (obj << 8) | (attr << 9) | (tag << 10)
    return i32(word)


def header(version: int = 2) -> bytes:
    out = b"X\n" + i32(version, 0x040201, 0x020300 if version == 2 else 0x030500)
    if version == 3:
        out += i32(5) + b"UTF-8"
    return out


def charsxp(value: str | None, levels: int = rdata.ASCII_MASK, encoding: str = "utf-8") -> bytes:
    if value is None:
        return flags(rdata.CHARSXP) + i32(-1)
    raw = value.encode(encoding)
    return flags(rdata.CHARSXP, levels=levels) + i32(len(raw)) + raw


def symbol(name: str) -> bytes:
    return flags(rdata.SYMSXP) + charsxp(name)


def strsxp(*values: str | None, attr: bool = False) -> bytes:
    return flags(rdata.STRSXP, attr=attr) + i32(len(values)) + b"".join(charsxp(v) for v in values)


NIL = i32(rdata.NILVALUE_SXP)


def ref(index: int) -> bytes:
    return i32((index << 8) | rdata.REFSXP)


# --- hand-built streams --------------------------------------------------------------


def test_character_vector_with_na_and_encodings():
    utf8 = rdata.UTF8_MASK
    latin1 = rdata.LATIN1_MASK
    body = (
        flags(rdata.STRSXP)
        + i32(5)
        + charsxp("plain")
        + charsxp(None)
        + charsxp("caf\u00e9 \u2014 \u00a3", levels=utf8)
        + charsxp("na\u00efve", levels=latin1, encoding="latin-1")
        + charsxp("", levels=0)
    )
    value = rdata.unserialize(header() + body)
    assert isinstance(value, rdata.RVector) and value.rtype == "STRSXP"
    assert value.data == ["plain", None, "caf\u00e9 \u2014 \u00a3", "na\u00efve", ""]
    assert value.attributes == {}
    assert rdata.as_character(value) == value.data


def test_version3_header_and_numeric_vectors_with_na():
    ints = flags(rdata.INTSXP) + i32(3, 1, -(2**31), 7)
    value = rdata.unserialize(header(3) + ints)
    assert value.rtype == "INTSXP"
    np.testing.assert_array_equal(value.data, [1, rdata.NA_INTEGER, 7])

    na_real = struct.pack(">II", 0x7FF00000, rdata.R_NA_REAL_LOW_WORD)
    reals = flags(rdata.REALSXP) + i32(3) + struct.pack(">d", 2.5) + na_real + struct.pack(">d", float("nan"))
    value = rdata.unserialize(header(3) + reals)
    assert value.data[0] == 2.5
    assert rdata.is_na_real(value.data[1]) and not rdata.is_na_real(value.data[2])
    assert np.isnan(value.data[2])

    lgl = flags(rdata.LGLSXP) + i32(2, 1, 0)
    assert rdata.unserialize(header() + lgl).data.tolist() == [1, 0]


def test_named_nested_list_with_attributes_and_symbol_references():
    # structure(list(a = c("x", NA), b = list(first = 1L, second = "y")), class = "foo"):
    # elements are read before attributes, so `names` is first met in the inner list and
    # the outer list refers back to it (reference table: names = 1, class = 2).
    inner = flags(rdata.VECSXP, attr=True) + i32(2) + flags(rdata.INTSXP) + i32(1, 1) + strsxp("y")
    inner += flags(rdata.LISTSXP, tag=True) + symbol("names") + strsxp("first", "second") + NIL
    attrs = (
        flags(rdata.LISTSXP, tag=True)
        + ref(1)
        + strsxp("a", "b")
        + flags(rdata.LISTSXP, tag=True)
        + symbol("class")
        + strsxp("foo")
        + NIL
    )
    body = flags(rdata.VECSXP, obj=True, attr=True) + i32(2) + strsxp("x", None) + inner + attrs
    value = rdata.unserialize(header() + body)
    assert value.rtype == "VECSXP"
    assert value.names() == ["a", "b"]
    assert value.attributes["class"].data == ["foo"]
    a, b = value.data
    assert a.data == ["x", None]
    assert b.names() == ["first", "second"]
    assert b.data[0].data.tolist() == [1] and b.data[1].data == ["y"]
    assert value.as_dict()["a"] is a


def test_pairlist_with_tags_attributes_and_untagged_cells():
    # pairlist(x = 1L, "u") with attribute note = "n"
    cell1 = (
        flags(rdata.LISTSXP, attr=True, tag=True)
        + flags(rdata.LISTSXP, tag=True)
        + symbol("note")
        + strsxp("n")
        + NIL
        + symbol("x")
        + flags(rdata.INTSXP)
        + i32(1, 1)
    )
    cell2 = flags(rdata.LISTSXP) + strsxp("u") + NIL
    value = rdata.unserialize(header() + cell1 + cell2)
    assert isinstance(value, rdata.RPairlist)
    assert [tag for tag, _ in value.items] == ["x", None]
    assert value.items[1][1].data == ["u"]
    assert value.attributes["note"].data == ["n"]


def test_long_pairlist_is_read_without_recursion_limit():
    n = 5000
    body = b"".join(flags(rdata.LISTSXP) + strsxp(str(i)) for i in range(n)) + NIL
    value = rdata.unserialize(header() + body)
    assert len(value.items) == n and value.items[-1][1].data == [str(n - 1)]


def test_null_environment_and_raw():
    assert rdata.unserialize(header() + NIL) is None
    env = (
        flags(rdata.ENVSXP)
        + i32(0)
        + i32(rdata.GLOBALENV_SXP)
        + flags(rdata.LISTSXP, tag=True)
        + symbol("v")
        + strsxp("w")
        + NIL
        + NIL
        + NIL
    )
    value = rdata.unserialize(header() + env)
    assert isinstance(value, rdata.REnvironment)
    assert value.frame["v"].data == ["w"] and value.enclosure is rdata.GLOBAL_ENV
    raw = flags(rdata.RAWSXP) + i32(3) + b"\x00\x7f\xff"
    assert rdata.unserialize(header() + raw).data.tolist() == [0, 127, 255]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"A\n1\n", "ASCII"),
        (header() + flags(rdata.STRSXP) + i32(2) + charsxp("only one"), "truncated"),
        (header() + ref(3), "reference 3"),
        (header() + flags(rdata.CLOSXP), "CLOSXP"),
        (b"X\n" + i32(9, 0, 0) + NIL, "version 9"),
    ],
)
def test_malformed_streams_fail_loudly(data, message):
    with pytest.raises(rdata.RDataError, match=message):
        rdata.unserialize(data)


def test_blob_framings_and_length_check():
    payload = header() + strsxp("hello")
    n = struct.pack(">I", len(payload))
    for blob in (
        n + zlib.compress(payload),
        n + b"Z" + zlib.compress(payload),
        n + b"0" + payload,
        gzip.compress(payload),
    ):
        assert rdata.unserialize(rdata.decompress_blob(blob)).data == ["hello"]
    with pytest.raises(rdata.RDataError, match="header says"):
        rdata.decompress_blob(struct.pack(">I", len(payload) + 1) + zlib.compress(payload))


def test_lazyload_db_roundtrip(tmp_path):
    """A database built the way R's makeLazyLoadDB lays it out: blobs + an index."""
    blobs = {"first": header() + strsxp("a", None), "second": header() + strsxp("b")}
    rdb = b""
    offsets = {}
    for name, payload in blobs.items():
        framed = struct.pack(">I", len(payload)) + zlib.compress(payload)
        offsets[name] = (len(rdb), len(framed))
        rdb += framed
    variables = flags(rdata.VECSXP, attr=True) + i32(2)
    variables += b"".join(flags(rdata.INTSXP) + i32(2, *offsets[k]) for k in blobs)
    variables += flags(rdata.LISTSXP, tag=True) + symbol("names") + strsxp(*blobs) + NIL
    index = (
        flags(rdata.VECSXP, attr=True)
        + i32(1)
        + variables
        + flags(rdata.LISTSXP, tag=True)
        + ref(1)
        + strsxp("variables")
        + NIL
    )
    (tmp_path / "db.rdx").write_bytes(gzip.compress(header() + index))
    (tmp_path / "db.rdb").write_bytes(rdb)
    decoded = read_lazyload_db(tmp_path / "db")
    assert decoded["first"].data == ["a", None] and decoded["second"].data == ["b"]
    assert list(read_lazyload_db(tmp_path / "db", ["second"])) == ["second"]
    with pytest.raises(KeyError, match="first"):
        read_lazyload_db(tmp_path / "db", ["third"])
    with pytest.raises(FileNotFoundError):
        read_lazyload_db(tmp_path / "nope")


# --- bytes written by R 4.2.1 (r-cran-janeaustenr 1.0.0-1) ------------------------------

# gunzip(janeaustenr/data/Rdata.rdx): the real index of the six novels (version 3 header).
RDATA_RDX_HEX = (
    "580a000000030004020100030500000000055554462d38000002130000000300000213000000060000000d"
    "000000020000000000055f2b0000000d0000000200055f2b00055c8d0000000d00000002000abbb80002ac5c"
    "0000000d00000002000d68140002d32a0000000d0000000200103b3e000422bd0000000d0000000200145dfb"
    "0004113c000004020000000100040009000000056e616d657300000010000000060004000900000004656d"
    "6d61000400090000000d6d616e736669656c647061726b000400090000000f6e6f727468616e6765726162"
    "626579000400090000000a70657273756173696f6e000400090000000e70726964657072656a7564696365"
    "000400090000001073656e736573656e736962696c697479000000fe000002130000000000000402000001"
    "ff0000001000000000000000fe0000000a000000010000000100000402000001ff00000010000000030004"
    "0009000000097661726961626c6573000400090000000a7265666572656e636573000400090000000a636f"
    "6d70726573736564000000fe"
)
# janeaustenr/R/janeaustenr.rdb bytes [970, 1026): the framed blob of `.packageName`.
PACKAGENAME_BLOB_HEX = (
    "00000032789c8be06260606066606162646066053219584343dc742d800c012066646061e004d2dc598979a989a5c525a97945005d4c0697"
)


def test_real_r_index_of_the_janeaustenr_database():
    rdx = bytes.fromhex(RDATA_RDX_HEX)
    index = rdata.lazyload_index(gzip.compress(rdx))
    assert index == {
        "emma": (0, 352043),
        "mansfieldpark": (352043, 351373),
        "northangerabbey": (703416, 175196),
        "persuasion": (878612, 185130),
        "prideprejudice": (1063742, 271037),
        "sensesensibility": (1334779, 266556),
    }
    top = rdata.unserialize(rdx)
    assert top.names() == ["variables", "references", "compressed"]
    assert top.as_dict()["compressed"].data.tolist() == [1]
    assert top.as_dict()["references"].names() == []


def test_real_r_blob_framing():
    value = rdata.unserialize(rdata.decompress_blob(bytes.fromhex(PACKAGENAME_BLOB_HEX)))
    assert rdata.as_character(value, ".packageName") == ["janeaustenr"]
    with pytest.raises(rdata.RDataError, match="expected a character vector"):
        rdata.as_character(rdata.unserialize(bytes.fromhex(RDATA_RDX_HEX)), "index")
