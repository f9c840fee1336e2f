"""On-disk format of a field: one header file plus sparse chunk files.

A field is a directory::

    <path>/field.pxf                          field header (below)
    <path>/chunks/<c >> 12 :06x>/<c & 0xfff :03x>.pxc   chunk c, created on first write

Every integer is little-endian.  Element data are stored little-endian in C order.

Field header ``field.pxf`` (``56 + 16 * ndim + 4`` bytes)::

    off  size  field
    0    8     magic  b"PXFIELD\\0"
    8    2     version (u16) = 1
    10   2     header_bytes (u16): total size of this file
    12   4     ndim (u32), 1..32
    16   16    dtype descriptor, ASCII, NUL padded: "<f4", "|u1", "<c8", ...
    32   4     itemsize (u32), must equal the descriptor's
    36   4     flags (u32), must be 0 in version 1
    40   16    uid: random bytes naming this field (chunk files repeat it)
    56   8*n   shape (u64 each, every dimension >= 1)
    ..   8*n   chunk shape (u64 each): (chunk_rows, *shape[1:]); chunks split axis 0 only
    ..   4     crc32 (zlib) of every byte before it

Chunk file ``.pxc``: a 4096-byte header page, then ``data_bytes`` of element data
(``rows_in_chunk * row_bytes``; the file is created at full length with ``ftruncate`` so
unwritten parts are holes).  Header page::

    0    8     magic b"PXCHUNK\\0"
    8    2     version (u16) = 1
    10   2     flags (u16): bit 0 SEALED (data_crc is valid)
    12   4     data_offset (u32) = 4096
    16   8     chunk index (u64)
    24   8     data_bytes (u64)
    32   16    uid of the owning field
    48   4     data_crc (u32, zlib crc32 of the data; meaningful only when SEALED)
    52   4     crc32 of bytes 0..51
    56..4095   zero

Chunk list ``chunks.pxm`` (the chunks that exist; a listed chunk without a file is lost)::

    0    8     magic b"PXCHLST\\0"
    8    2     version (u16) = 1
    10   2     reserved (u16) = 0
    12   4     reserved (u32) = 0
    16   8     count (u64)
    24   16    uid of the owning field
    40   8*n   chunk indices (u64 each, strictly ascending)
    ..   4     crc32 of every byte before it

Other files: ``field.lock`` (the single writer holds an exclusive ``flock`` on it and writes
its pid into it); ``*.tmp`` files are a writer's unpublished chunk copies and temporary
headers/lists (removed when the next writer opens the field).

A chunk is SEALED by ``Field.flush`` (for chunks up to ``SEAL_MAX_BYTES``); the first
write after that clears the flag.  ``open(..., verify=True)`` and ``Field.verify`` check
sealed chunks' data against ``data_crc``.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from .errors import CorruptChunkError, CorruptHeaderError, FieldDtypeError

__all__ = [
    "FIELD_MAGIC",
    "CHUNK_MAGIC",
    "VERSION",
    "HEADER_NAME",
    "CHUNK_HDR_BYTES",
    "SEAL_MAX_BYTES",
    "FieldHeader",
    "ChunkHeader",
    "normalize_dtype",
    "chunk_relpath",
    "LIST_NAME",
    "LOCK_NAME",
    "encode_chunk_list",
    "decode_chunk_list",
]

FIELD_MAGIC = b"PXFIELD\x00"
CHUNK_MAGIC = b"PXCHUNK\x00"
VERSION = 1
HEADER_NAME = "field.pxf"
LIST_NAME = "chunks.pxm"
LOCK_NAME = "field.lock"
LIST_MAGIC = b"PXCHLST\x00"
CHUNK_HDR_BYTES = 4096
SEAL_MAX_BYTES = 256 << 20
FLAG_SEALED = 1
MAX_NDIM = 32

_FIXED = struct.Struct("<8sHHI16sII16s")  # magic, version, header_bytes, ndim, dtype, itemsize, flags, uid
_CHUNK = struct.Struct("<8sHHIQQ16sI")  # up to data_crc; then crc32 u32
_ALLOWED_KINDS = "biufc"


def normalize_dtype(dtype) -> np.dtype:
    """The little-endian storage dtype for ``dtype``; raise :class:`FieldDtypeError` if unusable."""
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise FieldDtypeError(f"not a numpy dtype: {dtype!r} ({e})") from None
    if dt.kind not in _ALLOWED_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise FieldDtypeError(
            f"dtype {dt} is not supported: only bool, integer, float and complex scalars are")
    return dt.newbyteorder("<") if dt.itemsize > 1 else dt.newbyteorder("|")


def chunk_relpath(c: int) -> str:
    """Relative path of chunk ``c`` inside the field directory (at most 4096 files a folder)."""
    return f"chunks/{c >> 12:06x}/{c & 0xfff:03x}.pxc"


@dataclass(frozen=True)
class FieldHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    chunk_rows: int
    uid: bytes
    version: int = VERSION

    @property
    def chunk_shape(self) -> tuple[int, ...]:
        return (self.chunk_rows,) + tuple(self.shape[1:])

    def encode(self) -> bytes:
        n = len(self.shape)
        descr = self.dtype.str.encode("ascii")
        size = _FIXED.size + 16 * n + 4
        body = _FIXED.pack(FIELD_MAGIC, self.version, size, n, descr, self.dtype.itemsize, 0,
                           self.uid)
        body += struct.pack(f"<{n}Q", *self.shape) + struct.pack(f"<{n}Q", *self.chunk_shape)
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def decode(cls, raw: bytes, where: str = "field header") -> "FieldHeader":
        if len(raw) < _FIXED.size:
            raise CorruptHeaderError(f"{where}: truncated ({len(raw)} bytes, need >= {_FIXED.size})")
        magic, version, size, n, descr, itemsize, flags, uid = _FIXED.unpack_from(raw, 0)
        if magic != FIELD_MAGIC:
            raise CorruptHeaderError(f"{where}: bad magic {magic!r}, not a proxima field")
        if version != VERSION:
            raise CorruptHeaderError(f"{where}: unsupported format version {version} "
                                     f"(this library reads version {VERSION})")
        if not 1 <= n <= MAX_NDIM:
            raise CorruptHeaderError(f"{where}: ndim {n} outside 1..{MAX_NDIM}")
        want = _FIXED.size + 16 * n + 4
        if size != want or len(raw) != want:
            raise CorruptHeaderError(
                f"{where}: size mismatch (file {len(raw)} bytes, header says {size}, "
                f"ndim {n} needs {want})")
        (crc,) = struct.unpack_from("<I", raw, want - 4)
        if crc != zlib.crc32(raw[:want - 4]):
            raise CorruptHeaderError(f"{where}: checksum mismatch, the header is damaged")
        if flags != 0:
            raise CorruptHeaderError(f"{where}: unknown flags 0x{flags:x}")
        try:
            dt = normalize_dtype(descr.rstrip(b"\x00").decode("ascii"))
        except (FieldDtypeError, UnicodeDecodeError) as e:
            raise CorruptHeaderError(f"{where}: bad dtype descriptor {descr!r}: {e}") from None
        if dt.itemsize != itemsize:
            raise CorruptHeaderError(f"{where}: itemsize {itemsize} does not match dtype {dt}")
        shape = struct.unpack_from(f"<{n}Q", raw, _FIXED.size)
        chunk = struct.unpack_from(f"<{n}Q", raw, _FIXED.size + 8 * n)
        if min(shape) < 1:
            raise CorruptHeaderError(f"{where}: shape {shape} has an empty dimension")
        if not 1 <= chunk[0] or tuple(chunk[1:]) != tuple(shape[1:]):
            raise CorruptHeaderError(
                f"{where}: chunk shape {chunk} must be (rows >= 1, *shape[1:]) for shape {shape}")
        return cls(shape=tuple(int(s) for s in shape), dtype=dt, chunk_rows=int(chunk[0]),
                   uid=bytes(uid), version=version)


@dataclass(frozen=True)
class ChunkHeader:
    index: int
    data_bytes: int
    uid: bytes
    sealed: bool = False
    data_crc: int = 0

    def encode(self) -> bytes:
        body = _CHUNK.pack(CHUNK_MAGIC, VERSION, FLAG_SEALED if self.sealed else 0,
                           CHUNK_HDR_BYTES, self.index, self.data_bytes, self.uid,
                           self.data_crc & 0xFFFFFFFF)
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def decode(cls, raw: bytes, where: str) -> "ChunkHeader":
        need = _CHUNK.size + 4
        if len(raw) < need:
            raise CorruptChunkError(f"{where}: truncated chunk header ({len(raw)} bytes)")
        magic, version, flags, doff, index, nbytes, uid, dcrc = _CHUNK.unpack_from(raw, 0)
        if magic != CHUNK_MAGIC:
            raise CorruptChunkError(f"{where}: bad magic {magic!r}, not a proxima chunk")
        (crc,) = struct.unpack_from("<I", raw, _CHUNK.size)
        if crc != zlib.crc32(raw[:_CHUNK.size]):
            raise CorruptChunkError(f"{where}: chunk header checksum mismatch")
        if version != VERSION:
            raise CorruptChunkError(f"{where}: unsupported chunk version {version}")
        if doff != CHUNK_HDR_BYTES or flags & ~FLAG_SEALED:
            raise CorruptChunkError(f"{where}: bad data offset {doff} or flags 0x{flags:x}")
        return cls(index=int(index), data_bytes=int(nbytes), uid=bytes(uid),
                   sealed=bool(flags & FLAG_SEALED), data_crc=int(dcrc))


_LIST = struct.Struct("<8sHHIQ16s")


def encode_chunk_list(ids, uid: bytes) -> bytes:
    """The chunk list file for ascending chunk indices ``ids``."""
    a = np.asarray(sorted(set(int(i) for i in ids)), dtype="<u8")
    body = _LIST.pack(LIST_MAGIC, VERSION, 0, 0, a.size, uid) + a.tobytes()
    return body + struct.pack("<I", zlib.crc32(body))


def decode_chunk_list(raw: bytes, uid: bytes, where: str) -> np.ndarray:
    """Ascending chunk indices (uint64) of a chunk list file; checks magic, size, crc, uid."""
    if len(raw) < _LIST.size + 4:
        raise CorruptHeaderError(f"{where}: truncated chunk list ({len(raw)} bytes)")
    magic, version, _r1, _r2, n, fuid = _LIST.unpack_from(raw, 0)
    if magic != LIST_MAGIC:
        raise CorruptHeaderError(f"{where}: bad magic {magic!r}, not a chunk list")
    if version != VERSION:
        raise CorruptHeaderError(f"{where}: unsupported chunk list version {version}")
    if len(raw) != _LIST.size + 8 * n + 4:
        raise CorruptHeaderError(f"{where}: size {len(raw)} does not match {n} entries")
    (crc,) = struct.unpack_from("<I", raw, len(raw) - 4)
    if crc != zlib.crc32(raw[:-4]):
        raise CorruptHeaderError(f"{where}: checksum mismatch, the chunk list is damaged")
    if fuid != uid:
        raise CorruptHeaderError(f"{where}: belongs to another field (uid mismatch)")
    ids = np.frombuffer(raw, dtype="<u8", count=n, offset=_LIST.size).astype(np.uint64)
    if n > 1 and not (ids[1:] > ids[:-1]).all():
        raise CorruptHeaderError(f"{where}: chunk indices are not strictly ascending")
    return ids
