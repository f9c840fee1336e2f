"""The index image file: one file holding what the NAND cores hold, plus config and metadata.

File format (version 1, all integers little-endian)
----------------------------------------------------
``header`` (24 bytes)::

    0   8s  magic            b"PRXIMAIX"
    8   u32 version          1
    12  u32 header_bytes     24 + 40 * n_sections (the header section incl. its table)
    16  u32 n_sections
    20  u32 header_crc       zlib.crc32 of the header section with this field set to 0

then the section table, ``n_sections`` entries of 40 bytes::

    0   16s name             ASCII, NUL padded
    16  u64 offset           from the start of the file, a multiple of 64
    24  u64 length           bytes
    32  u32 crc32            zlib.crc32 of the section bytes
    36  u32 reserved         0

Sections (in this order, zero bytes between them up to the 64-byte alignment, nothing after
the last one):

``config``    ``ProximaConfig.to_json()`` (UTF-8)
``metadata``  JSON: ``n``, ``entry``, ``hot`` (H), ``gap_width`` (W), ``quantiser``, and
              ``layout`` (every derived layout number, cross-checked on open)
``codebook``  ``(M, 256, dsub)`` uint8, C order
``frames``    the index cores: ``(cores, index_pages_per_core * page_bytes)`` uint8; core ``c``'s
              byte ``a`` is byte ``a`` of that core's address space (page ``a // page_bytes``),
              laid out as :mod:`proxima.golden.layout` specifies (hot region, normal region,
              then, with ``layout.hot_copies > 1``, the code-copy region)
``raw``       the raw-vector cores: ``(raw_vector_cores, raw_pages_per_core * page_bytes)``
``labels``    ``(N,)`` little-endian int64: the caller's id of each vertex (``Index.labels``)

Opening checks, in order: size >= header, magic, version, header checksum, every section inside
the file, every section checksum, the config, the metadata against the layout recomputed from
the config, then decodes neighbour lists and PQ codes **from the frames** (normal frames of all
vertices) and the raw vectors from the raw cores, checks every code copy against the normal
frames (``code copy C of vertex V disagrees with its normal frame``) and every hot frame
against the normal frames.  Any failure raises :class:`ImageError` with a message naming the cause
(``truncated``, ``checksum mismatch in section X``, ``unsupported version N (this build reads
M)``, ...).

Writing is atomic: a temporary file in the same directory, ``fsync``, ``os.replace``, then an
``fsync`` of the directory.  Temporary files of writers that died are removed by the next
write or read of the same path (:func:`proxima.golden.atomic.remove_stale_temps`).
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from proxima.config import ConfigError, ProximaConfig

from .atomic import atomic_open, remove_stale_temps
from .index import Index, IndexError_
from .layout import (Layout, LayoutError, decode_frames, decode_hot_frames, encode_frames,
                     encode_hot_frames)

__all__ = ["ImageError", "Image", "write_image", "open_image", "read_image",
           "MAGIC", "VERSION", "SECTIONS"]

MAGIC = b"PRXIMAIX"
VERSION = 1
SECTIONS = ("config", "metadata", "codebook", "frames", "raw", "labels")
_HDR = struct.Struct("<8sIIII")
_ENT = struct.Struct("<16sQQII")
_ALIGN = 64


class ImageError(ValueError):
    """An index image that cannot be written or read (truncated, corrupt, wrong version...)."""


@dataclass
class Image:
    """A decoded image: the index, its layout and the raw core contents."""

    index: Index
    layout: Layout
    frames: np.ndarray  # (cores, index_core_bytes) uint8
    raw: np.ndarray  # (raw_vector_cores, raw_core_bytes) uint8
    metadata: dict


# ---------------------------------------------------------------------------------------
# core images <-> per-vertex structures (pure reshapes of the round-robin mapping)
# ---------------------------------------------------------------------------------------
def _to_cores(items: np.ndarray, cores: int, per_page: int, page_bytes: int,
              pages: int) -> np.ndarray:
    """Place item ``i`` (equal-sized rows) on core ``i % cores``, slot ``j = i // cores``, page
    ``j // per_page``, offset ``(j % per_page) * stride``; returns ``(cores, pages*page_bytes)``."""
    n, stride = items.shape
    slots = pages * per_page
    buf = np.zeros((slots * cores, stride), dtype=np.uint8)
    buf[:n] = items
    buf = buf.reshape(slots, cores, stride).transpose(1, 0, 2).reshape(cores, pages,
                                                                      per_page * stride)
    out = np.zeros((cores, pages, page_bytes), dtype=np.uint8)
    out[:, :, :per_page * stride] = buf
    return out.reshape(cores, pages * page_bytes)


def _from_cores(img: np.ndarray, n: int, stride: int, per_page: int, page_bytes: int,
                pages: int) -> np.ndarray:
    """Inverse of :func:`_to_cores`: the first ``n`` items, ``(n, stride)``."""
    cores = img.shape[0]
    x = img.reshape(cores, pages, page_bytes)[:, :, :per_page * stride]
    x = x.reshape(cores, pages * per_page, stride).transpose(1, 0, 2).reshape(-1, stride)
    return x[:n]


def _frames_image(layout: Layout, index: Index) -> np.ndarray:
    cfg = layout.cfg
    P, Ci = cfg.nand.page_bytes, cfg.nand.cores
    normal = np.zeros((layout.n, layout.stride), dtype=np.uint8)
    normal[:, :layout.frame_bytes] = encode_frames(layout, index.neighbors, index.codes)
    img = [_to_cores(normal, Ci, layout.frames_per_page, P, layout.normal_pages_per_core)]
    if layout.code_copy_pages:  # copies 1..X-1 of the first code_copy_count normal frames
        one = _code_copy(layout, normal)
        img += [np.roll(one, c * layout.copy_shift, axis=0) for c in range(1, layout.hot_copies)]
    if layout.hot_pages:
        hot = encode_hot_frames(layout, index.neighbors[:layout.hot], index.codes)
        chunks = hot.reshape(layout.hot * layout.hot_accesses, layout.access)
        one = _to_cores(chunks, Ci, layout.accesses_per_page, P, layout.hot_copy_pages)
        img[:0] = [np.roll(one, c * layout.copy_shift, axis=0) for c in range(layout.hot_copies)]
    return np.ascontiguousarray(np.concatenate(img, axis=1))


def _code_copy(layout: Layout, normal: np.ndarray) -> np.ndarray:
    """Copy 0 of the code-copy region: the first ``code_copy_count`` normal frames
    (``normal``: all frames, ``(N, stride)``) placed as the normal region places them, in
    ``cp`` pages per core; copy ``c`` is this rotated by ``c * S`` cores."""
    cfg = layout.cfg
    return _to_cores(normal[:layout.code_copy_count], cfg.nand.cores, layout.frames_per_page,
                     cfg.nand.page_bytes, layout.code_copy_pages)


def _raw_image(layout: Layout, vectors: np.ndarray) -> np.ndarray:
    cfg = layout.cfg
    items = np.zeros((layout.n, layout.raw_stride), dtype=np.uint8)
    items[:, :layout.vector_bytes] = vectors
    return _to_cores(items, cfg.nand.raw_vector_cores, layout.raw_per_page, cfg.nand.page_bytes,
                     layout.raw_pages_per_core)


# ---------------------------------------------------------------------------------------
# write
# ---------------------------------------------------------------------------------------
def write_image(path: str | os.PathLike, index: Index) -> Layout:
    """Write ``index`` as an image file at ``path`` (atomically); returns its layout."""
    path = Path(path)
    try:
        index.validate()
        layout = Layout.for_index(index)
        frames = _frames_image(layout, index)
    except (LayoutError, IndexError_) as e:
        raise ImageError(f"{path}: cannot lay out the index: {e}") from None
    raw = _raw_image(layout, index.vectors)
    meta = {
        "format": "proxima-index-image",
        "n": layout.n,
        "entry": int(index.entry),
        "hot": layout.hot,
        "gap_width": layout.gap_width,
        "quantiser": None if index.quantiser is None else [float(x) for x in index.quantiser],
        "layout": layout.summary(),
    }
    payloads = {
        "config": index.cfg.to_json().encode(),
        "metadata": json.dumps(meta, sort_keys=True).encode(),
        "codebook": np.ascontiguousarray(index.codebook, dtype=np.uint8),
        "frames": frames,
        "raw": raw,
        "labels": np.ascontiguousarray(index.labels, dtype="<i8"),
    }
    header_bytes = _HDR.size + _ENT.size * len(SECTIONS)
    table = []
    off = -(-header_bytes // _ALIGN) * _ALIGN
    for name in SECTIONS:
        data = memoryview(payloads[name]).cast("B")
        table.append((name, off, data.nbytes, zlib.crc32(data)))
        off = -(-(off + data.nbytes) // _ALIGN) * _ALIGN
    header = bytearray(_HDR.pack(MAGIC, VERSION, header_bytes, len(SECTIONS), 0))
    for name, o, ln, crc in table:
        header += _ENT.pack(name.encode().ljust(16, b"\0"), o, ln, crc, 0)
    struct.pack_into("<I", header, 20, zlib.crc32(header))

    try:
        with atomic_open(path) as f:
            f.write(header)
            pos = len(header)
            for name, o, ln, _ in table:
                f.write(b"\0" * (o - pos))
                f.write(memoryview(payloads[name]).cast("B"))
                pos = o + ln
    except OSError as e:
        raise ImageError(f"{path}: cannot write: {e.strerror or e}") from None
    return layout


# ---------------------------------------------------------------------------------------
# read
# ---------------------------------------------------------------------------------------
def _check_code_copies(layout: Layout, region: np.ndarray, normal: np.ndarray) -> None:
    """Raise :class:`LayoutError` unless every copy in the code-copy ``region`` (the index
    cores' bytes from ``code_copy_page`` on) is the copied normal frames, rotated."""
    cfg = layout.cfg
    P, S, cp = cfg.nand.page_bytes, layout.copy_shift, layout.code_copy_pages
    want = _code_copy(layout, normal)
    for c in range(1, layout.hot_copies):
        got = np.roll(region[:, (c - 1) * cp * P:c * cp * P], -c * S, axis=0)
        if np.array_equal(got, want):
            continue
        hc = layout.code_copy_count
        per_v = _from_cores(got, hc, layout.stride, layout.frames_per_page, P, cp)
        bad = np.flatnonzero((per_v != normal[:hc]).any(axis=1))
        if bad.size:
            raise LayoutError(f"code copy {c} of vertex {int(bad[0])} disagrees with its normal "
                              f"frame (copy 0)")
        raise LayoutError(f"code copy {c} has non-zero bytes outside the copied frames")


def _sections(path: Path, data: bytes) -> dict[str, memoryview]:
    size = len(data)
    if size < _HDR.size:
        raise ImageError(f"{path}: truncated: {size} bytes, the header alone needs {_HDR.size}")
    magic, version, header_bytes, nsec, hcrc = _HDR.unpack_from(data, 0)
    if magic != MAGIC:
        raise ImageError(f"{path}: not a proxima index image (magic {magic!r}, expected "
                         f"{MAGIC!r})")
    if version != VERSION:
        raise ImageError(f"{path}: unsupported version {version} (this build reads {VERSION})")
    if header_bytes != _HDR.size + _ENT.size * nsec:
        raise ImageError(f"{path}: checksum mismatch in section header (inconsistent header "
                         f"size {header_bytes} for {nsec} sections)")
    if size < header_bytes:
        raise ImageError(f"{path}: truncated: {size} bytes, the header needs {header_bytes}")
    hdr = bytearray(data[:header_bytes])
    struct.pack_into("<I", hdr, 20, 0)
    if zlib.crc32(hdr) != hcrc:
        raise ImageError(f"{path}: checksum mismatch in section header")
    view = memoryview(data)
    out: dict[str, memoryview] = {}
    end_max = header_bytes
    for i in range(nsec):
        raw_name, off, ln, crc, _ = _ENT.unpack_from(data, _HDR.size + i * _ENT.size)
        name = raw_name.rstrip(b"\0").decode("ascii", "replace")
        if off + ln > size:
            raise ImageError(f"{path}: truncated: section {name} needs bytes {off}..{off + ln} "
                             f"but the file has {size}")
        sec = view[off:off + ln]
        if zlib.crc32(sec) != crc:
            raise ImageError(f"{path}: checksum mismatch in section {name}")
        out[name] = sec
        end_max = max(end_max, off + ln)
    if size != end_max:
        raise ImageError(f"{path}: {size - end_max} unexpected bytes after the last section")
    for name in SECTIONS:
        if name not in out:
            raise ImageError(f"{path}: missing section {name}")
    return out


def read_image(path: str | os.PathLike) -> Image:
    """Open, verify and decode an image file; see the module docstring for the checks."""
    path = Path(path)
    remove_stale_temps(str(path))  # a killed writer's half-written temporary file
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: cannot read: {e.strerror or e}") from None
    sec = _sections(path, data)
    try:
        cfg = ProximaConfig.from_json(bytes(sec["config"]).decode("utf-8"))
    except (ConfigError, UnicodeDecodeError, TypeError) as e:
        raise ImageError(f"{path}: bad config section: {e}") from None
    try:
        meta = json.loads(bytes(sec["metadata"]).decode("utf-8"))
        n, entry, hot, W = (int(meta[k]) for k in ("n", "entry", "hot", "gap_width"))
        q = meta["quantiser"]
    except (ValueError, KeyError, TypeError) as e:
        raise ImageError(f"{path}: bad metadata section: {e!r}") from None
    try:
        layout = Layout(cfg, n, hot, W)
    except LayoutError as e:
        raise ImageError(f"{path}: metadata does not fit the config: {e}") from None
    old = meta.get("layout")
    if isinstance(old, dict) and "hot_copies" in old and "code_copy_page" not in old:
        raise ImageError(f"{path}: an image of {old['hot_copies']} hot copies without code "
                         f"copies (written before they existed): rebuild it")
    if old != layout.summary():
        raise ImageError(f"{path}: metadata layout numbers disagree with the layout computed "
                         f"from the config")
    P = cfg.nand.page_bytes
    expect = {
        "codebook": cfg.pq.M * cfg.pq.ksub * cfg.dsub,
        "frames": cfg.nand.cores * layout.index_core_bytes,
        "raw": cfg.nand.raw_vector_cores * layout.raw_core_bytes,
    }
    for name, nbytes in expect.items():
        if sec[name].nbytes != nbytes:
            raise ImageError(f"{path}: section {name} has {sec[name].nbytes} bytes, the layout "
                             f"needs {nbytes}")
    codebook = np.frombuffer(sec["codebook"], dtype=np.uint8).reshape(
        cfg.pq.M, cfg.pq.ksub, cfg.dsub).copy()
    frames = np.frombuffer(sec["frames"], dtype=np.uint8).reshape(cfg.nand.cores, -1)
    raw = np.frombuffer(sec["raw"], dtype=np.uint8).reshape(cfg.nand.raw_vector_cores, -1)
    hot_bytes = layout.hot_pages * P
    copies_bytes = layout.code_copy_page * P
    normal = _from_cores(frames[:, hot_bytes:copies_bytes], n, layout.stride,
                         layout.frames_per_page, P, layout.normal_pages_per_core)
    try:
        neighbors, codes = decode_frames(layout, normal[:, :layout.frame_bytes])
        if layout.code_copy_pages:
            _check_code_copies(layout, frames[:, copies_bytes:], normal)
        if hot:
            hp = layout.hot_copy_pages * P
            for c in range(1, layout.hot_copies):  # copy c = copy 0 rotated by c * S cores
                if not np.array_equal(np.roll(frames[:, :hp], c * layout.copy_shift, axis=0),
                                      frames[:, c * hp:(c + 1) * hp]):
                    raise LayoutError(f"hot copy {c} disagrees with hot copy 0")
            chunks = _from_cores(frames[:, :hp], hot * layout.hot_accesses,
                                 layout.access, layout.accesses_per_page, P, layout.hot_copy_pages)
            hnb, hcodes = decode_hot_frames(layout, chunks.reshape(hot, -1))
            bad = np.flatnonzero((hnb != neighbors[:hot]).any(axis=1))
            if bad.size:
                raise LayoutError(f"hot frame of vertex {int(bad[0])} disagrees with its normal "
                                  f"frame")
            live = hnb >= 0
            diff = (hcodes != codes[np.maximum(hnb, 0)]).any(axis=2) & live
            if diff.any():
                v = int(np.flatnonzero(diff.any(axis=1))[0])
                raise LayoutError(f"hot frame of vertex {v} carries PQ codes that disagree with "
                                  f"the neighbours' normal frames")
    except LayoutError as e:
        raise ImageError(f"{path}: corrupt frames: {e}") from None
    vectors = _from_cores(raw, n, layout.raw_stride, layout.raw_per_page, P,
                          layout.raw_pages_per_core)[:, :layout.vector_bytes].copy()
    hot_mask = np.zeros(n, dtype=bool)
    hot_mask[:hot] = True
    if sec["labels"].nbytes != 8 * n:
        raise ImageError(f"{path}: section labels has {sec['labels'].nbytes} bytes, the layout "
                         f"needs {8 * n}")
    labels = np.frombuffer(sec["labels"], dtype="<i8").astype(np.int64)
    try:
        index = Index(cfg=cfg, vectors=vectors, neighbors=neighbors, entry=entry,
                      codebook=codebook, codes=codes, hot=hot_mask,
                      quantiser=None if q is None else (float(q[0]), float(q[1])),
                      labels=labels)
    except IndexError_ as e:
        raise ImageError(f"{path}: decoded index is inconsistent: {e}") from None
    return Image(index, layout, frames, raw, meta)  # read-only views of the file bytes


def open_image(path: str | os.PathLike) -> Index:
    """The :class:`Index` stored in an image (neighbour lists and codes decoded from frames)."""
    return read_image(path).index
