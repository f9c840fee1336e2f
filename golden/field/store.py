"""The tiered field: chunk files on disk, two RAM tiers, a stride prefetcher, optional remote.

Tiers (a lookup stops at the first tier that holds the block, and the block moves up):

``L1``  a small exclusive LRU of blocks (``FieldOptions.l1_bytes``), the fastest tier;
``L2``  a larger exclusive LRU of blocks in RAM (``l2_bytes``); L1 victims are demoted here,
        prefetched blocks land here first (flagged), demand hits promote to L1;
``L3``  the chunk files on local storage, read with ``preadv`` (the OS page cache maps them;
        ``chunk_memmap`` gives a ``numpy.memmap`` of a chunk for zero-copy users);
``L4``  optional remote storage through fsspec: a missing local chunk is downloaded whole
        into L3 (promotion), ``flush`` uploads dirty chunks.

A *block* is ``FieldOptions.block_bytes`` of one chunk's data (``block_elems`` elements);
block key ``k = chunk * blocks_per_chunk + block_in_chunk``.  Unwritten chunks read as
zeros ("absent").  Hot = L1/L2 hit, warm = first demand use of a prefetched block, cold =
L3/L4 read.

Prefetch (threaded mode): every element ``get`` feeds the flat element index to a
:class:`StridePrefetcher`; on a *confirm* with stride ``s`` the blocks fetched ahead are
the blocks holding ``e + s*k`` (k = 1..depth) when ``|s| >= block_elems``, else the next
``depth`` blocks in the direction of ``s``.  Blocks already resident or in flight are
skipped; the rest are read by a thread pool (``posix_fadvise(WILLNEED)`` is issued first
so the kernel queues all reads at once) and inserted into L2 flagged *prefetched*.
Region reads (``batch_get`` of slices) train a second prefetcher on region start indices
and hint the kernel (``WILLNEED``) for the next ``depth`` regions of a confirmed stream.

Concurrency: one ``Field`` may be shared by any number of reader threads (cache state is
guarded by a lock, I/O happens outside it, chunk descriptors are reference counted).
One writer at a time: opening ``"r+"`` (or ``create``) takes an exclusive ``flock`` on
``field.lock`` and a second writer gets :class:`FieldLockedError`.  Any number of readers
(threads or processes) may run beside the writer.  Writes are copy-on-write per chunk: the
first write to a chunk after a flush copies the chunk file to ``<chunk>.pxc.tmp`` (sparse,
holes kept; a write covering the whole chunk skips the copy) and every write goes there;
``flush``/``close`` seal the copy, ``fsync`` it and rename it over the chunk (atomic).  A
reader's open chunk descriptor therefore always names a complete, sealed version: it never
sees a torn row nor a false checksum error.  A reader sees each chunk as of when it opened
it; :meth:`Field.refresh` moves it to the latest flushed state (cached blocks of a chunk
whose file changed are dropped, so one row never mixes two versions).  Unflushed writes
are lost if the writer dies; ``*.tmp`` files it leaves are removed by the next writer.

The chunk list ``chunks.pxm`` records every chunk written: a listed chunk whose file is
missing raises :class:`LostChunkError` (on read, partial write and ``verify``).  Values
written are cast with checks (:class:`FieldValueError` on overflow, NaN/infinity or a
fraction into an integer field, ...).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import operator
import os
import secrets
import shutil
import threading
import time
import zlib
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from math import prod
from pathlib import Path
from typing import Any

import numpy as np

from .errors import (CorruptChunkError, FieldClosedError, FieldError, FieldExistsError,
                     FieldIndexError, FieldLockedError, FieldNotFoundError, FieldValueError,
                     LostChunkError, ReadOnlyFieldError)
from .format import (CHUNK_HDR_BYTES, HEADER_NAME, LIST_NAME, LOCK_NAME, SEAL_MAX_BYTES,
                     ChunkHeader, FieldHeader, chunk_relpath, decode_chunk_list,
                     encode_chunk_list, normalize_dtype)
from .policy import LRUCache, StridePrefetcher

__all__ = ["FieldOptions", "FieldStats", "Field", "create", "open_field", "checked_cast"]

_MAX_CHUNK_BYTES = 1 << 40
_MAX_LOGICAL_BYTES = 1 << 62
_DEFAULT_CHUNK_BYTES = 1 << 20
_CRC_PIECE = 8 << 20
_TIERS = ("L1", "L2", "L3", "L4", "absent")


@dataclass(frozen=True)
class FieldOptions:
    """Run-time knobs of one open field (not stored in the file)."""

    block_bytes: int = 4096  # cache granularity (one OS page)
    l1_bytes: int = 1 << 20
    l2_bytes: int = 256 << 20
    prefetch_streams: int = 4
    prefetch_depth: int = 4
    prefetch_window: int | None = None  # elements; None: 64 blocks' worth
    # "kernel": posix_fadvise(WILLNEED) the blocks ahead, read them on demand (default);
    # "thread": a thread pool reads them into L2; "sync": read into L2 at once (tests)
    prefetch_mode: str = "kernel"
    prefetch_threads: int = 2
    prefetch_span_bytes: int = 64 << 10  # kernel mode: steps up to this are span-hinted
    early_hint: bool = True  # on a likely miss, WILLNEED the block before the bookkeeping
    max_open_chunks: int = 256
    region_direct_bytes: int = 256 << 10  # larger region pieces bypass the block cache
    region_piece_bytes: int = 64 << 20  # region reads materialise at most this much at once
    seal_on_flush: bool = True
    verify: bool = False  # check sealed chunks' data checksums when first opened

    def validate(self) -> None:
        if self.block_bytes < 1 or self.l1_bytes < 0 or self.l2_bytes < 0:
            raise FieldError("block_bytes must be >= 1 and cache budgets >= 0")
        if self.prefetch_streams < 1 or self.prefetch_depth < 0 or self.prefetch_threads < 1:
            raise FieldError("prefetch_streams >= 1, prefetch_depth >= 0, prefetch_threads >= 1")
        if self.max_open_chunks < 1:
            raise FieldError("max_open_chunks must be >= 1")
        if self.prefetch_mode not in ("kernel", "thread", "sync"):
            raise FieldError(f"prefetch_mode must be kernel, thread or sync, "
                             f"got {self.prefetch_mode!r}")


def _hist() -> list[int]:
    return [0] * 64


@dataclass
class FieldStats:
    """Counters of one open field.  ``tier_hits`` counts block lookups by serving tier."""

    gets: int = 0
    batch_gets: int = 0
    batch_elements: int = 0
    region_gets: int = 0
    tier_hits: dict = field(default_factory=lambda: {t: 0 for t in _TIERS})
    prefetch_issued: int = 0
    prefetch_used: int = 0  # first demand use of a prefetched block (includes late)
    prefetch_used_kernel: int = 0  # ... of a block hinted to the kernel (read from L3)
    prefetch_late: int = 0  # demand had to wait for the in-flight prefetch
    prefetch_wasted: int = 0  # prefetched block evicted or dropped before any use
    readahead_hints: int = 0  # posix_fadvise(WILLNEED) calls for region streams
    bytes_read: int = 0  # from local chunk files (blocks and regions)
    bytes_read_remote: int = 0  # downloaded from L4
    bytes_written: int = 0
    chunks_created: int = 0
    chunks_fetched: int = 0
    latency_get_ns: list = field(default_factory=_hist)  # bucket b: 2**(b-1) <= ns < 2**b
    latency_batch_ns: list = field(default_factory=_hist)

    def copy(self) -> "FieldStats":
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        kw["tier_hits"] = dict(self.tier_hits)
        kw["latency_get_ns"] = list(self.latency_get_ns)
        kw["latency_batch_ns"] = list(self.latency_batch_ns)
        return FieldStats(**kw)

    @property
    def lookups(self) -> int:
        return sum(self.tier_hits.values())

    @property
    def hot_warm_fraction(self) -> float:
        """Block lookups that were hot (L1/L2) or warm (a prefetch got there first).

        Warm includes blocks the kernel was asked to read ahead (``prefetch_mode="kernel"``,
        read from the OS page cache) and excludes thread prefetches the demand waited for.
        """
        n = self.lookups
        good = (self.tier_hits["L1"] + self.tier_hits["L2"] - self.prefetch_late
                + self.prefetch_used_kernel)
        return good / n if n else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["tier_hits"] = dict(self.tier_hits)
        for k in ("latency_get_ns", "latency_batch_ns"):
            d[k] = {f"<{1 << b}": n for b, n in enumerate(getattr(self, k)) if n}
        d["hot_warm_fraction"] = self.hot_warm_fraction
        return d

    def format(self) -> str:
        t = self.tier_hits
        lines = [
            f"gets {self.gets}  batch_gets {self.batch_gets} ({self.batch_elements} elements)  "
            f"region_gets {self.region_gets}",
            "tier hits: " + "  ".join(f"{k} {t[k]}" for k in _TIERS)
            + f"  (hot/warm {100 * self.hot_warm_fraction:.1f}%)",
            f"prefetch: issued {self.prefetch_issued}  used {self.prefetch_used} "
            f"(kernel {self.prefetch_used_kernel})  "
            f"late {self.prefetch_late}  wasted {self.prefetch_wasted}  "
            f"readahead hints {self.readahead_hints}",
            f"bytes: read {self.bytes_read}  remote {self.bytes_read_remote}  "
            f"written {self.bytes_written}  chunks created {self.chunks_created}  "
            f"fetched {self.chunks_fetched}",
        ]
        for name in ("latency_get_ns", "latency_batch_ns"):
            h = getattr(self, name)
            if any(h):
                lines.append(name + ": " + "  ".join(
                    f"<{_fmt_ns(1 << b)}:{n}" for b, n in enumerate(h) if n))
        return "\n".join(lines)


def _fmt_ns(ns: int) -> str:
    for unit, div in (("s", 10 ** 9), ("ms", 10 ** 6), ("us", 10 ** 3)):
        if ns >= div:
            return f"{ns / div:.3g}{unit}"
    return f"{ns}ns"


class _Chunk:
    __slots__ = ("c", "fd", "data_bytes", "sealed", "users", "retired", "remote_fresh", "ino")

    def __init__(self, c: int, fd: int, data_bytes: int, sealed: bool, remote_fresh: bool,
                 ino: tuple[int, int] = (0, 0)):
        self.c, self.fd, self.data_bytes, self.sealed = c, fd, data_bytes, sealed
        self.users, self.retired, self.remote_fresh = 0, False, remote_fresh
        self.ino = ino


def _resolve_remote(remote):
    if remote is None:
        return None
    import fsspec

    if isinstance(remote, tuple):
        fs, root = remote
    else:
        fs, root = fsspec.core.url_to_fs(str(remote))
    return fs, str(root).rstrip("/")


class Field:
    """An open field.  Build one with :func:`create` or :func:`open_field`."""

    def __init__(self, path, header: FieldHeader, writable: bool,
                 options: FieldOptions | None = None, remote=None, lock=None) -> None:
        self._closed = True  # until fully constructed (close() and __del__ are safe)
        self._lockfile = lock
        self.writable = bool(writable)
        self.options = options or FieldOptions()
        self.options.validate()
        self.path = Path(path)
        self.header = header
        self.writable = bool(writable)
        self.shape = header.shape
        self.ndim = len(self.shape)
        self.dtype = header.dtype
        self.itemsize = self.dtype.itemsize
        self.size = prod(self.shape)
        self.row_elems = prod(self.shape[1:])
        self.chunk_rows = header.chunk_rows
        self.chunk_shape = header.chunk_shape
        self.chunk_elems = self.chunk_rows * self.row_elems
        self.n_chunks = -(-self.shape[0] // self.chunk_rows)
        self._last_chunk = self.n_chunks - 1
        self._early_hint = self.options.early_hint
        self.block_elems = max(1, self.options.block_bytes // self.itemsize)
        self.blocks_per_chunk = -(-self.chunk_elems // self.block_elems)
        self._block_bytes = self.block_elems * self.itemsize
        self._elem_strides = tuple(prod(self.shape[i + 1:]) for i in range(self.ndim))
        self._lock = threading.Lock()
        self._wlock = threading.Lock()
        self._l1 = LRUCache(self.options.l1_bytes)
        self._l2 = LRUCache(self.options.l2_bytes)
        window = self.options.prefetch_window or 64 * self.block_elems
        self._pf = StridePrefetcher(self.options.prefetch_streams, self.options.prefetch_depth,
                                    window)
        self._rpf = StridePrefetcher(self.options.prefetch_streams, self.options.prefetch_depth)
        self._handles: OrderedDict[int, _Chunk] = OrderedDict()
        self._missing: set[int] = set()
        self._dirty: set[int] = set()
        self._inflight: dict[int, Future] = {}
        self._hinted: OrderedDict[int, None] = OrderedDict()  # kernel-mode prefetches
        self._frontier: dict[int, tuple[int, int]] = {}  # stream -> (step, hinted end)
        self._hinted_max = max(1, self.options.l2_bytes // (self.block_elems * self.itemsize))
        self._wgen = 0
        self._executor: ThreadPoolExecutor | None = None
        self._remote = _resolve_remote(remote)
        self._stats = FieldStats()
        self._shadow: set[int] = set()  # chunks with an unpublished copy (writer)
        self._ino: dict[int, tuple[int, int]] = {}  # chunk -> (dev, inode) of cached blocks
        self._pgen = 0  # bumped when a chunk's cached blocks are dropped (new file version)
        self._recorded: np.ndarray | None = None  # the chunk list (None: legacy field)
        if self.writable and self._lockfile is None:
            self._lockfile = _acquire_writer_lock(self.path)
        try:
            if self.writable:
                _remove_stale_tmp(self.path)
            self._recorded = self._load_chunk_list()
            if self.writable:
                self._reconcile_chunk_list()
        except BaseException:
            self._release_writer_lock()
            raise
        self._closed = False

    # ---------------------------------------------------------------- basics
    def __repr__(self) -> str:
        return (f"Field({str(self.path)!r}, shape={self.shape}, dtype={self.dtype}, "
                f"chunk_shape={self.chunk_shape}, {'rw' if self.writable else 'r'})")

    @property
    def nbytes(self) -> int:
        """Logical size in bytes."""
        return self.size * self.itemsize

    @property
    def uid(self) -> bytes:
        return self.header.uid

    def __enter__(self) -> "Field":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Flush (writer), release descriptors, caches and the writer lock."""
        if self._closed:
            return
        try:
            if self.writable:
                self.flush()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
            with self._lock:
                self._closed = True
                for h in self._handles.values():
                    h.retired = True
                    if h.users == 0:
                        os.close(h.fd)
                self._handles.clear()
                self._l1.clear()
                self._l2.clear()
            self._release_writer_lock()

    def __del__(self) -> None:  # a writer dropped without close(): publish its writes
        try:
            if not getattr(self, "_closed", True):
                self.close()
        except Exception:  # noqa: BLE001 - nothing to report to at garbage collection
            pass

    def _release_writer_lock(self) -> None:
        f, self._lockfile = getattr(self, "_lockfile", None), None
        if f is not None:
            f.close()  # releases the flock

    def refresh(self) -> None:
        """See the latest flushed state: reopen chunks, drop cached blocks, reload the list."""
        self._check_open()
        for f in list(self._inflight.values()):
            f.result()
        with self._lock:
            for c, h in list(self._handles.items()):
                if c in self._shadow:
                    continue
                del self._handles[c]
                h.retired = True
                if h.users == 0:
                    os.close(h.fd)
            self._l1.clear()
            self._l2.clear()
            self._ino.clear()
            self._missing.clear()
            self._wgen += 1
            self._pgen += 1
        self._recorded = self._load_chunk_list()

    # ---------------------------------------------------------------- chunk list
    def _load_chunk_list(self) -> np.ndarray | None:
        lp = self.path / LIST_NAME
        try:
            raw = lp.read_bytes()
        except FileNotFoundError:
            raw = None
        if raw is None and self._remote is not None:
            fs, root = self._remote
            if fs.exists(f"{root}/{LIST_NAME}"):
                raw = fs.cat_file(f"{root}/{LIST_NAME}")
        if raw is None:
            return None
        return decode_chunk_list(raw, self.uid, str(lp))

    def _is_recorded(self, c: int) -> bool:
        r = self._recorded
        if r is None or r.size == 0:
            return False
        i = int(np.searchsorted(r, np.uint64(c)))
        return i < r.size and int(r[i]) == c

    def _write_chunk_list(self, ids) -> None:
        lp = self.path / LIST_NAME
        tmp = self.path / (LIST_NAME + ".tmp")
        with builtin_open(tmp, "wb") as f:
            f.write(encode_chunk_list(ids, self.uid))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, lp)
        _fsync_dir(self.path)
        self._recorded = np.asarray(sorted(set(int(i) for i in ids)), dtype=np.uint64)

    def _reconcile_chunk_list(self) -> None:
        """Writer open: list chunk files the list lacks (a writer died between renaming a
        chunk into place and updating the list, or a legacy field without a list)."""
        disk = self.chunk_ids()
        if self._recorded is None:
            self._write_chunk_list(disk)
            return
        extra = [c for c in disk if not self._is_recorded(c)]
        if extra:
            self._write_chunk_list(self._recorded.tolist() + extra)

    def expected_chunk_ids(self) -> list[int]:
        """Chunks the field should have: the chunk list plus any chunk file on disk."""
        ids = set(self.chunk_ids())
        if self._recorded is not None:
            ids.update(int(c) for c in self._recorded.tolist())
        return sorted(ids)

    def _lost(self, c: int) -> LostChunkError:
        return LostChunkError(
            f"chunk {c} is listed in {self.path / LIST_NAME} but its file "
            f"{self._chunk_path(c)} is missing (deleted or lost): restore it, or rewrite the "
            f"whole chunk")

    def _check_open(self) -> None:
        if self._closed:
            raise FieldClosedError(f"field {self.path} is closed")

    def stats(self) -> FieldStats:
        with self._lock:
            return self._stats.copy()

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = FieldStats()

    def clear_cache(self) -> None:
        """Empty L1/L2 and the prefetchers' state (counted as wasted for unused prefetches)."""
        for f in list(self._inflight.values()):
            f.result()
        with self._lock:
            for e in self._l1.clear() + self._l2.clear():
                self._stats.prefetch_wasted += e.prefetched
            self._stats.prefetch_wasted += len(self._hinted)
            self._hinted.clear()
            self._pf.reset()
            self._rpf.reset()
            self._frontier.clear()
            self._missing.clear()

    # ---------------------------------------------------------------- indexing
    def _flat_full(self, index) -> int | None:
        """Flat element index of a full integer index, or None if ``index`` is partial."""
        if not isinstance(index, tuple):
            index = (index,)
        if len(index) != self.ndim:
            if len(index) > self.ndim:
                raise FieldIndexError(
                    f"too many indices ({len(index)}) for a {self.ndim}-d field")
            return None
        e = 0
        for i, x in enumerate(index):
            if type(x) is not int:
                try:
                    x = operator.index(x)
                except TypeError:
                    if isinstance(x, (slice, type(Ellipsis))):
                        return None
                    raise FieldIndexError(f"index {x!r} on axis {i} is not an integer") from None
            n = self.shape[i]
            if x < 0:
                x += n
            if not 0 <= x < n:
                raise FieldIndexError(f"index {index[i]} out of range for axis {i} of size {n}")
            e += x * self._elem_strides[i]
        return e

    def _key(self, e: int) -> tuple[int, int]:
        c, off = divmod(e, self.chunk_elems)
        b, o = divmod(off, self.block_elems)
        return c * self.blocks_per_chunk + b, o

    def _chunk_elems_of(self, c: int) -> int:
        if c < self._last_chunk:
            return self.chunk_elems
        return min(self.chunk_rows, self.shape[0] - c * self.chunk_rows) * self.row_elems

    def _key_valid(self, k: int) -> bool:
        if k < 0:
            return False
        c, b = divmod(k, self.blocks_per_chunk)
        return c < self.n_chunks and b * self.block_elems < self._chunk_elems_of(c)

    # ---------------------------------------------------------------- chunk handles
    def _chunk_path(self, c: int) -> Path:
        return self.path / chunk_relpath(c)

    def _acquire(self, c: int, create: bool = False) -> _Chunk | None:
        with self._lock:
            self._check_open()
            h = self._handles.get(c)
            if h is not None:
                self._handles.move_to_end(c)
                h.users += 1
                return h
            if not create and c in self._missing:
                return None
        h = self._open_chunk(c, create)
        with self._lock:
            have = self._handles.get(c)
            if have is not None:
                if h is not None:
                    os.close(h.fd)
                have.users += 1
                return have
            if h is None:
                self._missing.add(c)
                return None
            self._missing.discard(c)
            if not self.writable:
                ino = h.ino
                old = self._ino.get(c)
                if old is not None and old != ino:
                    self._purge_chunk(c)
                self._ino[c] = ino
            self._handles[c] = h
            h.users += 1
            if len(self._handles) > self.options.max_open_chunks:
                for oc in list(self._handles):
                    if len(self._handles) <= self.options.max_open_chunks:
                        break
                    old = self._handles[oc]
                    if old is h:
                        continue
                    del self._handles[oc]
                    old.retired = True
                    if old.users == 0:
                        os.close(old.fd)
            return h

    def _purge_chunk(self, c: int) -> None:
        """Drop chunk ``c``'s cached blocks (lock held): its file is a new version."""
        bpc = self.blocks_per_chunk
        for k in range(c * bpc, (c + 1) * bpc):
            for cache in (self._l1, self._l2):
                if k in cache._d:
                    e = cache.pop(k)
                    if e is not None and e.prefetched:
                        self._stats.prefetch_wasted += 1
            self._hinted.pop(k, None)
        self._wgen += 1
        self._pgen += 1

    def _release(self, h: _Chunk) -> None:
        with self._lock:
            h.users -= 1
            if h.retired and h.users == 0:
                os.close(h.fd)

    def _shadow_path(self, c: int) -> Path:
        p = self._chunk_path(c)
        return p.with_name(p.name + ".tmp")

    def _open_chunk(self, c: int, create: bool = False) -> _Chunk | None:
        p = self._chunk_path(c)
        flags = os.O_RDWR if self.writable else os.O_RDONLY
        remote_fresh = False
        if c in self._shadow:
            fd = os.open(self._shadow_path(c), flags)
        else:
            try:
                fd = os.open(p, flags)
            except FileNotFoundError:
                fd = -1
                if self._remote is not None and self._fetch_remote_chunk(c):
                    fd = os.open(p, flags)
                    remote_fresh = True
                if fd < 0:
                    if self._is_recorded(c):
                        raise self._lost(c) from None
                    return None
        try:
            return self._validate_chunk(c, fd, remote_fresh)
        except BaseException:
            os.close(fd)
            raise

    def _validate_chunk(self, c: int, fd: int, remote_fresh: bool) -> _Chunk:
        where = f"chunk {c} ({self._chunk_path(c)})"
        hdr = ChunkHeader.decode(os.pread(fd, 64, 0), where)
        want = self._chunk_elems_of(c) * self.itemsize
        if hdr.index != c:
            raise CorruptChunkError(f"{where}: file holds chunk {hdr.index}, misplaced")
        if hdr.uid != self.uid:
            raise CorruptChunkError(f"{where}: belongs to another field (uid mismatch)")
        if hdr.data_bytes != want:
            raise CorruptChunkError(f"{where}: header says {hdr.data_bytes} data bytes, "
                                    f"the field's chunk holds {want}")
        size = os.fstat(fd).st_size
        if size != CHUNK_HDR_BYTES + want:
            raise CorruptChunkError(f"{where}: file is {size} bytes, expected "
                                    f"{CHUNK_HDR_BYTES + want} (truncated or extended)")
        if self.options.verify and hdr.sealed:
            crc = _crc_data(fd, want)
            if crc != hdr.data_crc:
                raise CorruptChunkError(f"{where}: data checksum mismatch "
                                        f"(stored {hdr.data_crc:08x}, computed {crc:08x})")
        st = os.fstat(fd)
        return _Chunk(c, fd, want, hdr.sealed, remote_fresh, (st.st_dev, st.st_ino))

    def _make_shadow(self, c: int, full: bool) -> None:
        """Writer (``_wlock`` held): give chunk ``c`` an unpublished copy to write into.

        The copy holds the chunk's current data (sparse copy; skipped when ``full``, a write
        that covers the whole chunk) under an unsealed header; it replaces the chunk at the
        next :meth:`flush`.  A partial write to a lost chunk raises :class:`LostChunkError`.
        """
        if c in self._shadow:
            return
        src = None if full else self._acquire(c)
        try:
            if src is None and not full and self._is_recorded(c):
                raise self._lost(c)
            sp = self._shadow_path(c)
            sp.parent.mkdir(parents=True, exist_ok=True)
            data_bytes = self._chunk_elems_of(c) * self.itemsize
            fd = os.open(sp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.ftruncate(fd, CHUNK_HDR_BYTES + data_bytes)
                os.pwrite(fd, ChunkHeader(c, data_bytes, self.uid).encode(), 0)
                if src is not None:
                    _copy_sparse(src.fd, fd, CHUNK_HDR_BYTES, data_bytes)
            finally:
                os.close(fd)
        finally:
            if src is not None:
                self._release(src)
        with self._lock:
            if not self._is_recorded(c) and not self._chunk_path(c).exists():
                self._stats.chunks_created += 1
            self._shadow.add(c)
            self._missing.discard(c)
            old = self._handles.pop(c, None)
            if old is not None:
                old.retired = True
                if old.users == 0:
                    os.close(old.fd)

    def _fetch_remote_chunk(self, c: int) -> bool:
        fs, root = self._remote
        rel = chunk_relpath(c)
        rpath = f"{root}/{rel}"
        if not fs.exists(rpath):
            return False
        p = self._chunk_path(c)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f"{p.name}.dl{os.getpid()}.{threading.get_ident()}")
        try:
            fs.get_file(rpath, str(tmp))
            n = os.stat(tmp).st_size
            try:
                os.link(tmp, p)
            except FileExistsError:
                pass
        finally:
            if tmp.exists():
                os.unlink(tmp)
        with self._lock:
            self._stats.bytes_read_remote += n
            self._stats.chunks_fetched += 1
        return True

    # ---------------------------------------------------------------- blocks
    def _read_block(self, k: int) -> tuple[np.ndarray, str]:
        c, b = divmod(k, self.blocks_per_chunk)
        start = b * self.block_elems
        n = min(self.block_elems, self._chunk_elems_of(c) - start)
        h = self._acquire(c)
        if h is None:
            return np.zeros(n, self.dtype), "absent"
        try:
            buf = np.empty(n, self.dtype)
            got = os.preadv(h.fd, [buf], CHUNK_HDR_BYTES + start * self.itemsize)
            if got != buf.nbytes:
                raise CorruptChunkError(f"chunk {c}: short read ({got} of {buf.nbytes} bytes), "
                                        "the file was truncated")
            with self._lock:
                tier = "L4" if h.remote_fresh else "L3"
                h.remote_fresh = False
                self._stats.bytes_read += buf.nbytes
            return buf, tier
        finally:
            self._release(h)

    def _insert_l1(self, k: int, blk: np.ndarray) -> None:
        ev = self._l1.put(k, blk, blk.nbytes)
        if ev:
            for e in ev:
                self._insert_l2(e.key, e.value, e.prefetched)

    def _insert_l2(self, k: int, blk: np.ndarray, prefetched: bool) -> None:
        for e in self._l2.put(k, blk, blk.nbytes, prefetched):
            self._stats.prefetch_wasted += e.prefetched

    def _lookup(self, k: int, promote: bool) -> np.ndarray | None:
        """L1 then L2 (caller holds the lock); counts the hit; None on a miss."""
        e = self._l1._d.get(k)  # inlined LRUCache.get / __contains__ (hot path)
        if e is not None:
            self._l1._d.move_to_end(k)
            self._stats.tier_hits["L1"] += 1
            return e[0]
        if k not in self._l2._d:
            return None
        self._stats.tier_hits["L2"] += 1
        if self._l2.take_prefetched(k):
            self._stats.prefetch_used += 1
        if promote:
            e = self._l2.pop(k)
            self._insert_l1(k, e.value)
            return e.value
        return self._l2.get(k)

    def _block(self, k: int, promote: bool = True) -> np.ndarray:
        with self._lock:
            blk = self._lookup(k, promote)
            if blk is not None:
                return blk
            fut = self._inflight.get(k)
            gen = self._wgen
        return self._miss(k, promote, fut, gen)

    def _fast_miss(self, k: int, o: int, h: _Chunk, gen: int, t0: int):
        """Demand miss on an open chunk (``h`` pinned by the caller): one read, one lock."""
        c, b = divmod(k, self.blocks_per_chunk)
        start = b * self.block_elems
        be = self.block_elems
        if c == self._last_chunk or start + be > self.chunk_elems:
            be = min(be, self._chunk_elems_of(c) - start)
        buf = np.empty(be, self.dtype)
        try:
            got = os.preadv(h.fd, [buf], CHUNK_HDR_BYTES + start * self.itemsize)
        except BaseException:
            self._release(h)
            raise
        with self._lock:
            h.users -= 1
            if h.retired and h.users == 0:
                os.close(h.fd)
            if got != buf.nbytes:
                raise CorruptChunkError(f"chunk {c}: short read ({got} of {buf.nbytes} bytes), "
                                        "the file was truncated")
            st = self._stats
            st.bytes_read += got
            st.tier_hits["L4" if h.remote_fresh else "L3"] += 1
            h.remote_fresh = False
            if self._hinted and k in self._hinted:
                del self._hinted[k]
                st.prefetch_used += 1
                st.prefetch_used_kernel += 1
            if gen == self._wgen and k not in self._l1._d and k not in self._l2._d:
                self._insert_l1(k, buf)
            v = buf[o]
            st.latency_get_ns[min(63, (time.perf_counter_ns() - t0).bit_length())] += 1
        return v

    def _miss(self, k: int, promote: bool, fut: Future | None, gen: int) -> np.ndarray:
        """Serve a block that L1/L2 did not have (no lock held)."""
        if fut is not None:
            fut.result()
            with self._lock:
                blk = self._lookup(k, promote)
                if blk is not None:
                    self._stats.prefetch_late += 1
                    return blk
                gen = self._wgen
        blk, tier = self._read_block(k)
        with self._lock:
            st = self._stats
            st.tier_hits[tier] += 1
            if self._hinted and k in self._hinted:
                del self._hinted[k]
                st.prefetch_used += 1
                st.prefetch_used_kernel += 1
            if gen == self._wgen and k not in self._l1 and k not in self._l2:
                if promote:
                    self._insert_l1(k, blk)
                else:
                    self._insert_l2(k, blk, False)
        return blk

    # ---------------------------------------------------------------- prefetch
    def _observe(self, e: int, k: int) -> list[int]:
        """Train the element prefetcher (lock held); return block keys to fetch ahead."""
        _s, code, s = self._pf.observe_raw(e)
        if code != 1:
            return []
        depth = self.options.prefetch_depth
        d1, d2, infl, hinted = self._l1._d, self._l2._d, self._inflight, self._hinted
        out = []
        if abs(s) >= self.block_elems:
            ce, be, bpc, size = self.chunk_elems, self.block_elems, self.blocks_per_chunk, self.size
            for t in range(e + s, e + s * (depth + 1), s):
                if 0 <= t < size:
                    c, off = divmod(t, ce)
                    t = c * bpc + off // be
                    if t not in d1 and t not in d2 and t not in infl and t not in hinted:
                        out.append(t)
        else:
            step = 1 if s > 0 else -1
            for t in range(k + step, k + step * (depth + 1), step):
                if (t not in d1 and t not in d2 and t not in infl and t not in hinted
                        and self._key_valid(t)):
                    out.append(t)
        if not out or self.options.prefetch_mode != "kernel":
            return out
        self._kernel_prefetch(e, _s, s, out)
        return []

    def _kernel_prefetch(self, e: int, stream: int, s: int, keys: list[int]) -> None:
        """Kernel-mode issue (lock held): WILLNEED, then remember the keys as hinted.

        Small steps (``|step| * itemsize <= prefetch_span_bytes``, step = the stride or one
        block if the stride is smaller) are hinted as one span reaching ``2 * depth`` steps
        ahead, renewed only when the prefetch targets pass the end of the last span, so the
        kernel reads a few large extents instead of many 4 kB pages.  Larger steps hint
        each target block on its own.
        """
        self._stats.prefetch_issued += len(keys)
        be, depth = self.block_elems, self.options.prefetch_depth
        step = s if abs(s) >= be else (be if s > 0 else -be)
        if abs(step) * self.itemsize <= self.options.prefetch_span_bytes:
            fr = self._frontier.get(stream)
            far = e + step * depth
            if fr is None or fr[0] != step or (far - fr[1]) * step > 0:
                start = e + step if fr is None or fr[0] != step else fr[1]
                end = e + step * 2 * depth
                a, z = (start, end) if step > 0 else (end, start)
                a, z = max(0, a), min(self.size, z + 1)
                if a < z:
                    self._hint_range(a, z)
                self._frontier[stream] = (step, end)
        else:
            bb = self._block_bytes
            for t in keys:
                c, b = divmod(t, self.blocks_per_chunk)
                h = self._handles.get(c)
                if h is not None:
                    os.posix_fadvise(h.fd, CHUNK_HDR_BYTES + b * bb, bb, os.POSIX_FADV_WILLNEED)
        hinted = self._hinted
        for t in keys:
            hinted[t] = None
        while len(hinted) > self._hinted_max:
            hinted.popitem(last=False)
            self._stats.prefetch_wasted += 1

    def _hint_range(self, f0: int, f1: int) -> int:
        """posix_fadvise(WILLNEED) over flat elements [f0, f1) of open chunks (lock held)."""
        n = 0
        pos = f0
        while pos < f1:
            c = pos // self.chunk_elems
            cend = min(f1, (c + 1) * self.chunk_elems)
            h = self._handles.get(c)
            if h is not None:
                os.posix_fadvise(h.fd, CHUNK_HDR_BYTES + (pos - c * self.chunk_elems)
                                 * self.itemsize, (cend - pos) * self.itemsize,
                                 os.POSIX_FADV_WILLNEED)
                n += 1
            pos = cend
        return n

    def _issue(self, keys: list[int]) -> None:
        if not keys:
            return
        mode = self.options.prefetch_mode
        with self._lock:
            self._stats.prefetch_issued += len(keys)
            gen = self._wgen
            if mode == "thread":
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self.options.prefetch_threads,
                                                        thread_name_prefix="field-prefetch")
                for t in keys:
                    self._inflight[t] = self._executor.submit(self._prefetch_task, t, gen)
                return
        for t in keys:  # "sync"
            self._prefetch_task(t, gen)

    def _prefetch_task(self, k: int, gen: int) -> None:
        try:
            blk, _tier = self._read_block(k)
        except (FieldError, OSError):
            with self._lock:
                self._inflight.pop(k, None)
                self._stats.prefetch_wasted += 1
            return
        with self._lock:
            self._inflight.pop(k, None)
            if gen != self._wgen or k in self._l1 or k in self._l2:
                self._stats.prefetch_wasted += 1
                return
            self._insert_l2(k, blk, True)

    def wait_prefetches(self) -> None:
        """Block until every in-flight prefetch has landed (for tests and benchmarks)."""
        while True:
            with self._lock:
                futs = list(self._inflight.values())
            if not futs:
                return
            for f in futs:
                f.result()

    # ---------------------------------------------------------------- reads
    def get(self, index):
        """Element at a full index (numpy scalar) or the sub-array at a partial index.

        ``index``: an int (axis 0) or a tuple of ints / slices, numpy style (negative ints
        count from the end).  Out-of-range indices raise :class:`FieldIndexError`.
        """
        self._check_open()
        e = self._flat_full(index)
        if e is None:
            return self.batch_get(index if isinstance(index, tuple) else (index,))
        return self._get_flat(e)

    def activate(self, *coords):
        """``activate(x, y, z)`` == ``get((x, y, z))``: read (lazily) one element or row."""
        return self.get(tuple(coords))

    __getitem__ = get

    def get_flat(self, e: int):
        """Element at flat C-order index ``e``."""
        if type(e) is not int:
            e = operator.index(e)
        if not 0 <= e < self.size:
            raise FieldIndexError(f"flat index {e} out of range 0..{self.size - 1}")
        if self._closed:
            self._check_open()
        return self._get_flat(e)

    def _get_flat(self, e: int):
        t0 = time.perf_counter_ns()
        c, off = divmod(e, self.chunk_elems)
        b, o = divmod(off, self.block_elems)
        k = c * self.blocks_per_chunk + b
        if self._early_hint and k not in self._l1._d and k not in self._l2._d:
            # likely miss: start the read now so the kernel's I/O overlaps the bookkeeping
            # below (membership tests and the hint are advisory, safe without the lock)
            h = self._handles.get(c)
            if h is not None:
                try:
                    os.posix_fadvise(h.fd, CHUNK_HDR_BYTES + b * self._block_bytes,
                                     self._block_bytes, os.POSIX_FADV_WILLNEED)
                except OSError:  # descriptor closed by a concurrent eviction: no hint
                    pass
        with self._lock:
            st = self._stats
            st.gets += 1
            ahead = self._observe(e, k) if self.options.prefetch_depth else None
            blk = self._lookup(k, True)
            if blk is not None and not ahead:  # fast path: one lock section
                v = blk[o]
                st.latency_get_ns[min(63, (time.perf_counter_ns() - t0).bit_length())] += 1
                return v
            fut = None if blk is not None else self._inflight.get(k)
            gen = self._wgen
            h = None
            if blk is None and fut is None:  # pin the chunk's descriptor for the fast miss
                h = self._handles.get(c)
                if h is not None:
                    h.users += 1
        if ahead:
            self._issue(ahead)
        if h is not None:
            return self._fast_miss(k, o, h, gen, t0)
        v = (self._miss(k, True, fut, gen) if blk is None else blk)[o]
        dt = time.perf_counter_ns() - t0
        with self._lock:
            self._stats.latency_get_ns[min(63, dt.bit_length())] += 1
        return v

    def batch_get(self, sel) -> np.ndarray:
        """Many elements at once.

        ``sel`` is either a region (a slice, or a tuple of slices / ints, numpy basic
        indexing, Ellipsis allowed) returning an array of the region's shape, or an integer
        array: shape ``(n, ndim)`` = n coordinates, shape ``(n,)`` = n flat C-order indices
        (the same thing for 1-d fields), returning an ``(n,)`` array.
        """
        self._check_open()
        t0 = time.perf_counter_ns()
        if isinstance(sel, (slice, tuple, int, np.integer)) or sel is Ellipsis:
            out = self._read_region(sel)
        else:
            out = self._gather(self._flat_indices(sel))
        dt = time.perf_counter_ns() - t0
        with self._lock:
            self._stats.latency_batch_ns[min(63, dt.bit_length())] += 1
        return out

    def _flat_indices(self, idx) -> np.ndarray:
        a = np.asarray(idx)
        if a.size == 0:
            return np.zeros(0, np.int64)
        if a.dtype.kind not in "iu":
            raise FieldIndexError(f"index arrays must be integers, got {a.dtype}")
        a = a.astype(np.int64, copy=False)
        if a.ndim == 1:
            bad = (a < 0) | (a >= self.size)
            if bad.any():
                raise FieldIndexError(f"flat index {a[bad][0]} out of range 0..{self.size - 1}")
            return a
        if a.ndim != 2 or a.shape[1] != self.ndim:
            raise FieldIndexError(f"coordinate array must have shape (n, {self.ndim}), "
                                  f"got {a.shape}")
        shape = np.asarray(self.shape, np.int64)
        a = np.where(a < 0, a + shape, a)
        bad = ((a < 0) | (a >= shape)).any(axis=1)
        if bad.any():
            raise FieldIndexError(f"coordinate {tuple(a[bad][0])} out of range for {self.shape}")
        return a @ np.asarray(self._elem_strides, np.int64)

    def _gather(self, flat: np.ndarray) -> np.ndarray:
        with self._lock:
            self._stats.batch_gets += 1
            self._stats.batch_elements += int(flat.size)
        for _attempt in range(8):  # a chunk file changed under the gather: read again
            g = self._pgen
            out = self._gather_once(flat)
            if self._pgen == g:
                break
        return out

    def _gather_once(self, flat: np.ndarray) -> np.ndarray:
        out = np.empty(flat.size, self.dtype)
        piece = 1 << 16
        for s in range(0, flat.size, piece):
            f = flat[s:s + piece]
            c, off = np.divmod(f, self.chunk_elems)
            b, o = np.divmod(off, self.block_elems)
            uk, inv = np.unique(c * self.blocks_per_chunk + b, return_inverse=True)
            blocks = self._blocks_many(uk.tolist())
            inv = inv.reshape(-1)
            if len(blocks) * self.block_elems > 4 * f.size:  # sparse: pick element by element
                out[s:s + piece] = [blocks[i][j] for i, j in zip(inv.tolist(), o.tolist())]
            else:  # dense: one concatenation, one fancy index
                starts = np.zeros(len(blocks), np.int64)
                np.cumsum([x.size for x in blocks[:-1]], out=starts[1:])
                out[s:s + piece] = np.concatenate(blocks)[starts[inv] + o]
        return out

    def _blocks_many(self, keys: list[int]) -> list[np.ndarray]:
        """Blocks for many keys: one lock pass for the hits, the misses hinted to the kernel
        all at once (parallel I/O), read, then inserted into L2 in one more lock pass."""
        bpc, bb = self.blocks_per_chunk, self._block_bytes
        blocks: list = [None] * len(keys)
        miss: list[int] = []
        pins: dict[int, _Chunk] = {}
        with self._lock:
            for i, k in enumerate(keys):
                blk = self._lookup(k, False)
                if blk is None:
                    miss.append(i)
                    c = k // bpc
                    if c not in pins:
                        h = self._handles.get(c)
                        if h is not None:
                            h.users += 1
                            pins[c] = h
                else:
                    blocks[i] = blk
            gen = self._wgen
        if not miss:
            return blocks
        tiers: list[str] = []
        nbytes = 0
        try:
            if len(miss) > 1:
                for i in miss:
                    c, b = divmod(keys[i], bpc)
                    h = pins.get(c)
                    if h is not None:
                        os.posix_fadvise(h.fd, CHUNK_HDR_BYTES + b * bb, bb,
                                         os.POSIX_FADV_WILLNEED)
            for i in miss:
                k = keys[i]
                c, b = divmod(k, bpc)
                h = pins.get(c)
                if h is None:
                    blocks[i], tier = self._read_block(k)
                    tiers.append(tier)
                    continue
                start = b * self.block_elems
                buf = np.empty(min(self.block_elems, self._chunk_elems_of(c) - start), self.dtype)
                got = os.preadv(h.fd, [buf], CHUNK_HDR_BYTES + start * self.itemsize)
                if got != buf.nbytes:
                    raise CorruptChunkError(f"chunk {c}: short read ({got} of {buf.nbytes} "
                                            "bytes), the file was truncated")
                nbytes += got
                tiers.append("L4" if h.remote_fresh else "L3")
                h.remote_fresh = False
                blocks[i] = buf
        finally:
            with self._lock:
                for h in pins.values():
                    h.users -= 1
                    if h.retired and h.users == 0:
                        os.close(h.fd)
        with self._lock:
            st = self._stats
            st.bytes_read += nbytes
            for t in tiers:
                st.tier_hits[t] += 1
            same = gen == self._wgen
            for i in miss:
                k = keys[i]
                if self._hinted and k in self._hinted:
                    del self._hinted[k]
                    st.prefetch_used += 1
                    st.prefetch_used_kernel += 1
                if same and k not in self._l1 and k not in self._l2:
                    self._insert_l2(k, blocks[i], False)
        return blocks

    def _normalize_region(self, sel) -> tuple[tuple, tuple]:
        """(axis-0 slice or int, inner selection tuple) from a numpy basic index."""
        if not isinstance(sel, tuple):
            sel = (sel,)
        if any(s is Ellipsis for s in sel):
            i = next(j for j, s in enumerate(sel) if s is Ellipsis)
            fill = self.ndim - (len(sel) - 1)
            sel = sel[:i] + (slice(None),) * fill + sel[i + 1:]
        if len(sel) > self.ndim:
            raise FieldIndexError(f"too many indices ({len(sel)}) for a {self.ndim}-d field")
        sel = tuple(sel) + (slice(None),) * (self.ndim - len(sel))
        norm = []
        for ax, (s, n) in enumerate(zip(sel, self.shape)):
            if isinstance(s, slice):
                norm.append(s)
                continue
            try:
                x = operator.index(s)
            except TypeError:
                raise FieldIndexError(f"unsupported index {s!r} on axis {ax}: use ints, "
                                      "slices, or an index array with batch_get") from None
            if x < 0:
                x += n
            if not 0 <= x < n:
                raise FieldIndexError(f"index {s} out of range for axis {ax} of size {n}")
            norm.append(x)
        return norm[0], tuple(norm[1:])

    def _read_region(self, sel) -> np.ndarray:
        s0, inner = self._normalize_region(sel)
        with self._lock:
            self._stats.region_gets += 1
        if isinstance(s0, int):
            rows = range(s0, s0 + 1)
        else:
            rows = range(*s0.indices(self.shape[0]))
        row_bytes = self.row_elems * self.itemsize
        parts = []
        if len(rows) == 0:
            return np.empty((0,) + self.shape[1:], self.dtype)[(slice(None),) + inner]
        step = rows.step
        lo, hi = min(rows[0], rows[-1]), max(rows[0], rows[-1]) + 1
        dense = abs(step) == 1 or (hi - lo) <= 4 * len(rows)
        self._region_hint(lo * self.row_elems, (hi - lo) * self.row_elems)
        per = max(1, self.options.region_piece_bytes // max(1, row_bytes))
        if dense:
            for a in range(lo, hi, per):
                b = min(hi, a + per)
                blk = self._read_rows(a, b)
                if step != 1:  # rows of this piece, in the selection's order
                    blk = blk[[r - a for r in rows if a <= r < b]]
                parts.append(blk[(slice(None),) + inner])
            if step < 0:
                parts = parts[::-1]
        else:
            for r in rows:
                parts.append(self._read_rows(r, r + 1)[(slice(None),) + inner])
        out = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        if isinstance(s0, int):
            out = out[0]
        return out if np.ndim(out) == 0 else np.ascontiguousarray(out)

    def _region_hint(self, f0: int, n: int) -> None:
        if not self.options.prefetch_depth or n * self.itemsize <= self.options.region_direct_bytes:
            return
        with self._lock:
            d = self._rpf.observe(f0)
        for t in d.targets:
            if d.stride != n or not 0 <= t < self.size:
                continue
            with self._lock:
                self._stats.readahead_hints += self._hint_range(t, min(self.size, t + n))

    def _read_rows(self, r0: int, r1: int) -> np.ndarray:
        """Rows [r0, r1) as a fresh array of shape (r1 - r0, *shape[1:])."""
        out = np.empty((r1 - r0) * self.row_elems, self.dtype)
        f0, f1 = r0 * self.row_elems, r1 * self.row_elems
        pos = f0
        while pos < f1:
            c = pos // self.chunk_elems
            cend = min(f1, (c + 1) * self.chunk_elems)
            view = out[pos - f0:cend - f0]
            off = pos - c * self.chunk_elems
            if view.nbytes <= self.options.region_direct_bytes:
                g = self._pgen
                self._copy_via_blocks(pos, cend, view)
                if self._pgen != g:  # a chunk file changed under the copy: one version only
                    self._read_direct(c, off, view)
            else:
                self._read_direct(c, off, view)
            pos = cend
        return out.reshape((r1 - r0,) + self.shape[1:])

    def _copy_via_blocks(self, f0: int, f1: int, view: np.ndarray) -> None:
        e = f0
        while e < f1:
            k, o = self._key(e)
            blk = self._block(k, promote=False)
            n = min(f1 - e, blk.size - o)
            view[e - f0:e - f0 + n] = blk[o:o + n]
            e += n

    def _read_direct(self, c: int, off: int, view: np.ndarray) -> None:
        h = self._acquire(c)
        if h is None:
            view[:] = 0
            with self._lock:
                self._stats.tier_hits["absent"] += 1
            return
        try:
            got = os.preadv(h.fd, [view], CHUNK_HDR_BYTES + off * self.itemsize)
            if got != view.nbytes:
                raise CorruptChunkError(f"chunk {c}: short read ({got} of {view.nbytes} bytes)")
            with self._lock:
                self._stats.tier_hits["L4" if h.remote_fresh else "L3"] += 1
                h.remote_fresh = False
                self._stats.bytes_read += got
        finally:
            self._release(h)

    # ---------------------------------------------------------------- writes
    def _check_writable(self) -> None:
        self._check_open()
        if not self.writable:
            raise ReadOnlyFieldError(f"field {self.path} is open read-only")

    def set(self, index, value) -> None:
        """Write one element (full index) or a sub-array (partial index / region)."""
        self._check_writable()
        e = self._flat_full(index)
        if e is None:
            self.batch_set(index if isinstance(index, tuple) else (index,), value)
            return
        self._write_flat(e, self._checked(value).reshape(1))

    __setitem__ = set

    def batch_set(self, sel, values) -> None:
        """Write a region (slices/ints) or elements at an integer index array (see batch_get)."""
        self._check_writable()
        if isinstance(sel, (slice, tuple, int, np.integer)) or sel is Ellipsis:
            s0, inner = self._normalize_region(sel)
            rows = range(s0, s0 + 1) if isinstance(s0, int) else range(*s0.indices(self.shape[0]))
            if len(rows) == 0:
                return
            full_inner = all(isinstance(s, slice) and s.indices(n) == (0, n, 1)
                             for s, n in zip(inner, self.shape[1:]))
            if rows.step == 1 and full_inner:
                shape = (len(rows),) + self.shape[1:]
                try:
                    data = np.broadcast_to(self._checked(values),
                                           shape if not isinstance(s0, int) else self.shape[1:])
                except ValueError as e:
                    if isinstance(e, FieldError):
                        raise
                    raise FieldValueError(f"values do not fit the region: {e}") from None
                self._write_flat(rows[0] * self.row_elems, np.ascontiguousarray(data).reshape(-1))
                return
            lo, hi = min(rows[0], rows[-1]), max(rows[0], rows[-1]) + 1
            with self._wlock:
                buf = self._read_rows(lo, hi)
                local = (slice(rows[0] - lo, None if rows.step < 0 and rows[-1] == lo
                               else rows[-1] - lo + (1 if rows.step > 0 else -1), rows.step)
                         if not isinstance(s0, int) else s0 - lo,) + inner
                try:
                    buf[local] = self._checked(values)
                except ValueError as e:
                    if isinstance(e, FieldError):
                        raise
                    raise FieldValueError(f"values do not fit the region: {e}") from None
                self._write_flat(lo * self.row_elems, buf.reshape(-1), locked=True)
            return
        flat = self._flat_indices(sel)
        try:
            vals = np.broadcast_to(self._checked(values), flat.shape)
        except ValueError as e:
            if isinstance(e, FieldError):
                raise
            raise FieldValueError(f"values do not fit the index array: {e}") from None
        order = np.argsort(flat, kind="stable")
        with self._wlock:
            for i in order.tolist():
                self._write_flat(int(flat[i]), vals[i:i + 1], locked=True)

    def _checked(self, values) -> np.ndarray:
        """``values`` as this field's dtype, refusing any cast that changes a value."""
        return checked_cast(values, self.dtype)

    def _write_flat(self, f0: int, data: np.ndarray, locked: bool = False) -> None:
        if not locked:
            with self._wlock:
                return self._write_flat(f0, data, locked=True)
        data = np.ascontiguousarray(data, dtype=self.dtype)
        f1 = f0 + data.size
        if not 0 <= f0 <= f1 <= self.size:
            raise FieldIndexError(f"write of {data.size} elements at {f0} exceeds the field")
        pos = f0
        while pos < f1:
            c = pos // self.chunk_elems
            cend = min(f1, (c + 1) * self.chunk_elems)
            c0 = c * self.chunk_elems
            self._make_shadow(c, full=pos == c0 and cend == c0 + self._chunk_elems_of(c))
            h = self._acquire(c)
            if h is None:  # pragma: no cover - the shadow exists
                raise FieldError(f"chunk {c}: copy for writing disappeared")
            try:
                piece = data[pos - f0:cend - f0]
                n = os.pwrite(h.fd, piece, CHUNK_HDR_BYTES + (pos - c * self.chunk_elems)
                              * self.itemsize)
                if n != piece.nbytes:
                    raise FieldError(f"chunk {c}: short write ({n} of {piece.nbytes} bytes)")
                with self._lock:
                    self._dirty.add(c)
                    self._stats.bytes_written += n
            finally:
                self._release(h)
            pos = cend
        with self._lock:  # keep cached copies coherent and invalidate racing reads
            self._wgen += 1
            k0, _ = self._key(f0)
            k1, _ = self._key(f1 - 1)
            for k in range(k0, k1 + 1):
                for cache in (self._l1, self._l2):
                    blk = cache.peek(k)
                    if blk is None:
                        continue
                    c, b = divmod(k, self.blocks_per_chunk)
                    base = c * self.chunk_elems + b * self.block_elems
                    a, z = max(f0, base), min(f1, base + blk.size)
                    if a < z:
                        blk[a - base:z - base] = data[a - f0:z - f0]

    def flush(self) -> None:
        """Publish and make durable what was written: seal (checksum) and ``fsync`` each
        chunk copy, rename it over its chunk, ``fsync`` the directories, add new chunks to
        the chunk list; upload to L4."""
        self._check_writable()
        with self._wlock:
            with self._lock:
                dirty = sorted(self._shadow)
                self._dirty.clear()
            dirs: set[Path] = set()
            new: list[int] = []
            for c in dirty:
                h = self._acquire(c)
                try:
                    if self.options.seal_on_flush and h.data_bytes <= SEAL_MAX_BYTES:
                        crc = _crc_data(h.fd, h.data_bytes)
                        os.pwrite(h.fd, ChunkHeader(c, h.data_bytes, self.uid, True,
                                                    crc).encode(), 0)
                        h.sealed = True
                    os.fsync(h.fd)
                    final = self._chunk_path(c)
                    os.replace(self._shadow_path(c), final)
                    with self._lock:
                        self._shadow.discard(c)
                finally:
                    self._release(h)
                dirs.add(final.parent)
                if not self._is_recorded(c):
                    new.append(c)
            for d in dirs:
                _fsync_dir(d)
            if new:
                old = [] if self._recorded is None else self._recorded.tolist()
                self._write_chunk_list(old + new)
            if self._remote is not None:
                fs, root = self._remote
                rh = f"{root}/{HEADER_NAME}"
                if not fs.exists(rh):
                    fs.makedirs(root, exist_ok=True)
                    fs.put_file(str(self.path / HEADER_NAME), rh)
                for c in dirty:
                    rel = chunk_relpath(c)
                    fs.makedirs(f"{root}/{rel.rsplit('/', 1)[0]}", exist_ok=True)
                    fs.put_file(str(self._chunk_path(c)), f"{root}/{rel}")
                if dirty and (self.path / LIST_NAME).exists():
                    fs.put_file(str(self.path / LIST_NAME), f"{root}/{LIST_NAME}")

    # ---------------------------------------------------------------- maintenance
    def chunk_ids(self) -> list[int]:
        """Indices of the chunks that exist locally, ascending."""
        out = []
        for p in (self.path / "chunks").glob("*/*.pxc"):
            try:
                out.append((int(p.parent.name, 16) << 12) | int(p.stem, 16))
            except ValueError:
                raise CorruptChunkError(f"unexpected file in the chunk store: {p}") from None
        return sorted(out)

    def disk_usage(self) -> int:
        """Bytes actually allocated on disk by the field directory (st_blocks * 512)."""
        total = 0
        for root, _dirs, files in os.walk(self.path):
            for f in files:
                total += os.stat(os.path.join(root, f)).st_blocks * 512
        return total

    def verify_chunk(self, c: int) -> None:
        """Check chunk ``c``'s header, size and (if sealed) data checksum."""
        if not 0 <= c < self.n_chunks:
            raise CorruptChunkError(f"chunk file {c} is beyond the field's {self.n_chunks} chunks")
        try:
            fd = os.open(self._chunk_path(c), os.O_RDONLY)
        except FileNotFoundError:
            if self._is_recorded(c):
                raise self._lost(c) from None
            raise CorruptChunkError(f"chunk {c}: no file {self._chunk_path(c)}") from None
        try:
            h = self._validate_chunk(c, fd, False)
            if h.sealed:
                hdr = ChunkHeader.decode(os.pread(fd, 64, 0), f"chunk {c}")
                crc = _crc_data(fd, h.data_bytes)
                if crc != hdr.data_crc:
                    raise CorruptChunkError(
                        f"chunk {c} ({self._chunk_path(c)}): data checksum mismatch "
                        f"(stored {hdr.data_crc:08x}, computed {crc:08x})")
        finally:
            os.close(fd)

    def verify(self) -> int:
        """Check every chunk the field should have (the chunk list and the local files, see
        :meth:`verify_chunk`; a listed chunk without a file is :class:`LostChunkError`);
        return how many."""
        ids = self.expected_chunk_ids()
        for c in ids:
            self.verify_chunk(c)
        return len(ids)

    def drop_os_cache(self) -> int:
        """``posix_fadvise(DONTNEED)`` on every local chunk file (after fsync); return count."""
        n = 0
        for c in self.chunk_ids():
            fd = os.open(self._chunk_path(c), os.O_RDONLY)
            try:
                os.fdatasync(fd) if self.writable else None
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            n += 1
        return n

    def chunk_file(self, c: int) -> Path:
        return self._chunk_path(c)

    def chunk_memmap(self, c: int) -> np.ndarray | None:
        """A read-only ``numpy.memmap`` of chunk ``c``'s data (None if it does not exist); in
        the writer, of its unpublished copy if it has one."""
        h = self._acquire(c)
        if h is None:
            return None
        self._release(h)
        path = self._shadow_path(c) if c in self._shadow else self._chunk_path(c)
        return np.memmap(path, dtype=self.dtype, mode="r",
                         offset=CHUNK_HDR_BYTES, shape=(h.data_bytes // self.itemsize,))


def checked_cast(values, dtype: np.dtype) -> np.ndarray:
    """``values`` as ``dtype`` if every value survives the cast exactly enough.

    Refused (:class:`FieldValueError`): non-numeric values; NaN, infinity, a fraction or a
    value out of range into an integer or bool field; a non-zero imaginary part into a real
    field; a finite value that becomes infinite in a float field.  Float rounding (float64
    into float32) is accepted.
    """
    a = np.asarray(values)
    if a.dtype == dtype:
        return a
    kind = a.dtype.kind
    if kind not in "biufc":
        try:
            a = a.astype(np.float64) if kind in "OUS" else a
        except (TypeError, ValueError):
            pass
        if a.dtype.kind not in "biufc":
            raise FieldValueError(f"cannot store {a.dtype} values in a {dtype} field")
        kind = a.dtype.kind
    if kind == "c" and dtype.kind != "c":
        if a.size and np.any(a.imag != 0):
            raise FieldValueError(f"complex values with an imaginary part cannot be stored in "
                                  f"a {dtype} field")
        a = a.real
        kind = a.dtype.kind
    if dtype.kind in "biu" and a.size:
        if kind == "f":
            if not np.isfinite(a).all():
                raise FieldValueError(f"NaN or infinity cannot be stored in a {dtype} field")
            if np.any(a != np.trunc(a)):
                raise FieldValueError(f"a value with a fraction cannot be stored in a {dtype} "
                                      f"field (round it first)")
            lo, hi = (0.0, 1.0) if dtype.kind == "b" else (float(np.iinfo(dtype).min),
                                                            float(np.iinfo(dtype).max) + 1.0)
            if float(a.min()) < lo or float(a.max()) >= hi + (1.0 if dtype.kind == "b" else 0.0):
                raise FieldValueError(f"values {a.min()}..{a.max()} overflow a {dtype} field")
        elif kind in "biu":
            lo, hi = (0, 1) if dtype.kind == "b" else (int(np.iinfo(dtype).min),
                                                        int(np.iinfo(dtype).max))
            mn, mx = int(a.min()), int(a.max())
            if mn < lo or mx > hi:
                raise FieldValueError(f"values {mn}..{mx} overflow a {dtype} field "
                                      f"({lo}..{hi})")
    if dtype.kind in "fc" and kind in "fc" and a.size:
        with np.errstate(over="ignore", invalid="ignore"):
            out = a.astype(dtype)
        if np.any(np.isinf(out) & np.isfinite(a)):
            raise FieldValueError(f"values overflow a {dtype} field (max "
                                  f"{np.finfo(dtype).max:g})")
        return out
    return a.astype(dtype)


def _acquire_writer_lock(path: Path):
    """An exclusive ``flock`` on ``path/field.lock`` (the single-writer lock), or
    :class:`FieldLockedError`.  Returns the open lock file (closing it releases the lock)."""
    try:
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:
        raise FieldNotFoundError(f"no field at {path}") from None
    except OSError as e:
        raise FieldError(f"cannot open {path / LOCK_NAME} for writing: "
                         f"{e.strerror or e}") from None
    f = os.fdopen(fd, "r+b")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = ""
        with contextlib.suppress(OSError, UnicodeDecodeError):
            holder = f.read(32).decode("ascii").strip()
        f.close()
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise FieldError(f"cannot lock {path / LOCK_NAME}: {e.strerror or e}") from None
        who = (" by this process" if holder == str(os.getpid()) else
               f" by process {holder}" if holder.isdigit() else "")
        raise FieldLockedError(
            f"field {path} is already open for writing{who}: one writer at a time (close it "
            f"first, or open read-only with mode 'r')") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()).encode("ascii"))
    f.flush()
    return f


_TMP_PATTERNS = ("chunks/*/*.pxc.tmp*", "chunks/*/*.pxc.dl*", HEADER_NAME + ".tmp",
                 LIST_NAME + ".tmp")


def _remove_stale_tmp(path: Path) -> int:
    """Remove temporary files a killed writer left (caller holds the writer lock)."""
    n = 0
    for pat in _TMP_PATTERNS:
        for p in path.glob(pat):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                n += 1
    return n


def _fsync_dir(directory: Path) -> None:
    """``fsync`` a directory so renames inside it are durable (ignored where refused)."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover - some filesystems refuse
        pass
    finally:
        os.close(dfd)


def _copy_sparse(src: int, dst: int, offset: int, nbytes: int) -> None:
    """Copy bytes ``[offset, offset + nbytes)`` of ``src`` to the same place in ``dst``,
    skipping holes (SEEK_DATA / SEEK_HOLE) so a sparse chunk stays sparse."""
    end = offset + nbytes
    pos = offset
    while pos < end:
        try:
            d = os.lseek(src, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole remains
                return
            d = pos  # no SEEK_DATA support: copy everything
            h = end
        else:
            try:
                h = os.lseek(src, d, os.SEEK_HOLE)
            except OSError:  # pragma: no cover
                h = end
        if d >= end:
            return
        h = min(h, end)
        while d < h:
            piece = os.pread(src, min(_CRC_PIECE, h - d), d)
            if not piece:
                raise CorruptChunkError(f"chunk data ends at {d - offset} of {nbytes} bytes")
            os.pwrite(dst, piece, d)
            d += len(piece)
        pos = h


def _crc_data(fd: int, nbytes: int) -> int:
    crc, pos = 0, 0
    while pos < nbytes:
        piece = os.pread(fd, min(_CRC_PIECE, nbytes - pos), CHUNK_HDR_BYTES + pos)
        if not piece:
            raise CorruptChunkError(f"chunk data ends at {pos} of {nbytes} bytes")
        crc = zlib.crc32(piece, crc)
        pos += len(piece)
    return crc


# -------------------------------------------------------------------- constructors
def _check_shape(shape) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        shape = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise FieldError(f"shape must be a tuple of ints, got {shape!r}") from None
    if not 1 <= len(shape) <= 32 or min(shape) < 1:
        raise FieldError(f"shape {shape} must have 1..32 dimensions, each >= 1")
    return shape


def create(path, shape, dtype="float32", *, chunk_rows: int | None = None,
           chunk_bytes: int = _DEFAULT_CHUNK_BYTES, overwrite: bool = False,
           options: FieldOptions | None = None, remote=None) -> Field:
    """Create an empty (all-zero, sparse) field at directory ``path`` and open it read-write.

    Chunks split axis 0: ``chunk_rows`` rows each (default: as many rows as fit in
    ``chunk_bytes``, at least one).  Nothing but the header is written: chunk files appear
    on first write, so the logical size may exceed the disk by any factor.
    """
    shape = _check_shape(shape)
    dt = normalize_dtype(dtype)
    row_bytes = prod(shape[1:]) * dt.itemsize
    if prod(shape) * dt.itemsize >= _MAX_LOGICAL_BYTES:
        raise FieldError(f"field of {prod(shape) * dt.itemsize} bytes exceeds the 2**62 limit")
    if chunk_rows is None:
        chunk_rows = max(1, int(chunk_bytes) // row_bytes)
    chunk_rows = min(operator.index(chunk_rows), shape[0])
    if chunk_rows < 1:
        raise FieldError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if chunk_rows * row_bytes > _MAX_CHUNK_BYTES:
        raise FieldError(f"a chunk of {chunk_rows} rows is {chunk_rows * row_bytes} bytes, "
                         f"over the {_MAX_CHUNK_BYTES} limit")
    p = Path(path)
    hp = p / HEADER_NAME
    if p.exists():
        if not overwrite or not p.is_dir() or (any(x.name != LOCK_NAME for x in p.iterdir())
                                               and not hp.exists()):
            raise FieldExistsError(f"{p} already exists" + ("" if overwrite else
                                   " (pass overwrite=True to replace a field)"))
        lock = _acquire_writer_lock(p)  # refuse to replace a field someone is writing
        try:
            for x in p.iterdir():
                if x.name == LOCK_NAME:
                    continue
                if x.is_dir() and not x.is_symlink():
                    shutil.rmtree(x)
                else:
                    x.unlink()
        except BaseException:
            lock.close()
            raise
    else:
        try:
            p.mkdir(parents=True)
        except FileExistsError:
            raise FieldExistsError(f"{p} already exists") from None
        lock = _acquire_writer_lock(p)
    try:
        header = FieldHeader(shape=shape, dtype=dt, chunk_rows=chunk_rows,
                             uid=secrets.token_bytes(16))
        tmp = p / (HEADER_NAME + ".tmp")
        with builtin_open(tmp, "wb") as f:
            f.write(header.encode())
            f.flush()
            os.fsync(f.fileno())
        lp = p / LIST_NAME
        with builtin_open(p / (LIST_NAME + ".tmp"), "wb") as f:
            f.write(encode_chunk_list([], header.uid))
            f.flush()
            os.fsync(f.fileno())
        os.replace(p / (LIST_NAME + ".tmp"), lp)
        os.replace(tmp, hp)
        _fsync_dir(p)
    except BaseException:
        lock.close()
        raise
    return Field(p, header, True, options, remote, lock=lock)


builtin_open = open


def read_header(path, remote=None) -> FieldHeader:
    p = Path(path)
    hp = p / HEADER_NAME
    if not hp.exists():
        r = _resolve_remote(remote)
        if r is None or not r[0].exists(f"{r[1]}/{HEADER_NAME}"):
            raise FieldNotFoundError(f"no field at {p} (missing {HEADER_NAME})")
        p.mkdir(parents=True, exist_ok=True)
        r[0].get_file(f"{r[1]}/{HEADER_NAME}", str(hp))
    with builtin_open(hp, "rb") as f:
        raw = f.read(1 << 16)
    return FieldHeader.decode(raw, f"field header {hp}")


def open_field(path, mode: str = "r", *, options: FieldOptions | None = None,
               remote=None, verify: bool | None = None) -> Field:
    """Open an existing field; ``mode`` ``"r"`` (read-only) or ``"r+"`` (read-write).

    ``remote``: an fsspec URL (or ``(filesystem, root)``) used as tier L4; if the local
    directory has no header it is fetched from there.  ``verify=True`` checks sealed
    chunks' data checksums as they are first opened.
    """
    if mode not in ("r", "r+"):
        raise FieldError(f"mode must be 'r' or 'r+', got {mode!r}")
    header = read_header(path, remote)
    opts = options or FieldOptions()
    if verify is not None:
        from dataclasses import replace
        opts = replace(opts, verify=verify)
    return Field(path, header, mode == "r+", opts, remote)


__all__ += ["read_header"]
