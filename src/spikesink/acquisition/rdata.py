"""A small reader for R serialization and R lazy-load databases (.rdx/.rdb), without R.

Why: the offline default corpus is Jane Austen's six novels from Debian's
``r-cran-janeaustenr``, which stores them as character vectors inside an R lazy-load
database. Installing R for one decode step would be a heavy dependency, so this module
implements just enough of R's serialization format (``src/main/serialize.c``) to read
data objects: vectors, strings with their encodings and NA, lists, pairlists with
attributes and tags, symbols, references and environments. Code objects (closures,
bytecode) are out of scope and raise :class:`RDataError` with the type named.

Layout of a lazy-load database ``name.rdx`` + ``name.rdb``:

* ``.rdx`` is an R serialization of a named list ``variables`` (name -> integer vector
  ``c(offset, length)`` into the ``.rdb``), ``references`` and ``compressed``. It is
  either gzip-compressed (what ``R CMD INSTALL`` writes, like ``saveRDS``) or framed
  like a blob.
* each ``.rdb`` blob is a 4-byte big-endian uncompressed length followed by a zlib
  stream (compress = TRUE/1); for compress = 2/3 a type byte follows the length:
  ``Z`` zlib, ``2`` bzip2, ``X`` xz, ``0`` stored.

Only the XDR ("X\\n") format is supported; it is the one R writes by default.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# SEXP type codes (Rinternals.h) and serialization pseudo-types (serialize.c).
NILSXP, SYMSXP, LISTSXP, CLOSXP, ENVSXP, PROMSXP, LANGSXP = 0, 1, 2, 3, 4, 5, 6
SPECIALSXP, BUILTINSXP, CHARSXP, LGLSXP = 7, 8, 9, 10
INTSXP, REALSXP, CPLXSXP, STRSXP, DOTSXP = 13, 14, 15, 16, 17
VECSXP, EXPRSXP, BCODESXP, EXTPTRSXP, WEAKREFSXP, RAWSXP, S4SXP = 19, 20, 21, 22, 23, 24, 25
ALTREP_SXP = 238
ATTRLISTSXP, ATTRLANGSXP = 239, 240
BASEENV_SXP, EMPTYENV_SXP = 241, 242
BCREPREF, BCREPDEF, GENERICREFSXP, CLASSREFSXP = 243, 244, 245, 246
PERSISTSXP, PACKAGESXP, NAMESPACESXP, BASENAMESPACE_SXP = 247, 248, 249, 250
MISSINGARG_SXP, UNBOUNDVALUE_SXP, GLOBALENV_SXP, NILVALUE_SXP, REFSXP = 251, 252, 253, 254, 255

TYPE_NAMES = {
    NILSXP: "NILSXP",
    SYMSXP: "SYMSXP",
    LISTSXP: "LISTSXP",
    CLOSXP: "CLOSXP",
    ENVSXP: "ENVSXP",
    PROMSXP: "PROMSXP",
    LANGSXP: "LANGSXP",
    SPECIALSXP: "SPECIALSXP",
    BUILTINSXP: "BUILTINSXP",
    CHARSXP: "CHARSXP",
    LGLSXP: "LGLSXP",
    INTSXP: "INTSXP",
    REALSXP: "REALSXP",
    CPLXSXP: "CPLXSXP",
    STRSXP: "STRSXP",
    DOTSXP: "DOTSXP",
    VECSXP: "VECSXP",
    EXPRSXP: "EXPRSXP",
    BCODESXP: "BCODESXP",
    EXTPTRSXP: "EXTPTRSXP",
    WEAKREFSXP: "WEAKREFSXP",
    RAWSXP: "RAWSXP",
    S4SXP: "S4SXP",
    ALTREP_SXP: "ALTREP_SXP",
    ATTRLISTSXP: "ATTRLISTSXP",
    ATTRLANGSXP: "ATTRLANGSXP",
    BCREPDEF: "BCREPDEF",
    BCREPREF: "BCREPREF",
    CLASSREFSXP: "CLASSREFSXP",
    GENERICREFSXP: "GENERICREFSXP",
}

# Flag word layout: bits 0-7 type, bit 8 is-object, bit 9 has-attributes, bit 10 has-tag,
# bits 12-27 "levels" (gp field; for CHARSXP the encoding bits below).
IS_OBJECT_BIT, HAS_ATTR_BIT, HAS_TAG_BIT = 1 << 8, 1 << 9, 1 << 10
BYTES_MASK, LATIN1_MASK, UTF8_MASK, ASCII_MASK = 1 << 1, 1 << 2, 1 << 3, 1 << 6

NA_INTEGER = -(2**31)
R_NA_REAL_LOW_WORD = 1954  # R's NA_real_ is a NaN whose low word is 1954


class RDataError(ValueError):
    """The bytes are not an R serialization this reader understands."""


@dataclass(frozen=True)
class RSymbol:
    """An R symbol (name), e.g. an attribute tag or a list element name."""

    name: str


@dataclass
class RVector:
    """An atomic or generic R vector with its attributes.

    ``data`` is a Python list for STRSXP (``None`` = NA), VECSXP and EXPRSXP; a numpy
    array for numeric types (int32 with NA = -2**31 for INTSXP/LGLSXP, float64 for
    REALSXP, complex128, uint8 for RAWSXP). ``attributes`` maps tag -> value in order.
    """

    rtype: str
    data: Any
    attributes: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.data)

    def names(self) -> list[str | None] | None:
        """The ``names`` attribute as a list of strings, or None when absent."""
        names = self.attributes.get("names")
        return None if names is None else list(names.data)

    def as_dict(self) -> dict[str, Any]:
        """Elements keyed by name (a named list/vector); raises if names are missing."""
        names = self.names()
        if names is None:
            raise RDataError(f"{self.rtype} has no names attribute")
        return dict(zip(names, self.data))


@dataclass
class RPairlist:
    """An R pairlist (LISTSXP, or LANGSXP for calls): ordered (tag or None, value) items."""

    items: list[tuple[str | None, Any]]
    attributes: dict[str, Any] = field(default_factory=dict)
    rtype: str = "LISTSXP"

    def as_dict(self) -> dict[str | None, Any]:
        return dict(self.items)


@dataclass(eq=False)
class REnvironment:
    """An R environment: only its frame (name -> value) is kept; identity matters for refs."""

    frame: dict[str, Any] = field(default_factory=dict)
    enclosure: Any = None
    locked: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)
    kind: str = "ENVSXP"


GLOBAL_ENV = REnvironment(kind="R_GlobalEnv")
BASE_ENV = REnvironment(kind="R_BaseEnv")
EMPTY_ENV = REnvironment(kind="R_EmptyEnv")
BASE_NAMESPACE = REnvironment(kind="R_BaseNamespace")
MISSING_ARG = RSymbol("")  # R's R_MissingArg is the empty symbol
UNBOUND_VALUE = RSymbol("<unbound>")


class _XdrReader:
    """Big-endian cursor over the serialized bytes with R's reference table."""

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.pos = offset
        self.refs: list[Any] = []
        self.native_encoding = "UTF-8"

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise RDataError(f"truncated R serialization: need {n} bytes at offset {self.pos}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        return struct.unpack(">i", self._take(4))[0]

    def length(self) -> int:
        """Vector length; -1 announces a long vector stored as two 32-bit words."""
        n = self.int()
        if n == -1:
            upper, lower = struct.unpack(">II", self._take(8))
            return (upper << 32) + lower
        if n < 0:
            raise RDataError(f"negative vector length {n}")
        return n

    def array(self, dtype: str, n: int) -> np.ndarray:
        itemsize = np.dtype(dtype).itemsize
        return np.frombuffer(self._take(n * itemsize), dtype=dtype).astype(dtype[1:]).copy()


def _decode_charsxp(raw: bytes, levels: int, native_encoding: str) -> str:
    """Decode string bytes by the CHARSXP's encoding bits (UTF-8, latin1, bytes, native)."""
    if levels & UTF8_MASK or levels & ASCII_MASK:
        return raw.decode("utf-8", errors="replace")
    if levels & LATIN1_MASK:
        return raw.decode("latin-1")
    if levels & BYTES_MASK:
        return raw.decode("latin-1")  # "bytes" strings have no encoding; keep every byte
    try:
        return raw.decode(native_encoding)
    except (LookupError, UnicodeDecodeError):
        return raw.decode("utf-8", errors="replace")


def _pairlist_to_attributes(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, RPairlist):
        raise RDataError(f"attributes must be a pairlist, got {type(obj).__name__}")
    return {tag if tag is not None else "": value for tag, value in obj.items}


def _tag_name(tag: Any) -> str | None:
    if tag is None:
        return None
    if isinstance(tag, RSymbol):
        return tag.name
    raise RDataError(f"pairlist tag must be a symbol, got {type(tag).__name__}")


SINGLETONS = {
    NILVALUE_SXP: None,
    EMPTYENV_SXP: EMPTY_ENV,
    BASEENV_SXP: BASE_ENV,
    GLOBALENV_SXP: GLOBAL_ENV,
    BASENAMESPACE_SXP: BASE_NAMESPACE,
    UNBOUNDVALUE_SXP: UNBOUND_VALUE,
    MISSINGARG_SXP: MISSING_ARG,
}


def _read_item(r: _XdrReader) -> Any:
    """One serialized R object: dispatch on its SEXP type (the low byte of its flags)."""
    flags = r.int()
    sexptype = flags & 0xFF
    if sexptype in SINGLETONS:
        return SINGLETONS[sexptype]
    if sexptype == REFSXP:
        return _read_reference(r, flags)
    if sexptype in (PERSISTSXP, SYMSXP, PACKAGESXP, NAMESPACESXP, ENVSXP):
        return _read_referenced(r, sexptype)
    if sexptype in (LISTSXP, LANGSXP, DOTSXP):
        return _read_pairlist(r, flags)
    if sexptype == ALTREP_SXP:
        return _read_altrep(r)
    if sexptype == CHARSXP:
        return _read_charsxp(r, flags)
    if sexptype in (SPECIALSXP, BUILTINSXP):
        n = r.int()
        return RSymbol(r._take(n).decode("ascii"))
    obj = _read_vector(r, sexptype)
    if flags & HAS_ATTR_BIT:
        obj.attributes = _pairlist_to_attributes(_read_item(r))
    return obj


def _read_reference(r: _XdrReader, flags: int) -> Any:
    """A back-reference to an object read earlier (symbols, environments, persistent names)."""
    index = flags >> 8
    if index == 0:
        index = r.int()
    if not 1 <= index <= len(r.refs):
        raise RDataError(f"reference {index} outside the table of {len(r.refs)} entries")
    return r.refs[index - 1]


def _read_referenced(r: _XdrReader, sexptype: int) -> Any:
    """Objects that later ones may refer back to: registered in the reference table when read."""
    if sexptype == PERSISTSXP:
        obj: Any = RVector("PERSISTSXP", _read_string_vec(r))
    elif sexptype == SYMSXP:
        name = _read_item(r)
        if not isinstance(name, str):
            raise RDataError("symbol name is not a string")
        obj = RSymbol(name)
    elif sexptype in (PACKAGESXP, NAMESPACESXP):
        info = _read_string_vec(r)
        obj = REnvironment(kind=f"{TYPE_NAMES.get(sexptype, sexptype)}:{','.join(map(str, info))}")
    else:
        return _read_environment(r)
    r.refs.append(obj)
    return obj


def _read_environment(r: _XdrReader) -> REnvironment:
    env = REnvironment()
    r.refs.append(env)  # registered before the contents: they may refer back to it
    env.locked = bool(r.int())
    env.enclosure = _read_item(r)
    frame = _read_item(r)
    hashtab = _read_item(r)
    env.attributes = _pairlist_to_attributes(_read_item(r))
    if isinstance(frame, RPairlist):
        env.frame.update({k: v for k, v in frame.items if k is not None})
    if isinstance(hashtab, RVector):
        for bucket in hashtab.data:
            if isinstance(bucket, RPairlist):
                env.frame.update({k: v for k, v in bucket.items if k is not None})
    return env


def _read_charsxp(r: _XdrReader, flags: int) -> str | None:
    n = r.int()
    value = None if n == -1 else _decode_charsxp(r._take(n), flags >> 12, r.native_encoding)  # -1: NA_character_
    if flags & HAS_ATTR_BIT:  # only written by very old R versions; read and drop
        _read_item(r)
    return value


VECTOR_DTYPES = {INTSXP: ">i4", LGLSXP: ">i4", REALSXP: ">f8", CPLXSXP: ">c16"}


def _read_vector(r: _XdrReader, sexptype: int) -> RVector:
    """Atomic and generic vectors (and the S4 object shell); anything else is code: refused."""
    if sexptype == S4SXP:
        return RVector("S4SXP", [])
    if sexptype in (STRSXP, VECSXP, EXPRSXP):
        n = r.length()
        return RVector(TYPE_NAMES[sexptype], [_read_item(r) for _ in range(n)])
    if sexptype in VECTOR_DTYPES:
        return RVector(TYPE_NAMES[sexptype], r.array(VECTOR_DTYPES[sexptype], r.length()))
    if sexptype == RAWSXP:
        n = r.length()
        return RVector("RAWSXP", np.frombuffer(r._take(n), dtype=np.uint8).copy())
    raise RDataError(
        f"unsupported R object type {TYPE_NAMES.get(sexptype, sexptype)} (this reader handles data objects, not code)"
    )


def _read_pairlist(r: _XdrReader, flags: int) -> RPairlist:
    """Read a chain of pairlist cells iteratively (long pairlists would overflow recursion).

    Each cell is: [attributes] [tag] CAR, then the CDR, which is either another cell of
    the same kind (its flags word follows) or the terminating item (usually NULL).
    """
    sexptype = flags & 0xFF
    result = RPairlist(items=[], rtype=TYPE_NAMES.get(sexptype, str(sexptype)))
    first = True
    while True:
        attributes = _pairlist_to_attributes(_read_item(r)) if flags & HAS_ATTR_BIT else {}
        tag = _tag_name(_read_item(r)) if flags & HAS_TAG_BIT else None
        if first:
            result.attributes = attributes
            first = False
        result.items.append((tag, _read_item(r)))
        # Peek at the CDR's flags: continue the loop for another cell of the same kind.
        save = r.pos
        next_flags = r.int()
        next_type = next_flags & 0xFF
        if next_type == LISTSXP or (next_type == DOTSXP and sexptype == DOTSXP):
            flags = next_flags
            continue
        r.pos = save
        tail = _read_item(r)
        if tail is not None:
            result.items.append((".tail", tail))
        return result


def _read_string_vec(r: _XdrReader) -> list[str | None]:
    """InStringVec: a zero word, a length, then that many CHARSXP items."""
    if r.int() != 0:
        raise RDataError("names in persistent strings are not supported")
    n = r.int()
    return [_read_item(r) for _ in range(n)]


def _read_altrep(r: _XdrReader) -> RVector:
    """Materialise the ALTREP classes R writes for plain data (compact sequences, wrappers)."""
    info = _read_item(r)
    state = _read_item(r)
    attributes = _pairlist_to_attributes(_read_item(r))
    cls = info.items[0][1].name if isinstance(info, RPairlist) and info.items else "?"
    if cls == "compact_intseq":
        n, start, step = (float(x) for x in state.data[:3])
        vec = RVector("INTSXP", (start + step * np.arange(int(n))).astype(np.int32))
    elif cls == "compact_realseq":
        n, start, step = (float(x) for x in state.data[:3])
        vec = RVector("REALSXP", start + step * np.arange(int(n), dtype=np.float64))
    elif cls.startswith("wrap_") and isinstance(state, RVector) and state.data:
        inner = state.data[0]
        vec = RVector(inner.rtype, inner.data, dict(inner.attributes))
    else:
        raise RDataError(f"unsupported ALTREP class {cls!r}")
    vec.attributes.update(attributes)
    return vec


def unserialize(data: bytes) -> Any:
    """Decode one R serialization (the bytes ``serialize(x, NULL)`` / an uncompressed .rds).

    Returns None for NULL, :class:`RVector` for vectors (strings as ``str``/None for NA),
    :class:`RPairlist`, :class:`RSymbol` or :class:`REnvironment`.
    """
    if data[:2] != b"X\n":
        kind = {b"A\n": "ASCII", b"B\n": "native binary"}.get(bytes(data[:2]), "unknown")
        raise RDataError(f"only XDR R serializations are supported, got {kind} format")
    r = _XdrReader(data, 2)
    version = r.int()
    r.int()  # R version that wrote it
    r.int()  # minimal R version to read it
    if version == 3:
        nelen = r.int()
        r.native_encoding = r._take(nelen).decode("ascii") or "UTF-8"
    elif version != 2:
        raise RDataError(f"unsupported R serialization version {version}")
    return _read_item(r)


def decompress_blob(blob: bytes) -> bytes:
    """Undo R's lazy-load framing: 4-byte big-endian length, [type byte], compressed body.

    Also accepts gzip files (``.rdx``/``.rds`` as written by R CMD INSTALL / saveRDS).
    The uncompressed length is checked, so a truncated or mis-sliced blob fails loudly.
    """
    if blob[:2] == b"\x1f\x8b":
        return gzip.decompress(blob)
    if len(blob) < 5:
        raise RDataError(f"lazy-load blob of {len(blob)} bytes is too short")
    expected = struct.unpack(">I", blob[:4])[0]
    kind, body = blob[4:5], blob[5:]
    if kind == b"Z":
        out = zlib.decompress(body)
    elif kind == b"2":
        out = bz2.decompress(body)
    elif kind == b"X":
        out = lzma.decompress(body)
    elif kind == b"0":
        out = body
    else:
        out = zlib.decompress(blob[4:])
    if len(out) != expected:
        raise RDataError(f"blob decompressed to {len(out)} bytes, header says {expected}")
    return out


def lazyload_index(rdx: bytes) -> dict[str, tuple[int, int]]:
    """Map each variable of a lazy-load database to its (offset, length) in the .rdb."""
    index = unserialize(decompress_blob(rdx))
    if not isinstance(index, RVector) or index.rtype != "VECSXP":
        raise RDataError("lazy-load index is not an R list")
    variables = index.as_dict().get("variables")
    if variables is None:
        raise RDataError("lazy-load index has no 'variables' entry")
    return {name: (int(v.data[0]), int(v.data[1])) for name, v in variables.as_dict().items()}


def decode_lazyload(rdx: bytes, rdb: bytes, names: list[str] | None = None) -> dict[str, Any]:
    """Decode variables from the bytes of a lazy-load database (.rdx index, .rdb blobs).

    Working on bytes lets callers read the files straight out of an archive. ``names``
    restricts which variables are decoded (all by default); an unknown name is an error
    that lists the names present.
    """
    index = lazyload_index(rdx)
    wanted = list(index) if names is None else list(names)
    missing = [n for n in wanted if n not in index]
    if missing:
        raise KeyError(f"{missing} not in the lazy-load index; it holds {sorted(index)}")
    out = {}
    for name in wanted:
        offset, length = index[name]
        if offset < 0 or offset + length > len(rdb):
            raise RDataError(f"{name}: blob [{offset}, {offset + length}) beyond the .rdb")
        out[name] = unserialize(decompress_blob(rdb[offset : offset + length]))
    return out


def as_character(obj: Any, what: str = "object") -> list[str | None]:
    """The elements of an R character vector (STRSXP); anything else is an error."""
    if not isinstance(obj, RVector) or obj.rtype != "STRSXP":
        kind = obj.rtype if isinstance(obj, RVector) else type(obj).__name__
        raise RDataError(f"{what} is {kind}, expected a character vector (STRSXP)")
    return list(obj.data)


def is_na_real(x: float) -> bool:
    """R distinguishes NA_real_ (a NaN payload 1954) from NaN; both are NaN in numpy."""
    if not math.isnan(x):
        return False
    low = struct.unpack("<II", struct.pack("<d", x))[0]
    return low == R_NA_REAL_LOW_WORD
